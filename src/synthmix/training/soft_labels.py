"""Soft labels: class-probability targets for rows that carry a ``soft_label`` (inter-class
translations, :mod:`synthmix.generation.sd.translate`); every other row keeps its one-hot label.

``F.cross_entropy(logits [B,C], target [B,C] float)`` takes probability targets (label smoothing
included: the target is mixed with the uniform distribution), so the training loop only swaps
the target it passes; a training set without soft rows never builds this tensor and trains
exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SUM_TOL = 1e-4  # a soft label's weights must sum to 1 within this


def has_soft_labels(rows: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("soft_label") for r in rows)


def soft_target_tensor(rows: Sequence[dict[str, Any]], classes: Sequence[str]):
    """float32 [N, C] targets in row order (one-hot for hard rows), or ``None`` when no row is soft.

    Raises :class:`DataError` naming the row when a soft label names an unknown class, has a
    negative weight, or does not sum to 1.
    """
    import torch

    from synthmix.core.errors import DataError

    if not has_soft_labels(rows):
        return None
    index = {c: i for i, c in enumerate(classes)}
    out = torch.zeros(len(rows), len(classes), dtype=torch.float32)
    for i, r in enumerate(rows):
        soft = r.get("soft_label")
        if not soft:
            out[i, index[r["label"]]] = 1.0
            continue
        unknown = [c for c in soft if c not in index]
        if unknown:
            raise DataError(r.get("path", "?"), f"soft_label of row {r['id']} names {unknown}, not classes of the run "
                            f"{list(classes)} (an excluded class cannot be a translation's source)")
        w = [float(v) for v in soft.values()]
        if min(w) < 0 or abs(sum(w) - 1.0) > SUM_TOL:
            raise DataError(r.get("path", "?"), f"soft_label of row {r['id']} is {soft}: weights must be >= 0 "
                            "and sum to 1")
        for c, v in soft.items():
            out[i, index[c]] = float(v)
    return out
