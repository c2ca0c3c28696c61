"""Decoding any image file to an RGB PIL image, or a clear error naming the file.

(Minimal first version: the data-layer work hardens every case listed in issue 3.)
"""

from __future__ import annotations

from pathlib import Path

from synthmix.core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_rgb(path: str | Path, background: tuple[int, int, int] = (255, 255, 255)):
    """Open, fully decode, apply EXIF orientation and convert to 8-bit RGB."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, background + (255,))
                im = Image.alpha_composite(bg, im)
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(path, f"cannot decode image: {err}") from None
