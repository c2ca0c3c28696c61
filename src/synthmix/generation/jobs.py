"""The generation job: real train rows of a manifest + a generator config -> images + manifest rows.

Backend-independent: the backend (``embedded``, ``text2img``, ``dafusion``, ...) comes from
:mod:`synthmix.generation.registry`; writing, resume and sharding are
:func:`synthmix.generation.protocol.run_generation` with an
:class:`~synthmix.generation.writer.ImageWriter` on ``<out_dir>/manifest.jsonl``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from synthmix.core.config import StrictModel, load_yaml, parse_config
from synthmix.core.errors import ConfigError, DataError

MANIFEST_NAME = "manifest.jsonl"


class GenerateConfig(StrictModel):
    """``synthmix generate CONFIG``: which real rows, where to write, which generator.

    ``generator`` is ``{type: <backend>, ...}``, validated by that backend's config class.
    Relative paths are taken from the current directory.
    """

    manifest: Path                     # the real manifest (only its real train rows are used)
    out_dir: Path                      # images in out_dir/images/<label>/, rows in out_dir/manifest.jsonl
    generator: dict[str, Any]
    batch_size: int = Field(8, ge=1)   # rows per render call (a backend may split further on OOM)
    exclude_classes: list[str] = Field(default_factory=list, description="labels that are not classes "
                                       "(the study's near-OOD class): never generated, never a parent")


def load_generate_config(path: str | Path) -> GenerateConfig:
    """Load and validate a generate config, the generator section included (errors name the file)."""
    from synthmix.generation.registry import parse_generator_config

    cfg = parse_config(GenerateConfig, load_yaml(path), source=str(path))
    try:
        parse_generator_config(cfg.generator, source=f"{path}: generator")
    except ConfigError as err:
        if str(path) in str(err):
            raise
        raise ConfigError(f"{path}: {err}") from None
    return cfg


def real_train_rows(manifest: Path, exclude_classes: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The manifest's real train rows, less ``exclude_classes`` (guarded: nothing else may reach a
    generator, so no backend can plan "a photo of a mixed" or train a ``<mixed>`` token)."""
    from synthmix.data.manifest import assert_train_only, read_manifest, train_rows

    rows = [r for r in train_rows(read_manifest(manifest)) if r.get("label") not in set(exclude_classes)]
    assert_train_only(rows, "generation")
    if not rows:
        raise DataError(manifest, "no real train rows (split=train, source=real) to generate from")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError(manifest, "duplicate ids among the real train rows")
    return rows


def run_generate(cfg: GenerateConfig, rank: int = 0, world_size: int = 1,
                 on_batch: Callable[[int], None] | None = None,
                 on_plan: Callable[[int], None] | None = None, merge: bool = True) -> dict[str, int]:
    """Plan, skip what is done, render and write; returns {planned, skipped, ok, failed}.

    ``rank`` / ``world_size`` shard the planned rows by id: with ``world_size > 1`` each process
    renders its share and appends to its own ``manifest.rank{rank}.jsonl``; the process that
    finds every planned id done when it finishes merges the shards into ``manifest.jsonl``
    (:func:`synthmix.generation.merge.merge_shards`; ``merge=False`` leaves that to
    ``synthmix generate --merge``). ``on_plan(n_todo_estimate)`` and ``on_batch(n)`` report
    progress. Safe to re-run after a kill, with any world size: ids finished in the merged
    manifest or in any shard are skipped, none is made twice. A second live process writing
    the same manifest (same rank twice) is refused with a ConfigError.
    """
    from synthmix.core.config import dump_yaml
    from synthmix.generation.merge import (
        merge_shards,
        shard_manifest,
        shard_manifests,
        wait_lock,
        writer_lock,
    )
    from synthmix.generation.protocol import run_generation, shard
    from synthmix.generation.registry import parse_generator_config
    from synthmix.generation.writer import ImageWriter

    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} / world size {world_size}: need 0 <= rank < world_size")
    backend, gcfg = parse_generator_config(cfg.generator, source="generator")
    real = real_train_rows(cfg.manifest, cfg.exclude_classes)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml({**cfg.model_dump(mode="json"), "generator": {"type": backend.name,
               **gcfg.model_dump(mode="json")}}, out_dir / "generate.yaml")
    generator, planned = backend.build(gcfg, real, cfg.manifest, out_dir)
    ids = [r["id"] for r in planned]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"generator.type {backend.name}: planned ids repeat (a backend bug)")
    manifest = out_dir / MANIFEST_NAME if world_size == 1 else shard_manifest(out_dir, rank)
    others = [m for m in [out_dir / MANIFEST_NAME, *shard_manifests(out_dir)] if m != manifest]
    with writer_lock(manifest):
        writer = ImageWriter(manifest, out_dir / "images", also_done=others)
        n_todo = sum(1 for r in shard(planned, rank, world_size) if not writer.is_done(r["id"]))
        if on_plan:
            on_plan(n_todo)
        if n_todo and hasattr(generator, "prepare"):
            # One-time work stored in out_dir (textual inversion): the first rank to get the lock
            # does it, the others then load its result instead of redoing (and racing on) it.
            with wait_lock(out_dir / ".prepare.lock"):
                generator.prepare()
        counts = run_generation(generator, planned, writer, batch_size=cfg.batch_size, on_batch=on_batch,
                                rank=rank, world_size=world_size)
    if merge:
        # Whoever finishes last (every planned id done) merges; the others skip.
        merge_shards(out_dir, required=set(ids), order=ids)
    return counts
