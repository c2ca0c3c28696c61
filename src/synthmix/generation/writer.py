"""Writing generated images: temp file + rename, then the manifest row; bad images flagged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from synthmix.core.hashing import sha256_file
from synthmix.core.io import atomic_path
from synthmix.core.paths import safe_join
from synthmix.data.manifest import append_rows, new_row, read_manifest


def image_problem(arr) -> str | None:
    """Why an image must not be kept (NaN, black, blank), or None if it looks like a picture.

    ``arr``: float array in [0, 1] or uint8, shape [H, W, 3].
    """
    import numpy as np

    a = np.asarray(arr)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            return "non-finite pixel values (NaN/inf)"
        a = a * 255.0
    a = a.astype(np.float32)
    if a.max() <= 4:
        return "black image"
    if a.std() < 1.0:
        return "blank image (near-constant)"
    return None


def to_uint8(arr):
    """[H, W, 3] float in [0, 1] (NaN -> 0) or uint8 -> uint8."""
    import numpy as np

    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    return (np.nan_to_num(a, nan=0.0).clip(0, 1) * 255.0 + 0.5).astype(np.uint8)


class ImageWriter:
    """Stores images under ``out_dir`` and their rows in ``manifest_path``.

    A re-run builds a new writer over the same paths and skips ids whose row exists with the
    file present. Failed images (NaN/black) get a row with ``status="failed"`` and no kept
    file, so a re-run does not retry them forever and they are counted, not lost.
    """

    def __init__(self, manifest_path: str | Path, out_dir: str | Path | None = None,
                 also_done: tuple[str | Path, ...] | list[str | Path] = ()):
        self.manifest_path = Path(manifest_path)
        self.root = self.manifest_path.parent
        self.out_dir = Path(out_dir) if out_dir else self.root / "images"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        # ``also_done``: other manifests of the same directory (the merged one, other ranks'
        # shards) whose finished rows count as done here: a re-run with another world size
        # must not remake what an earlier sharding already wrote.
        for path in [*map(Path, also_done), self.manifest_path]:
            if path.exists() and path.stat().st_size:
                for r in read_manifest(path):
                    if r.get("status") == "failed" or (r.get("path") and (self.root / r["path"]).exists()):
                        self.done[r["id"]] = r

    @property
    def plan_path(self) -> Path:
        """``<manifest stem>.plan.json``: the ids this writer was asked for (audit compares)."""
        return self.manifest_path.with_name(self.manifest_path.stem + ".plan.json")

    def record_plan(self, ids: list[str]) -> None:
        """Store the planned ids (union with any earlier plan for the same manifest)."""
        from synthmix.core.io import atomic_write_json, read_json

        old = set(read_json(self.plan_path)["ids"]) if self.plan_path.exists() else set()
        atomic_write_json(self.plan_path, {"ids": sorted(old | set(ids))})

    def is_done(self, row_id: str) -> bool:
        return row_id in self.done

    def write(self, planned: dict[str, Any], image) -> dict[str, Any]:
        """Check, store and record one image; returns its manifest row."""
        from PIL import Image

        problem = image_problem(image)
        # label and id come from (possibly hand-edited) manifests: they must not lead outside out_dir
        target = safe_join(self.out_dir, Path(str(planned["label"])) / f"{planned['id']}.png")
        rel = Path(os.path.relpath(target, self.root.resolve()))
        # A process killed mid-write of this id left its temporary file; only the process that
        # owns this id (ids are sharded) ever writes it, so removing the leftover is safe.
        for stale in (self.root / rel).parent.glob(f".{rel.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        row = new_row(**{**planned, "path": rel.as_posix()})
        if problem:
            row.update(status="failed", path=None, scores={**(row.get("scores") or {}), "failure": problem})
        else:
            arr = to_uint8(image)
            with atomic_path(self.root / rel) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
            row.update(status="ok", width=arr.shape[1], height=arr.shape[0], mode="RGB",
                       sha256=sha256_file(self.root / rel))
        append_rows(self.manifest_path, [row])
        self.done[row["id"]] = row
        return row
