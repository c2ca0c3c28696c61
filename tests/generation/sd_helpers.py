"""Shared pieces of the Stable Diffusion tests: a real manifest of tiny images, a tiny model folder,
and single-threaded torch (tiny ops are dominated by thread hand-offs on a shared 2-core machine)."""

from __future__ import annotations

from pathlib import Path


def real_manifest(root: Path, per_class: dict[str, int], rgba: bool = False) -> Path:
    """An ImageFolder (train + 1 test image per class) and its manifest of real rows; returns the manifest.

    ``rgba``: the first train image of each class is an RGBA PNG (img2img must still get RGB).
    """
    import numpy as np
    from PIL import Image

    from conftest import make_imagefolder
    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.data.manifest import new_row, write_manifest

    ds = make_imagefolder(root / "ds", per_class=per_class, test_per_class=1, size=(40, 32))
    if rgba:
        for cls in per_class:
            first = sorted((ds / "train" / cls).glob("*.jpg"))[0]
            arr = np.asarray(Image.open(first).convert("RGB"))
            alpha = np.full(arr.shape[:2] + (1,), 255, np.uint8)
            alpha[:4] = 0  # a transparent band
            Image.fromarray(np.concatenate([arr, alpha], -1), "RGBA").save(first.with_suffix(".png"))
            first.unlink()
    rows = []
    for split in ("train", "test"):
        for f in sorted((ds / split).rglob("*.*")):
            h = sha256_file(f)
            rows.append(new_row(id=short_id(h), sha256=h, path=str(f), label=f.parent.name, split=split,
                                source="real", status="ok"))
    out = root / "manifest.jsonl"
    write_manifest(out, rows)
    return out


def single_thread():
    """Context: torch on one thread, restored afterwards."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def ctx():
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)

    return ctx()


def to_u8(arr):
    from synthmix.generation.writer import to_uint8

    return to_uint8(arr)
