"""Score histograms (PNG): one panel per detector, ID vs each OOD set overlaid."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def plot_score_histograms(scores: Mapping[str, Mapping[str, np.ndarray]], path: str | Path,
                          title: str = "", bins: int = 30) -> Path:
    """scores: {detector: {set name: scores [N]}} (higher = more in-distribution); writes a PNG
    atomically and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthmix.core.io import atomic_path

    names = list(scores)
    if not names:
        raise ValueError("plot_score_histograms: no scores given")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, det in zip(axes[0], names, strict=True):
        sets = scores[det]
        allv = np.concatenate([np.asarray(v, dtype=float) for v in sets.values() if len(v)])
        edges = np.histogram_bin_edges(allv, bins=bins)
        for name, v in sets.items():
            ax.hist(np.asarray(v, dtype=float), bins=edges, alpha=0.5, density=True, label=f"{name} (n={len(v)})")
        ax.set_title(det)
        ax.set_xlabel("ID score (higher = more in-distribution)")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
