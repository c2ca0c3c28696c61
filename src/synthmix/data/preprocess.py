"""Deterministic preprocessing: decode -> optional object-centred crop -> resize to a square.

Real photos (any aspect ratio, transparent backgrounds) and synthetic images (square) go
through the same steps, so they look alike to the classifier. The random part
(crops, margins, flips, colour) lives in :mod:`synthmix.data.augment` and runs on tensors.

Resize modes for a ``size`` x ``size`` output:

- ``pad``: aspect kept, long side = size, centred on a ``fill`` background (letterbox);
- ``stretch``: both sides scaled to ``size`` (aspect lost);
- ``center_crop``: aspect kept, short side = size, the centre cut out.

``box_crop=True`` first crops to the object: the union of the row's VOC boxes (or the
bounding box of its mask, if the row has a ``mask`` path), grown by ``box_margin`` x its
size on each side. Rows without boxes or mask keep the whole image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from synthmix.core.config import StrictModel
from synthmix.data.images import DEFAULT_MAX_PIXELS, WHITE

ResizeMode = Literal["pad", "stretch", "center_crop"]


class PreprocessConfig(StrictModel):
    """How an image file becomes a ``size`` x ``size`` RGB uint8 array (cached under :meth:`hash`)."""

    size: int = Field(64, ge=4, le=4096, description="output side in pixels")
    resize: ResizeMode = Field("pad", description="pad | stretch | center_crop")
    fill: tuple[int, int, int] = Field((0, 0, 0), description="RGB 0-255 padding colour (resize=pad)")
    background: tuple[int, int, int] = Field(WHITE, description="RGB 0-255 colour transparent "
                                             "pixels are composited on")
    box_crop: bool = Field(False, description="crop to the union of VOC boxes (or the mask) first")
    box_margin: float = Field(0.1, ge=0, le=2, description="box grown by this fraction of its size per side")
    max_pixels: int | None = Field(DEFAULT_MAX_PIXELS, description="decompression-bomb guard")

    def hash(self) -> str:
        """12 hex digits identifying the output pixels (cache key part)."""
        from synthmix.core.hashing import config_hash

        return config_hash(self)


def resize_square(img, size: int, mode: ResizeMode = "pad", fill: tuple[int, int, int] = (0, 0, 0)):
    """PIL RGB image -> ``size`` x ``size`` PIL RGB image by ``mode`` (see module docstring)."""
    from PIL import Image

    w, h = img.size
    if mode == "stretch":
        return img.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    if mode == "pad":
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
        canvas = Image.new("RGB", (size, size), tuple(fill))
        canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
        return canvas
    if mode == "center_crop":
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        return img.crop((left, top, left + size, top + size))
    raise ValueError(f"unknown resize mode {mode!r}")


def mask_box(mask) -> list[float] | None:
    """Bounding box [x0, y0, x1, y1] of the non-zero pixels of a mask (PIL image or 2-D array)."""
    import numpy as np

    a = np.asarray(mask)
    if a.ndim == 3:
        a = a.max(axis=2)
    ys, xs = np.nonzero(a)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def object_box(row: dict[str, Any], width: int, height: int, manifest_path: str | Path | None = None):
    """The box to crop a row to: its mask's bounding box, else the union of its VOC boxes, else None."""
    from synthmix.data.voc import union_box

    if row.get("mask"):
        from PIL import Image

        from synthmix.data.manifest import resolve_path

        mp = resolve_path(manifest_path or ".", row["mask"])
        with Image.open(mp) as m:
            m = m.convert("L")
            if m.size != (width, height):
                m = m.resize((width, height), Image.NEAREST)
            return mask_box(m)
    boxes = row.get("boxes")
    if boxes:
        return union_box(boxes)
    return None


def preprocess_image(img, cfg: PreprocessConfig, box=None):
    """RGB PIL image (+ optional object box in its pixels) -> ``cfg.size`` square RGB PIL image."""
    from synthmix.data.voc import expand_box

    if cfg.box_crop and box is not None:
        img = img.crop(expand_box(box, cfg.box_margin, img.width, img.height))
    return resize_square(img, cfg.size, cfg.resize, cfg.fill)


def preprocess_row(row: dict[str, Any], manifest_path: str | Path | None, cfg: PreprocessConfig):
    """Decode a manifest row's file and preprocess it -> uint8 array [size, size, 3]."""
    import numpy as np

    from synthmix.data.images import decode
    from synthmix.data.manifest import resolve_path

    path = resolve_path(manifest_path or ".", row["path"])
    img = decode(path, background=cfg.background, max_pixels=cfg.max_pixels).image
    box = object_box(row, img.width, img.height, manifest_path) if cfg.box_crop else None
    return np.asarray(preprocess_image(img, cfg, box), dtype=np.uint8)
