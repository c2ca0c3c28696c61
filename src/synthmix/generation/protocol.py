"""The generator protocol shared by every backend.

A generation job is: *plan* (a list of planned manifest rows, each with a deterministic id
and its own seed) then *render* (images for a batch of planned rows). The shared
:func:`run_generation` skips ids already done, batches the rest, checks every image,
writes it atomically and only then appends its manifest row. Sharding across processes
(by id) and resume after a kill therefore work the same for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from synthmix.core.hashing import config_hash


class Generator(Protocol):
    """A backend: ``name`` + ``render(planned_rows) -> list of HxWx3 uint8 arrays``.

    ``render`` must use one ``torch.Generator`` per row, seeded from ``row["seed"]``, so that an
    image does not depend on batch size or order. An optional ``prepare()`` does one-time work
    whose results are files in the output directory (e.g. textual inversion); the job runs it
    before rendering, holding a lock, so parallel ranks do that work once and then load it.
    """

    name: str

    def render(self, rows: Sequence[dict[str, Any]]) -> list[Any]: ...


def planned_id(*parts: object) -> str:
    """Deterministic id of a planned image from what defines it (config hash, label, parent, index)."""
    return config_hash([str(p) for p in parts], n=16)


def shard(rows: Sequence[dict[str, Any]], rank: int, world_size: int) -> list[dict[str, Any]]:
    """This rank's share of the planned rows: a deterministic split by id."""
    if world_size <= 1:
        return list(rows)
    return [r for r in rows if int(r["id"], 16) % world_size == rank]


def run_generation(generator: Generator, planned: Sequence[dict[str, Any]], writer,
                   batch_size: int = 8, on_batch: Callable[[int], None] | None = None,
                   rank: int = 0, world_size: int = 1) -> dict[str, int]:
    """Render every planned row not yet done; returns counts {planned, skipped, ok, failed}."""
    mine = shard(planned, rank, world_size)
    writer.record_plan([r["id"] for r in mine])
    todo = [r for r in mine if not writer.is_done(r["id"])]
    counts = {"planned": len(mine), "skipped": len(mine) - len(todo), "ok": 0, "failed": 0}
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        images = generator.render(batch)
        for row, img in zip(batch, images, strict=True):
            status = writer.write(row, img)["status"]
            counts["ok" if status == "ok" else "failed"] += 1
        if on_batch:
            on_batch(len(batch))
    return counts
