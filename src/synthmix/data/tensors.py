"""Images as one uint8 tensor [N, 3, S, S] in memory: decode + resize once, then train from RAM.

The work is done in :mod:`synthmix.data.preprocess` (resize modes, box crops) and
:mod:`synthmix.data.cache` (on-disk cache keyed by manifest id + preprocessing hash);
these are the stable entry points other stages call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def resize_pad(img, size: int, fill: tuple[int, int, int] = (0, 0, 0)):
    """Aspect-preserving resize so the long side is ``size``, padded to a square (PIL in, PIL out)."""
    from synthmix.data.preprocess import resize_square

    return resize_square(img, size, "pad", fill)


def load_tensor(rows: Sequence[dict[str, Any]], manifest_path: str | Path | None, size: int, *,
                preprocess=None, cache_dir: str | Path | None = None, workers: int | None = None):
    """uint8 tensor [N, 3, size, size] of the rows' images, in row order.

    ``preprocess``: a :class:`synthmix.data.preprocess.PreprocessConfig` (default: pad on
    black); ``cache_dir``: decode each image once, read it back on later calls.
    """
    from synthmix.data.cache import load_tensor as _load

    return _load(rows, manifest_path, size, preprocess=preprocess, cache_dir=cache_dir, workers=workers)


def label_tensor(rows: Sequence[dict[str, Any]], classes: Sequence[str]):
    """int64 tensor [N] of class indices (``classes`` is the run's stored class list)."""
    import torch

    from synthmix.core.errors import DataError

    index = {c: i for i, c in enumerate(classes)}
    missing = [r for r in rows if r["label"] not in index]
    if missing:
        raise DataError(missing[0].get("path", "?"), f"label {missing[0]['label']!r} is not one of the "
                        f"run's classes {list(classes)} ({len(missing)} such rows)")
    return torch.tensor([index[r["label"]] for r in rows], dtype=torch.long)
