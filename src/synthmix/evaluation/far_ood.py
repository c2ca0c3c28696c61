"""A far-OOD evaluation set available offline: crops of scikit-image's bundled sample images.

scikit-image ships a few photographs inside the package (no download): astronaut, coffee,
chelsea (a cat), rocket, camera, coins, ... Random square crops of them, resized, make an
image set that is far from any small user dataset. Written as PNG files plus manifest rows
with ``split="far_ood"``, ``source="skimage"``, ``label=None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: sample images that load offline from the scikit-image package itself (checked: 0.2x)
SKIMAGE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry",
                  "colorwheel", "brick", "grass", "gravel", "clock", "moon", "page", "text")


def _load(name: str):
    import numpy as np
    import skimage.data

    from synthmix.core.errors import ConfigError

    fn = getattr(skimage.data, name, None)
    if fn is None:
        raise ConfigError(f"far_ood.images: scikit-image has no sample image {name!r}")
    img = np.asarray(fn())
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3].astype(np.uint8)


def build_far_ood(out_dir: str | Path, size: int = 64, crops_per_image: int = 6, seed: int = 0,
                  images: tuple[str, ...] = SKIMAGE_IMAGES) -> list[dict[str, Any]]:
    """Write ``len(images) * crops_per_image`` PNG crops (size x size) under ``out_dir`` and a
    ``manifest.jsonl`` there (atomic); return its rows. Idempotent: same seed, same files.

    Each crop is a random square of 25-70 % of the shorter side, resized with antialiasing.
    """
    import numpy as np
    from PIL import Image

    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.core.io import atomic_path
    from synthmix.data.manifest import new_row, write_manifest

    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for name in images:
        img = _load(name)
        h, w = img.shape[:2]
        for k in range(crops_per_image):
            side = int(min(h, w) * rng.uniform(0.25, 0.7))
            y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(img[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BICUBIC)
            rel = f"images/{name}_{k:02d}.png"
            with atomic_path(out_dir / rel, suffix=".png") as tmp:
                crop.save(tmp, format="PNG")
            digest = sha256_file(out_dir / rel)
            rows.append(new_row(id=short_id(digest), sha256=digest, path=rel, label=None, split="far_ood",
                                source="skimage", width=size, height=size, mode="RGB",
                                prompt=f"skimage.data.{name}"))
    write_manifest(out_dir / "manifest.jsonl", rows)
    return rows
