"""Checkpoints: written atomically, read back with ``weights_only=True`` (no pickled code).

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(..., weights_only=True)``: RNG states are stored as uint8 tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.errors import DataError
from synthmix.core.io import atomic_path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a kill mid-write leaves the old file intact)."""
    import torch

    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights only, safe to load)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt or foreign file: name it
        raise DataError(path, f"cannot read checkpoint: {err}") from None


def save_weights(path: str | Path, model) -> None:
    """Just the model's ``state_dict`` (what evaluation loads)."""
    save_checkpoint(path, {"model": model.state_dict()})


def load_weights(path: str | Path, model) -> None:
    """Load weights saved by :func:`save_weights` (or a full training checkpoint) into ``model``."""
    state = load_checkpoint(path)
    model.load_state_dict(state["model"])
