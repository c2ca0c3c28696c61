"""Shared fixtures: small image datasets made by the tests (no files from ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

COLOURS = {"apple": (200, 30, 30), "banana": (230, 210, 40), "orange": (240, 140, 20)}


def make_image(colour, size=(40, 32), seed=0, shape="disc"):
    """A coloured disc on a noisy light background: easy to classify, never constant."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    img = rng.integers(180, 256, size=(h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = w / 2 + rng.uniform(-3, 3), h / 2 + rng.uniform(-3, 3)
    r = min(w, h) * rng.uniform(0.25, 0.4)
    mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
    col = np.clip(np.array(colour) + rng.integers(-20, 20, 3), 0, 255)
    img[mask] = col
    return Image.fromarray(img)


def make_imagefolder(root: Path, per_class: dict[str, int] | None = None, splits=("train", "test"),
                     test_per_class: int = 3, size=(40, 32)) -> Path:
    """An ImageFolder with ``train/`` and ``test/`` splits of coloured discs (JPEG)."""
    per_class = per_class or {c: 8 for c in COLOURS}
    seed = 0
    for split in splits:
        for cls, n in per_class.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            count = n if split == "train" else test_per_class
            for i in range(count):
                seed += 1
                make_image(COLOURS.get(cls, (90, 90, 200)), size=size, seed=seed).save(
                    d / f"{cls}_{i:03d}.jpg", quality=95)
    return root


@pytest.fixture
def one_thread():
    """torch on one thread for the test, restored afterwards (two threads on a shared 2-core
    machine are many times slower than one). Use: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """3 classes x 8 train + 3 test images, 40x32 JPEG."""
    return make_imagefolder(tmp_path / "ds")
