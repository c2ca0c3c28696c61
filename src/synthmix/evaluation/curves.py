"""ROC, precision-recall and confusion-matrix plots (matplotlib, Agg backend, atomic PNG writes).

``plot_roc(probs [N,C], y [N], classes, path)``: one-vs-rest ROC curve per class with its AUC;
``plot_pr(...)``: one-vs-rest precision-recall curve per class with its average precision;
``plot_confusion(confusion [C,C], classes, path)``: counts, rows = true class.
Classes without positives (or without negatives) in ``y`` are left out of the curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def figure(size: tuple[float, float] = (5.0, 4.5)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    from synthmix.core.io import atomic_path

    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def _one_vs_rest(probs, y, classes: Sequence[str]):
    """(class name, is-this-class [N] bool, its scores [N]) of every class with both positives and
    negatives; probs: [N, C], y: [N]."""
    p, t = np.asarray(probs), np.asarray(y)
    for k, name in enumerate(classes):
        pos = t == k
        if 0 < pos.sum() < len(t):
            yield name, pos, p[:, k]


def plot_roc(probs, y, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = figure()
    for name, pos, score in _one_vs_rest(probs, y, classes):
        fpr, tpr, _ = roc_curve(pos, score)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {roc_auc_score(pos, score):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC (one-vs-rest) {title}".strip())
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def plot_pr(probs, y, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = figure()
    for name, pos, score in _one_vs_rest(probs, y, classes):
        prec, rec, _ = precision_recall_curve(pos, score)
        ax.plot(rec, prec, lw=1.5, label=f"{name} (AP {average_precision_score(pos, score):.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"precision-recall (one-vs-rest) {title}".strip())
    ax.legend(loc="lower left", fontsize=8)
    save_figure(fig, path)


def plot_confusion(confusion, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    cm = np.asarray(confusion)
    fig, ax = figure((1.2 + 0.9 * len(classes), 1.0 + 0.8 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    hi = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if cm[i, j] > hi / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion {title}".strip())
    save_figure(fig, path)
