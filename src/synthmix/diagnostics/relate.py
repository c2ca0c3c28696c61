"""Does a diagnostic predict usefulness? Rank-correlate it with the downstream effect.

``relate(diagnostics_by_setup, effects)``: for each diagnostic, Spearman's rank correlation
(average ranks for ties) between its value per setup and the setup's effect (e.g. the
controlled Δ accuracy vs real-only, or Δ near-OOD AUROC), over the setups that have both.
With fewer than ``min_n`` (5) setups a correlation is only descriptive: ``descriptive`` is
True and no p-value is given (a rank correlation of 3 points is +-1 or +-0.5 by construction).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of x [n], y [n] (NaN when n < 2 or either is constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def relate(diagnostics_by_setup: dict[str, dict[str, float]], effects: dict[str, float],
           min_n: int = 5) -> list[dict[str, Any]]:
    """Rows {diagnostic, spearman, n, setups, descriptive, p_value} sorted by |rho| (descending).

    ``diagnostics_by_setup``: {setup: {diagnostic name: value}}; ``effects``: {setup: effect}.
    Setups where either value is missing or not finite are left out of that diagnostic's row.
    ``p_value`` (from scipy's t approximation) only when n >= min_n.
    """
    names = sorted({k for d in diagnostics_by_setup.values() for k in d})
    rows = []
    for name in names:
        pairs = [(s, float(d[name]), float(effects[s])) for s, d in sorted(diagnostics_by_setup.items())
                 if s in effects and d.get(name) is not None
                 and math.isfinite(float(d[name])) and math.isfinite(float(effects[s]))]
        x = np.array([p[1] for p in pairs])
        y = np.array([p[2] for p in pairs])
        rho = spearman(x, y)
        p_value = None
        if len(pairs) >= min_n and math.isfinite(rho):
            from scipy.stats import spearmanr

            p_value = float(spearmanr(x, y).pvalue)
        rows.append({"diagnostic": name, "spearman": rho, "n": len(pairs), "setups": [p[0] for p in pairs],
                     "descriptive": len(pairs) < min_n, "p_value": p_value})
    rows.sort(key=lambda r: -abs(r["spearman"]) if math.isfinite(r["spearman"]) else 1.0)
    return rows
