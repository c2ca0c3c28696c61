"""Cached model outputs: features [N, D] and logits [N, C] per named set, as .npy files.

Compute once per run (``synthmix.evaluation.features.extract``), then every detector and metric works from the
arrays, so no model is re-run to try another detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_outputs(directory: str | Path, name: str, features: np.ndarray, logits: np.ndarray,
                 labels: np.ndarray | None = None) -> None:
    """Write ``{name}.features.npy``, ``{name}.logits.npy`` (and ``{name}.labels.npy``) atomically."""
    from synthmix.core.io import atomic_path

    items = {"features": features, "logits": logits}
    if labels is not None:
        items["labels"] = labels
    for kind, arr in items.items():
        with atomic_path(Path(directory) / f"{name}.{kind}.npy", suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(arr))  # a file object: np.save would append ".npy" to a name


def load_outputs(directory: str | Path, name: str) -> dict[str, np.ndarray]:
    """{features, logits[, labels]} saved by :func:`save_outputs`; a clear error if missing."""
    from synthmix.core.errors import DataError

    out = {}
    for kind in ("features", "logits", "labels"):
        p = Path(directory) / f"{name}.{kind}.npy"
        if p.is_file():
            out[kind] = np.load(p, allow_pickle=False)
        elif kind != "labels":
            raise DataError(p, f"cached {kind} of set {name!r} not found (extract and save_outputs first)")
    return out
