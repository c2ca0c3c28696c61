"""Calibration: expected calibration error and a reliability diagram.

ECE = sum over confidence bins b of |B_b|/N * |acc(B_b) - conf(B_b)|, with ``n_bins``
equal-width bins (lo, hi] over the top-class probability (15 by default, L1 norm: the
definition torchmetrics' ``multiclass_calibration_error`` uses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def expected_calibration_error(probs, y, n_bins: int = 15) -> float:
    """ECE of ``probs`` [N, C] against ``y`` [N] (L1, equal-width confidence bins)."""
    bins = reliability_bins(probs, y, n_bins)
    n = sum(bins["count"])
    return float(sum(c / n * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"],
                                                            bins["confidence"], strict=True) if c))


def reliability_bins(probs, y, n_bins: int = 15) -> dict[str, list[float]]:
    """Per bin: mean confidence, accuracy and count (empty bins have NaN confidence/accuracy)."""
    p = np.asarray(probs)
    t = np.asarray(y)
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (lo, hi]
    out = {"confidence": [], "accuracy": [], "count": [], "lower": edges[:-1].tolist(),
           "upper": edges[1:].tolist()}
    for b in range(n_bins):
        m = idx == b
        out["count"].append(int(m.sum()))
        out["confidence"].append(float(conf[m].mean()) if m.any() else float("nan"))
        out["accuracy"].append(float((pred[m] == t[m]).mean()) if m.any() else float("nan"))
    return out


def plot_reliability(probs, y, path: str | Path, n_bins: int = 15, title: str = "") -> None:
    """Reliability diagram (accuracy vs confidence per bin) with the ECE in the title."""
    from synthmix.evaluation.curves import figure, save_figure

    bins = reliability_bins(probs, y, n_bins)
    ece = expected_calibration_error(probs, y, n_bins)
    fig, ax = figure()
    width = 1.0 / n_bins
    centres = np.asarray(bins["lower"]) + width / 2
    acc = np.nan_to_num(np.asarray(bins["accuracy"]))
    ax.bar(centres, acc, width=width * 0.95, color="tab:blue", alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} ECE = {ece:.3f}".strip())
    ax.legend(loc="upper left")
    save_figure(fig, path)
