"""Classification metrics from class probabilities (scikit-learn; ECE in numpy).

``classification_metrics(probs [N,C] float, y [N] int, classes) -> dict`` with
``accuracy`` (micro), ``precision_macro`` / ``recall_macro`` / ``f1_macro``, ``roc_auc_ovr``
(macro over classes that have both positives and negatives in ``y``; None if none has),
``roc_auc_per_class``, ``ece`` (15 bins, L1), ``confusion`` (rows = true, cols = predicted),
``per_class`` (scikit-learn's classification_report as a dict) and ``n``.
Classes absent from ``y`` count as zero in the macro averages (scikit-learn's
``zero_division=0``), so a metric never silently averages over fewer classes.

(torchmetrics computes the same values, but importing it costs ~2-15 s here: its package
``__init__`` pulls in the text metrics; scikit-learn is needed for the report anyway.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(probs, y, classes: Sequence[str], ece_bins: int = 15) -> dict[str, Any]:
    """Metrics of predictions ``probs`` [N, C] (rows sum to 1) against labels ``y`` [N]."""
    from sklearn.metrics import (
        classification_report,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    from synthmix.evaluation.calibration import expected_calibration_error

    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(y, dtype=np.int64)
    c = len(classes)
    if p.ndim != 2 or p.shape[1] != c or p.shape[0] != t.shape[0]:
        raise ValueError(f"probs must be [N, {c}] with N = len(y) = {t.shape[0]}, got {p.shape}")
    if t.size == 0:
        raise ValueError("no samples to evaluate")
    pred = p.argmax(1)
    labels = list(range(c))
    acc = float((pred == t).mean())
    cm = confusion_matrix(t, pred, labels=labels)
    prec, rec, f1, _ = precision_recall_fscore_support(t, pred, labels=labels, average="macro",
                                                       zero_division=0)
    per_class_auc: dict[str, float | None] = {}
    for k, name in enumerate(classes):
        pos = t == k
        per_class_auc[name] = float(roc_auc_score(pos, p[:, k])) if 0 < pos.sum() < len(t) else None
    aucs = [v for v in per_class_auc.values() if v is not None]
    report = classification_report(t, pred, labels=labels, target_names=list(classes),
                                   output_dict=True, zero_division=0)
    return {
        "n": int(t.size),
        "accuracy": acc,
        "precision_macro": float(prec),
        "recall_macro": float(rec),
        "f1_macro": float(f1),
        "roc_auc_ovr": float(np.mean(aucs)) if aucs else None,
        "roc_auc_per_class": per_class_auc,
        "ece": expected_calibration_error(p, t, n_bins=ece_bins),
        "confusion": cm.tolist(),
        "per_class": {k: v for k, v in report.items() if k in classes},
        "classes": list(classes),
    }


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of logits [N, C] (numerically stable) as float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
