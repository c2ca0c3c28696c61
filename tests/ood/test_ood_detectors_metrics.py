"""OOD metrics against hand-computed cases; detectors against definitions and pytorch-ood."""

from __future__ import annotations

import numpy as np
import pytest

from synthmix.evaluation.ood.cache import load_outputs, save_outputs
from synthmix.evaluation.ood.detectors import (
    FittedDetectors,
    KNNDetector,
    MahalanobisDetector,
    energy_score,
    msp_score,
)
from synthmix.evaluation.ood.histograms import plot_score_histograms
from synthmix.evaluation.ood.metrics import fpr_at_tpr, ood_metrics


def test_auroc_hand_computed_with_tie():
    # id 3: beats 1, loses to 3.5, ties 3 (1/2) -> 1.5; id 4 beats all three -> 3; (1.5 + 3) / 6
    m = ood_metrics(np.array([3.0, 4.0]), np.array([1.0, 3.5, 3.0]))
    assert m["auroc"] == pytest.approx(4.5 / 6)


def test_fpr95_hand_computed():
    ids = np.arange(1, 21, dtype=float)  # threshold accepting 19/20 = 95 %: t = 2
    assert fpr_at_tpr(ids, np.array([0.0, 1.5, 2.0, 3.0])) == pytest.approx(0.5)
    assert fpr_at_tpr(ids, np.array([1.99])) == 0.0


def test_perfect_and_reversed_separation():
    i, o = np.array([5.0, 6, 7]), np.array([1.0, 2])
    m = ood_metrics(i, o)
    assert m["auroc"] == 1.0 and m["fpr95"] == 0.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0
    r = ood_metrics(o, i)
    assert r["auroc"] == 0.0 and r["fpr95"] == 1.0


def test_aupr_in_hand_computed():
    # ranking by score: id(0.9), ood(0.8), id(0.7): AP = (1/1 + 2/3) / 2
    m = ood_metrics(np.array([0.9, 0.7]), np.array([0.8]))
    assert m["aupr_in"] == pytest.approx((1 + 2 / 3) / 2)


def test_metrics_reject_empty_and_nan():
    with pytest.raises(ValueError, match="non-empty"):
        ood_metrics(np.array([1.0]), np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        ood_metrics(np.array([np.nan]), np.array([1.0]))


def test_msp_energy_definitions_and_pytorch_ood():
    import torch
    from pytorch_ood.detector import EnergyBased, MaxSoftmax

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert msp_score(logits) == pytest.approx(p.max(1))
    assert energy_score(logits) == pytest.approx(np.log(np.exp(logits).sum(1)))
    t = torch.tensor(logits, dtype=torch.float64)
    # pytorch-ood returns outlier scores: the negatives of ours
    assert -MaxSoftmax.score(t).numpy() == pytest.approx(msp_score(logits), abs=1e-6)
    assert -EnergyBased.score(t).numpy() == pytest.approx(energy_score(logits), abs=1e-6)


def test_knn_score_is_minus_kth_distance_on_normalised_features():
    bank = np.array([[1.0, 0], [0, 1.0], [-1.0, 0]]) * 5  # scale must not matter
    det = KNNDetector.fit(bank, k=2)
    q = np.array([[2.0, 0.0]])  # normalised (1, 0): distances 0, sqrt2, 2 -> 2nd nearest sqrt2
    assert det.score(q)[0] == pytest.approx(-np.sqrt(2))
    assert det.score(bank[:1], exclude_self=True)[0] == pytest.approx(-2.0)


def test_mahalanobis_prefers_near_class_means():
    rng = np.random.default_rng(1)
    f = np.r_[rng.normal(0, 1, (50, 3)), rng.normal(6, 1, (50, 3))]
    y = np.r_[np.zeros(50), np.ones(50)]
    det = MahalanobisDetector.fit(f, y, normalize=False)
    s = det.score(np.array([[0.0, 0, 0], [6.0, 6, 6], [3.0, 3, 3], [20.0, -20, 0]]))
    assert s[0] > s[2] and s[1] > s[2] and s[2] > s[3]


def test_fitted_detectors_separate_far_points_and_cache_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    train = np.r_[rng.normal(0, 1, (40, 4)) + [4, 0, 0, 0], rng.normal(0, 1, (40, 4)) - [4, 0, 0, 0]]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    det = FittedDetectors.fit(train, y, k=5)
    test_in = np.r_[rng.normal(0, 1, (20, 4)) + [4, 0, 0, 0]]
    far = rng.normal(0, 1, (20, 4)) + [0, 0, 12, 0]
    for name in ("knn", "mahalanobis"):
        s_in = det.score(test_in, np.zeros((20, 2)))[name]
        s_out = det.score(far, np.zeros((20, 2)))[name]
        assert ood_metrics(s_in, s_out)["auroc"] > 0.95
    save_outputs(tmp_path, "test", test_in.astype(np.float32), np.zeros((20, 2), np.float32), np.zeros(20, int))
    back = load_outputs(tmp_path, "test")
    assert back["features"].shape == (20, 4) and back["labels"].shape == (20,)
    assert not list(tmp_path.glob("*.tmp"))


def test_histogram_png_written(tmp_path):
    p = plot_score_histograms({"msp": {"id": np.linspace(0.5, 1, 10), "ood": np.linspace(0.3, 0.8, 5)}},
                              tmp_path / "h.png", title="t")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_missing_outputs_names_file(tmp_path):
    from synthmix.core.errors import DataError

    with pytest.raises(DataError, match="val.features.npy"):
        load_outputs(tmp_path, "val")


@pytest.mark.parametrize("n,d", [(50, 5), (20, 30)])
def test_mahalanobis_equals_sklearn_ledoit_wolf_precision(n, d):
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(n)
    f = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d)
    y = rng.integers(0, 3, n)
    det = MahalanobisDetector.fit(f, y, normalize=False)
    lw = LedoitWolf(assume_centered=True).fit(f - det.means[y])
    q = rng.normal(size=(7, d))
    ref = -np.min(np.stack([np.einsum("nd,de,ne->n", q - m, lw.precision_, q - m) for m in det.means], 1), 1)
    assert det.shrinkage == pytest.approx(lw.shrinkage_)
    assert det.score(q) == pytest.approx(ref, rel=1e-8, abs=1e-8)


def test_mahalanobis_normalised_ignores_feature_scale():
    rng = np.random.default_rng(3)
    f = np.abs(rng.normal(size=(40, 6)))
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    det = MahalanobisDetector.fit(f, y)  # normalize=True by default
    q = np.abs(rng.normal(size=(5, 6)))
    assert det.score(q * 7.0) == pytest.approx(det.score(q))
