"""Label diagnostics: does a real-trained classifier agree with each synthetic image's label?
And the Classification Accuracy Score (CAS, Ravuri & Vinyals 2019): the real-test accuracy of a
classifier trained on synthetic images only, read from a finished run (the study trains it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def label_agreement(logits: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    """logits [M, C] of a real-trained classifier, intended labels [M] (class indices) ->
    {agreement: share with argmax == label, label_confidence: mean softmax probability of the
    label, n}. NaN for M = 0."""
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        return {"agreement": float("nan"), "label_confidence": float("nan"), "n": 0}
    p = softmax(logits)
    return {"agreement": float((p.argmax(1) == labels).mean()),
            "label_confidence": float(p[np.arange(len(labels)), labels].mean()),
            "n": int(len(labels))}


def cas_from_run(run_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """CAS of a finished synthetic-only training run: its accuracy on the REAL ``split`` images
    (``eval/<split>/metrics.json``), overall and per class (recall = per-class accuracy)."""
    from synthmix.core.errors import DataError
    from synthmix.core.io import read_json

    path = Path(run_dir) / "eval" / split / "metrics.json"
    if not path.is_file():
        raise DataError(path, f"missing: CAS needs the run evaluated on the real {split} split")
    m = read_json(path)
    if "accuracy" not in m:
        raise DataError(path, f"no accuracy: the {split} set had no labelled images")
    per = {c: float(v["recall"]) for c, v in (m.get("per_class") or {}).items()
           if isinstance(v, dict) and "recall" in v}
    return {"cas": float(m["accuracy"]), "per_class": per, "n": int(m.get("n_labelled", m.get("n", 0))),
            "split": split, "run": str(run_dir)}


def per_class_agreement(logits: np.ndarray, labels: np.ndarray,
                        classes: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """{class name: label_agreement of the rows of that class} for classes with rows."""
    labels = np.asarray(labels, np.int64)
    return {c: label_agreement(np.asarray(logits)[labels == i], labels[labels == i])
            for i, c in enumerate(classes) if (labels == i).any()}
