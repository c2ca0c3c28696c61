"""Metrics against values computed by hand on a 6-sample, 3-class case."""

from __future__ import annotations

import numpy as np
import pytest

from synthmix.evaluation.calibration import expected_calibration_error, reliability_bins
from synthmix.evaluation.metrics import classification_metrics, softmax

CLASSES = ["a", "b", "c"]
Y = np.array([0, 0, 1, 1, 2, 2])
# predictions: 0, 1, 1, 1, 2, 0  (two mistakes)
P = np.array([
    [0.70, 0.20, 0.10],
    [0.35, 0.55, 0.10],
    [0.20, 0.65, 0.15],
    [0.10, 0.85, 0.05],
    [0.05, 0.10, 0.85],
    [0.55, 0.10, 0.35],
])


def test_metrics_match_hand_computed_values():
    m = classification_metrics(P, Y, CLASSES, ece_bins=5)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # precision a: 1/2, b: 2/3, c: 1/1; recall a: 1/2, b: 2/2, c: 1/2
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert m["f1_macro"] == pytest.approx(sum(f1) / 3)
    # AUC a: positives 0.70, 0.35 vs negatives 0.20 0.10 0.05 0.55 -> 7 of 8 pairs ordered
    assert m["roc_auc_per_class"] == pytest.approx({"a": 7 / 8, "b": 1.0, "c": 1.0})
    assert m["roc_auc_ovr"] == pytest.approx((7 / 8 + 1 + 1) / 3)
    # ECE, 5 bins: [.4,.6): .55,.55 wrong; [.6,.8): .70,.65 right; [.8,1]: .85,.85 right
    assert m["ece"] == pytest.approx((2 * 0.55 + 2 * (1 - 0.675) + 2 * 0.15) / 6)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["a"]["support"] == 2


def test_ece_bins_and_a_perfectly_calibrated_case():
    bins = reliability_bins(P, Y, n_bins=5)
    assert bins["count"] == [0, 0, 2, 2, 2]
    assert bins["accuracy"][2:] == [0.0, 1.0, 1.0]
    # confidence 0.75 everywhere, 3 of 4 right: calibrated, ECE 0; all right: ECE 0.25
    p = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(p, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(p, np.array([0, 0, 0, 0])) == pytest.approx(0.25)


def test_auc_none_when_a_class_has_no_positives():
    y = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(P, y, CLASSES)
    assert m["roc_auc_per_class"]["c"] is None
    assert m["roc_auc_ovr"] is not None
    # recall a: 2/3 (0 0 0 -> 0 1 0), b: 2/3, c: absent -> 0 (counted, not dropped)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_softmax_rows_sum_to_one_and_shape_checks():
    s = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]))
    assert np.allclose(s.sum(1), 1) and s[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        classification_metrics(P[:, :2], Y, CLASSES)
