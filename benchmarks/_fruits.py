"""Benchmark helper: a manifest of ../shared/datasets/fruits (apple/banana/orange; mixed left out).

Uses synthmix.data's own scanner when it exists; otherwise lists the files directly.
"""

from __future__ import annotations

from pathlib import Path

FRUITS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "fruits"
CLASSES = ("apple", "banana", "orange")


def fruits_manifest(out: Path, root: Path = FRUITS) -> Path:
    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.data.manifest import new_row, write_manifest

    out = Path(out)
    rows = []
    for split in ("train", "test"):
        for cls in CLASSES:
            for p in sorted((root / split / cls).glob("*.jpg")):
                h = sha256_file(p)
                rows.append(new_row(id=short_id(h), sha256=h, path=str(p.resolve()), label=cls,
                                    split=split, source="real", status="ok"))
    write_manifest(out, rows)
    return out
