"""A PNG contact sheet of images (one per role in curation)."""

from __future__ import annotations

from pathlib import Path


def save_grid(x, path: str | Path, nrow: int = 8, max_images: int = 64) -> Path | None:
    """x: uint8 [N,3,H,W]; writes the first ``max_images`` as a grid PNG (atomic). None if N = 0."""
    from PIL import Image
    from torchvision.utils import make_grid

    from synthmix.core.io import atomic_path

    if len(x) == 0:
        return None
    g = make_grid(x[:max_images], nrow=nrow, padding=2, pad_value=255)
    img = Image.fromarray(g.permute(1, 2, 0).contiguous().numpy())
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
    return path
