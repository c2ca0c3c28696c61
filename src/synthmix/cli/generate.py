"""``synthmix generate CONFIG``: run a generation job (text2img, dafusion, embedded, ...)."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command("generate")
def generate(
    config: Path = typer.Argument(..., help="YAML: manifest, out_dir, batch_size, generator: {type: ...}."),
    rank: int = typer.Option(0, envvar="RANK", help="This process's shard (torchrun sets RANK)."),
    world_size: int = typer.Option(1, "--world-size", envvar="WORLD_SIZE",
                                   help="Number of shards (torchrun sets WORLD_SIZE)."),
) -> None:
    """Generate images from the manifest's real train rows; re-running resumes where it stopped."""
    from synthmix.core.log import console, progress
    from synthmix.generation.jobs import load_generate_config, run_generate

    cfg = load_generate_config(config)
    with progress() as bar:
        task = bar.add_task(f"generate ({rank + 1}/{world_size})", total=None, info="")
        counts = run_generate(cfg, rank=rank, world_size=world_size,
                              on_plan=lambda n: bar.update(task, total=n),
                              on_batch=lambda n: bar.advance(task, n))
    console().print(f"planned {counts['planned']}, skipped (done) {counts['skipped']}, "
                    f"written {counts['ok']}, failed {counts['failed']} -> {cfg.out_dir}")
    if counts["failed"]:
        console().print("[yellow]failed images (NaN/black) are recorded with status=failed, no file kept[/]")
