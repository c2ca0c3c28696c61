"""Decoding any image file to an 8-bit RGB PIL image, or a :class:`DataError` naming the file.

Each awkward input has a documented fix (see docs/data.md):

- RGBA / LA / PA / palette with transparency: composited on ``background`` (white by
  default), never ``convert("RGB")`` (that keeps whatever colour transparent pixels stored).
- palette, grey, 1-bit, CMYK, YCbCr, LAB, HSV: converted by Pillow.
- 16-bit (``I;16*``) and 32-bit integer (``I``): scaled by 255/65535 (not clipped); an ``I``
  image with values beyond 16 bits is scaled by its own range.
- float (``F``, e.g. float TIFF): values in [0, 1] are scaled by 255; otherwise by the
  image's own min..max range (a constant image becomes black).
- EXIF orientation applied (phone photos arrive upright).
- multi-frame files (GIF, TIFF): the first frame.

Errors (each a DataError naming the file): zero-byte file, not an image, truncated or
corrupt data (found by decoding fully, not just opening), more pixels than ``max_pixels``
(decompression-bomb guard, checked from the header before any pixel is decoded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthmix.core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Pillow's own warning threshold (~89.5 megapixels, e.g. 9459 x 9459).
DEFAULT_MAX_PIXELS = 89_478_485
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Decoded:
    """A decoded image and what the file held before conversion."""

    image: Any            # PIL.Image.Image, mode "RGB", EXIF orientation applied
    mode: str             # mode of the file as stored ("RGBA", "P", "I;16", "CMYK", ...)
    format: str | None    # "JPEG", "PNG", ... (what the bytes are, whatever the extension says)
    width: int            # of the upright image (after EXIF orientation)
    height: int
    exif_rotated: bool    # an EXIF orientation 2-8 was applied (0, 1, missing: none)
    had_alpha: bool       # transparency was composited on the background


def is_image_file(path: str | Path) -> bool:
    """True when the file name has an image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def decode(path: str | Path, *, background: tuple[int, int, int] = WHITE,
           max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Decoded:
    """Open, check, fully decode, orient and convert ``path`` to RGB. Raises DataError."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataError(path, f"cannot read file: {err.strerror or err}") from None
    if size == 0:
        raise DataError(path, "empty file (0 bytes)")
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone switched Pillow's safety off globally
        raise DataError(path, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; truncated files "
                        "would pass silently. Set it back to False")
    if Image.MAX_IMAGE_PIXELS is not None and (max_pixels is None or max_pixels > Image.MAX_IMAGE_PIXELS):
        # The caller trusts bigger files than Pillow does: lift Pillow's process-wide guard
        # (ours below replaces it). Never lowered back: threads may be decoding.
        Image.MAX_IMAGE_PIXELS = None
    try:
        # (Pillow warns between its limit and twice it; our check below then raises anyway.)
        with Image.open(path) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise DataError(path, f"image has {w}x{h} = {w * h:,} pixels, over the limit of "
                                f"{max_pixels:,} (decompression-bomb guard; raise max_pixels "
                                "if the file is trusted)")
            mode, fmt = im.mode, im.format
            im.load()  # decode everything now: a truncated file often opens fine
            orientation = im.getexif().get(0x0112, 1)
            oriented = ImageOps.exif_transpose(im)
            rgb, had_alpha = to_rgb(oriented, background)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(path, "not an image (Pillow cannot identify the format)") from None
    except Image.DecompressionBombError as err:
        # Pillow's own guard fired first (over twice its limit), before ours could look.
        import re

        m = re.search(r"\((\d+) pixels\)", str(err))
        n = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        raise DataError(path, f"image has {n}, over Pillow's limit of {Image.MAX_IMAGE_PIXELS * 2:,} "
                        "(decompression-bomb guard; raise max_pixels if the file is trusted)") from None
    except PermissionError as err:  # an OSError, but not a broken file
        raise DataError(path, f"cannot read file: {err.strerror or err}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise DataError(path, f"cannot decode image (truncated or corrupt?): {err}") from None
    return Decoded(image=rgb, mode=mode, format=fmt, width=rgb.width, height=rgb.height,
                   exif_rotated=orientation in range(2, 9), had_alpha=had_alpha)


def load_rgb(path: str | Path, background: tuple[int, int, int] = WHITE, *,
             max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Open, fully decode, apply EXIF orientation and convert to 8-bit RGB (PIL image)."""
    return decode(path, background=background, max_pixels=max_pixels).image


def to_rgb(im, background: tuple[int, int, int] = WHITE):
    """Any PIL image -> (RGB image, had_alpha). See the module docstring for each mode."""
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            a = _by_range(a)
        elif mode == "I" and a.size and a.max() <= 255:
            pass  # an 8-bit range stored in a 32-bit container
        else:
            a = a * (255.0 / 65535.0)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB"), False
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and (a.min() < 0 or a.max() > 1):
            a = _by_range(a)
        else:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB"), False
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB"), True
    if mode == "RGB":
        return im.copy(), False
    return im.convert("RGB"), False


def _by_range(a):
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return a * 0.0
    return (a - lo) * (255.0 / (hi - lo))
