"""Per-rank manifest shards and their merge into one ``manifest.jsonl``.

With N processes, rank r appends only to ``manifest.rank{r}.jsonl`` (plan:
``manifest.rank{r}.plan.json``) in the shared output directory; images go to the shared
``images/`` tree (ids are sharded, so no file has two writers). :func:`merge_shards` then
builds ``manifest.jsonl`` from the existing merged manifest plus every shard (in planned
order when the job merges, by id for a manual merge), checks it (no conflicting rows, every
kept file present), writes it and the merged plan atomically and only then deletes the shards. A crash in between leaves rows in two files of
the same directory with identical content, which the audit and a later merge both accept.

Writers hold an exclusive lock (``filelock``: ``flock`` on POSIX, released by the kernel when a
process dies, even by SIGKILL) on ``<manifest>.lock`` beside the manifest they append to
(:func:`writer_lock`): a second process with the same rank fails at once instead of making every
image twice, and a merge never deletes a shard that a live writer still appends to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmix.core.errors import ConfigError, DataError

MANIFEST_NAME = "manifest.jsonl"
_SHARD_RE = re.compile(r"^manifest\.rank(\d+)\.jsonl$")


def shard_manifest(out_dir: str | Path, rank: int) -> Path:
    """``out_dir/manifest.rank{rank}.jsonl``: the only manifest rank ``rank`` appends to."""
    return Path(out_dir) / f"manifest.rank{rank}.jsonl"


def shard_manifests(out_dir: str | Path) -> list[Path]:
    """Existing shard manifests of ``out_dir``, by rank."""
    found = [(int(m.group(1)), p) for p in Path(out_dir).glob("manifest.rank*.jsonl")
             if (m := _SHARD_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def plan_path(manifest: Path) -> Path:
    """The plan file of a manifest (as :class:`~synthmix.generation.writer.ImageWriter` names it)."""
    return manifest.with_name(manifest.stem + ".plan.json")


class LockBusy(ConfigError):
    """Another live process holds the manifest's writer lock."""


def lock_path(manifest: str | Path) -> Path:
    """The lock file of a manifest's writer: ``<manifest>.lock``."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.name + ".lock")


@contextmanager
def writer_lock(manifest: str | Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``manifest`` (its :func:`lock_path`).

    Raises :class:`LockBusy` (a ConfigError) when another process holds it: two processes with
    the same rank, i.e. a launcher/world-size mismatch or a second copy of the same job.
    """
    from filelock import FileLock, Timeout

    Path(manifest).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(manifest), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockBusy(f"{manifest}: another process is writing this manifest right now. Two processes "
                       "with the same rank (launcher/world-size mismatch: is RANK/WORLD_SIZE set per "
                       "process?) or a second copy of this job; stop it first") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def wait_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` (created if missing), waiting for it."""
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


@dataclass
class MergeResult:
    """What :func:`merge_shards` did: ``merged`` False when it skipped (see ``reason``)."""

    merged: bool
    rows: int = 0
    shards: list[str] = field(default_factory=list)
    missing: int = 0          # planned ids (plans of every manifest merged) without a row
    reason: str = ""


def _rows_by_id(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    from synthmix.core.io import read_jsonl

    out: dict[str, dict[str, Any]] = {}
    for p in paths:
        for r in read_jsonl(p):
            old = out.get(r["id"])
            if old is not None and old != r:
                raise DataError(p, f"id {r['id']} has a different row in another manifest of this directory "
                                   "(two writers made the same image differently?); fix or delete one")
            out[r["id"]] = r
    return out


def _planned(paths: Sequence[Path]) -> set[str]:
    from synthmix.core.io import read_json

    ids: set[str] = set()
    for m in paths:
        if plan_path(m).exists():
            ids |= set(read_json(plan_path(m))["ids"])
    return ids


def merge_shards(out_dir: str | Path, required: set[str] | None = None, strict: bool = False,
                 order: Sequence[str] | None = None) -> MergeResult:
    """Merge ``manifest.rank*.jsonl`` (and an existing ``manifest.jsonl``) into ``manifest.jsonl``.

    ``required``: merge only when every one of these ids has a row (used by the ranks of a job,
    so the last one to finish merges). A shard still held by a live writer makes the merge
    skip (``strict=False``) or raise LockBusy (``strict=True``, the CLI).
    Rows follow ``order`` (the job's planned order, so N ranks write the very manifest one process
    writes), then any others by id; ok rows must have their file. Shards are deleted only after the
    merged manifest and plan are written.
    """
    from synthmix.core.io import atomic_write_json, write_jsonl

    out_dir = Path(out_dir)
    merged_path = out_dir / MANIFEST_NAME
    shards = shard_manifests(out_dir)
    if not shards:
        return MergeResult(False, reason="no shard manifests")
    with ExitStack() as stack:
        try:
            for p in [merged_path, *shards]:
                if p.exists():
                    stack.enter_context(writer_lock(p))
        except LockBusy:
            if strict:
                raise
            return MergeResult(False, reason="a writer is still running")
        shards = [p for p in shards if p.exists()]  # another merger may have finished meanwhile
        if not shards:
            return MergeResult(False, reason="merged by another process")
        sources = [merged_path, *shards] if merged_path.exists() else shards
        rows = _rows_by_id(sources)
        if required is not None and not required <= rows.keys():
            return MergeResult(False, shards=[p.name for p in shards], missing=len(required - rows.keys()),
                               reason="not every planned image is done yet")
        for r in rows.values():
            if r.get("status") != "failed" and r.get("path") and not (out_dir / r["path"]).is_file():
                raise DataError(out_dir / r["path"], f"file of row {r['id']} is missing; not merging "
                                                     "(delete the row or re-run generate)")
        planned = _planned(sources)
        pos = {k: i for i, k in enumerate(order or ())}
        write_jsonl(merged_path, [rows[k] for k in sorted(rows, key=lambda k: (pos.get(k, len(pos)), k))])
        if planned:
            atomic_write_json(plan_path(merged_path), {"ids": sorted(planned)})
        for p in shards:
            plan_path(p).unlink(missing_ok=True)
            os.unlink(p)
            lock_path(p).unlink(missing_ok=True)  # held by us: a new writer of this rank locks a new file
    return MergeResult(True, rows=len(rows), shards=[p.name for p in shards],
                       missing=len(planned - rows.keys()))
