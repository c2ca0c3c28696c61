"""``synthmix generate CONFIG``: run a generation job (text2img, dafusion, embedded, ...).

Multi-process: ``torchrun --nproc-per-node N -m synthmix generate CONFIG`` or
``accelerate launch --num_processes N -m synthmix generate CONFIG``; each rank renders its
share (by id) into ``manifest.rank{r}.jsonl`` and the last rank to finish merges them into
``manifest.jsonl``. ``synthmix generate --merge CONFIG_OR_DIR`` merges by hand.
"""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command("generate")
def generate(
    config: Path = typer.Argument(..., help="YAML: manifest, out_dir, batch_size, generator: {type: ...} "
                                            "(with --merge: the config or its out_dir)."),
    rank: int | None = typer.Option(None, help="This process's shard, without a launcher "
                                                "(torchrun / accelerate launch set RANK)."),
    world_size: int | None = typer.Option(None, "--world-size",
                                          help="Number of shards, without a launcher (they set WORLD_SIZE)."),
    merge: bool = typer.Option(False, "--merge", help="Only merge the per-rank manifest shards of "
                                                     "CONFIG's out_dir (or of the directory given)."),
) -> None:
    """Generate images from the manifest's real train rows; re-running resumes where it stopped."""
    from synthmix.core.log import console

    if merge:
        _merge(config)
        return
    from synthmix.core.log import progress
    from synthmix.distributed import init_world, resolve_cli_world
    from synthmix.generation.jobs import load_generate_config, run_generate
    from synthmix.generation.merge import shard_manifests

    cfg = load_generate_config(config)
    rank, world_size, launched = resolve_cli_world(rank, world_size)
    if launched:
        world = init_world()  # checks accelerate's view against the launcher's before any work
        rank, world_size = world.rank, world.world_size
    with progress() as bar:
        task = bar.add_task(f"generate ({rank + 1}/{world_size})", total=None, info="")
        counts = run_generate(cfg, rank=rank, world_size=world_size,
                              on_plan=lambda n: bar.update(task, total=n),
                              on_batch=lambda n: bar.advance(task, n))
    who = f"rank {rank}/{world_size}: " if world_size > 1 else ""
    console().print(f"{who}planned {counts['planned']}, skipped (done) {counts['skipped']}, "
                    f"written {counts['ok']}, failed {counts['failed']} -> {cfg.out_dir}")
    if counts["failed"]:
        console().print("[yellow]failed images (NaN/black) are recorded with status=failed, no file kept[/]")
    if world_size > 1 and shard_manifests(cfg.out_dir):
        console().print(f"{who}shards kept until every rank is done (the last one merges; or run "
                        f"`synthmix generate --merge {cfg.out_dir}`)")
    if launched and world_size > 1:
        from synthmix.distributed import finish

        finish()  # close the process group and exit without gloo's teardown race


def _merge(target: Path) -> None:
    from synthmix.core.errors import DataError
    from synthmix.core.log import console
    from synthmix.generation.merge import merge_shards

    if target.is_dir():
        out_dir = target
    elif target.is_file():
        from synthmix.generation.jobs import load_generate_config

        out_dir = load_generate_config(target).out_dir
    else:
        raise DataError(target, "not found (give a generate config or its out_dir)")
    res = merge_shards(out_dir, strict=True)
    if not res.merged:
        console().print(f"nothing to merge in {out_dir} ({res.reason})")
        return
    console().print(f"merged {len(res.shards)} shard(s) into {out_dir / 'manifest.jsonl'}: {res.rows} rows")
    if res.missing:
        console().print(f"[yellow]{res.missing} planned images have no row yet: re-run `synthmix generate` "
                        "(any number of processes) to finish them[/]")
