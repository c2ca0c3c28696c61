"""A PNG grid to eyeball the pipeline: raw vs preprocessed vs augmented samples per class.

One band per class; each sample shows three cells: the raw file (fitted, VOC boxes
drawn in red), the preprocessed square (what the cache holds) and one augmented draw.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthmix.core.errors import DataError
from synthmix.data.augment import AugmentConfig
from synthmix.data.preprocess import PreprocessConfig

CELL = 112
LABEL_W = 90
HEADER_H = 18


def rows_from(path: str | Path) -> tuple[list[dict[str, Any]], Path | None]:
    """Rows + manifest path from a manifest file, a folder holding ``manifest.jsonl``, or an
    ImageFolder (scanned in memory, nothing written)."""
    from synthmix.data.manifest import read_manifest
    from synthmix.data.scan import MANIFEST_NAME, scan_dataset

    p = Path(path)
    if p.is_file():
        return read_manifest(p), p
    if (p / MANIFEST_NAME).is_file():
        return read_manifest(p / MANIFEST_NAME), p / MANIFEST_NAME
    if p.is_dir():
        return scan_dataset(p, None, on_error="skip").rows, None
    raise DataError(p, "not a manifest file, a folder with manifest.jsonl, or an image folder")


def make_preview(rows: Sequence[dict[str, Any]], manifest_path: str | Path | None, out: str | Path, *,
                 per_class: int = 4, preprocess: PreprocessConfig | None = None,
                 augment: AugmentConfig | None = None, seed: int = 0,
                 splits: Sequence[str] | None = ("train",)) -> Path:
    """Write the grid PNG to ``out`` (atomically) and return its path."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from synthmix.core.io import atomic_path
    from synthmix.data.augment import augment_batch
    from synthmix.data.images import decode
    from synthmix.data.manifest import class_names, resolve_path
    from synthmix.data.preprocess import preprocess_row

    pcfg = preprocess or PreprocessConfig(size=64)
    acfg = augment or AugmentConfig(hflip=0.5, crop_scale=(0.6, 1.0), margin=0.25, margin_prob=0.5,
                                    rotation=10, brightness=0.2, contrast=0.2, saturation=0.2)
    pool = [r for r in rows if splits is None or r.get("split") in splits] or list(rows)
    classes = class_names(pool)
    if not classes:
        raise DataError(manifest_path or "?", "no rows to preview")
    rng = random.Random(seed)
    picked = {}
    for c in classes:
        rs = sorted((r for r in pool if r["label"] == c), key=lambda r: r["id"])
        picked[c] = rng.sample(rs, min(per_class, len(rs)))
    gen = torch.Generator().manual_seed(seed)
    width = LABEL_W + per_class * 3 * CELL
    grid = Image.new("RGB", (width, HEADER_H + len(classes) * CELL), (245, 245, 245))
    draw = ImageDraw.Draw(grid)
    for k in range(per_class):
        for j, name in enumerate(("raw", f"prep {pcfg.resize}", "augmented")):
            draw.text((LABEL_W + (3 * k + j) * CELL + 4, 3), name, fill=(0, 0, 0))
    for ci, c in enumerate(classes):
        y = HEADER_H + ci * CELL
        draw.text((6, y + CELL // 2 - 6), c, fill=(0, 0, 0))
        rs = picked[c]
        if not rs:
            continue
        prep = np.stack([preprocess_row(r, manifest_path, pcfg) for r in rs])
        aug = augment_batch(torch.from_numpy(prep).permute(0, 3, 1, 2), acfg, gen)
        aug = (aug.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        for k, r in enumerate(rs):
            x = LABEL_W + 3 * k * CELL
            raw = decode(resolve_path(manifest_path or ".", r["path"]), background=pcfg.background,
                         max_pixels=pcfg.max_pixels).image
            grid.paste(_fit_with_boxes(raw, r.get("boxes")), (x, y))
            grid.paste(Image.fromarray(prep[k]).resize((CELL, CELL), Image.NEAREST), (x + CELL, y))
            grid.paste(Image.fromarray(aug[k]).resize((CELL, CELL), Image.NEAREST), (x + 2 * CELL, y))
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        grid.save(tmp, format="PNG")
    return out


def _fit_with_boxes(img, boxes):
    from PIL import Image, ImageDraw

    s = CELL / max(img.size)
    nw, nh = max(1, round(img.width * s)), max(1, round(img.height * s))
    small = img.resize((nw, nh), Image.BICUBIC)
    cell = Image.new("RGB", (CELL, CELL), (255, 255, 255))
    ox, oy = (CELL - nw) // 2, (CELL - nh) // 2
    cell.paste(small, (ox, oy))
    d = ImageDraw.Draw(cell)
    for b in boxes or []:
        d.rectangle([ox + b[0] * s, oy + b[1] * s, ox + b[2] * s - 1, oy + b[3] * s - 1], outline=(255, 0, 0))
    return cell
