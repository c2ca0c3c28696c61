"""Uncertainty over seeds: the mean with a Student-t confidence interval.

``mean_ci(values, confidence=0.95) -> {"mean", "lo", "hi", "n", "values", "std", "confidence",
"note"}``: lo/hi = mean -+ t_{(1+confidence)/2, n-1} * s / sqrt(n) with s the sample standard
deviation (ddof=1). For n = 1 the interval is undefined: lo, hi and std are None and ``note``
says so (no fake zero-width interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean and t-interval of ``values`` (independent runs, e.g. one per seed)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_ci needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(vals)
    mean = sum(vals) / n
    out: dict[str, Any] = {"mean": mean, "n": n, "values": vals, "confidence": confidence,
                           "lo": None, "hi": None, "std": None, "note": None}
    if n == 1:
        out["note"] = "one run: the confidence interval is undefined (train more seeds)"
        return out
    from scipy import stats

    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    out.update(lo=mean - half, hi=mean + half, std=std)
    return out


def format_ci(ci: dict[str, Any], digits: int = 4) -> str:
    """``0.9636 ± 0.0123 (95 % CI 0.9513–0.9759, n=3)`` or ``0.9636 (n=1, no CI)``."""
    if ci["lo"] is None:
        return f"{ci['mean']:.{digits}f} (n={ci['n']}, no CI)"
    half = (ci["hi"] - ci["lo"]) / 2
    pct = round(100 * ci["confidence"])
    return (f"{ci['mean']:.{digits}f} ± {half:.{digits}f} ({pct} % CI {ci['lo']:.{digits}f}–"
            f"{ci['hi']:.{digits}f}, n={ci['n']})")
