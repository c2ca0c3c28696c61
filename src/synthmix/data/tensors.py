"""Images as one uint8 tensor [N, 3, S, S] in memory: decode + resize once, then train from RAM.

(Minimal first version: the data-layer work adds the on-disk cache keyed by manifest id +
preprocessing hash, and the configurable resize modes.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthmix.data.images import load_rgb
from synthmix.data.manifest import resolve_path


def resize_pad(img, size: int, fill: tuple[int, int, int] = (0, 0, 0)):
    """Aspect-preserving resize so the long side is ``size``, padded to a square."""
    from PIL import Image

    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def load_tensor(rows: Sequence[dict[str, Any]], manifest_path: str | Path, size: int):
    """uint8 tensor [N, 3, size, size] of the rows' images, in row order."""
    import numpy as np
    import torch

    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    for i, r in enumerate(rows):
        out[i] = np.asarray(resize_pad(load_rgb(resolve_path(manifest_path, r["path"])), size))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def label_tensor(rows: Sequence[dict[str, Any]], classes: Sequence[str]):
    """int64 tensor [N] of class indices (``classes`` is the run's stored class list)."""
    import torch

    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[r["label"]] for r in rows], dtype=torch.long)
