"""The verdict's statistics against hand computations and library references: Holm, the paired
hierarchical bootstrap, bootstrap AUROC, and the "worth N real images" inversion."""

from __future__ import annotations

import numpy as np
import pytest

from synthmix.experiments.verdict import Bootstrap, CellArrays, holm, paired_difference, worth_real


def test_holm_matches_a_hand_computation():
    # sorted 0.01 (x4 = 0.04), 0.03 (x3 = 0.09), 0.04 (x2 = 0.08 -> 0.09, monotone), 0.2 (x1)
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def _cell(seed, correct, id_scores=None, ood_scores=None):
    n = len(correct)
    labels = np.zeros(n, dtype=np.int64)
    pred = np.where(np.asarray(correct, bool), 0, 1)
    scores = {}
    if id_scores is not None:
        scores = {"test/energy": np.asarray(id_scores, float), "near/energy": np.asarray(ood_scores, float)}
    return CellArrays(seed, labels, pred, scores)


def test_bootstrap_replicates_equal_explicit_resampling():
    """The count-matrix form of a replicate equals recomputing the metric on resampled arrays."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    idv, oodv = rng.normal(1, 1, 30), rng.normal(0, 1, 20)
    cell = _cell(0, rng.random(30) > 0.3, idv, oodv)
    boot = Bootstrap(30, {"near": 20}, 50, seed=3)
    full, reps = boot.values(cell, "test/accuracy")
    assert full == pytest.approx((cell.pred == cell.labels).mean())
    for b in range(5):
        idx = np.repeat(np.arange(30), boot.test[b].astype(int))
        assert reps[b] == pytest.approx((cell.pred[idx] == cell.labels[idx]).mean())
    full, reps = boot.values(cell, "ood/near/energy/auroc")
    assert full == pytest.approx(roc_auc_score(np.r_[np.ones(30), np.zeros(20)], np.r_[idv, oodv]))
    for b in range(5):
        i = np.repeat(np.arange(30), boot.test[b].astype(int))
        o = np.repeat(np.arange(20), boot.ood["near"][b].astype(int))
        assert reps[b] == pytest.approx(roc_auc_score(np.r_[np.ones(len(i)), np.zeros(len(o))],
                                                      np.r_[idv[i], oodv[o]]))


def test_paired_difference_finds_a_real_effect_and_not_a_null_one():
    rng = np.random.default_rng(0)
    n = 200
    boot = Bootstrap(n, {}, 2000, seed=0)
    good = {s: boot.values(_cell(s, rng.random(n) < 0.9), "test/accuracy") for s in range(5)}
    base = {s: boot.values(_cell(s, rng.random(n) < 0.6), "test/accuracy") for s in range(5)}
    d = paired_difference(good, base, boot)
    assert d["n"] == 5 and 0.2 < d["delta"] < 0.4 and d["lo"] > 0.1 and d["p"] < 0.01
    # the estimate is the mean of the per-seed differences
    assert d["delta"] == pytest.approx(np.mean([good[s][0] - base[s][0] for s in range(5)]))
    same = {s: boot.values(_cell(s, rng.random(n) < 0.6), "test/accuracy") for s in range(5)}
    d0 = paired_difference(same, base, boot)
    assert d0["lo"] < 0 < d0["hi"] and d0["p"] > 0.05
    assert paired_difference(good, {}, boot) is None


def test_worth_inverts_a_log_linear_curve():
    """acc = 0.3 + 0.1 ln n exactly: a setup at the accuracy of n = 40 is worth 40 images per class."""
    n_test = 1000
    boot = Bootstrap(n_test, {}, 500, seed=0)

    def level(acc, seed):
        correct = np.zeros(n_test, bool)
        correct[:round(acc * n_test)] = True
        return boot.values(_cell(seed, correct), "test/accuracy")

    curve = {n: {s: level(0.3 + 0.1 * np.log(n), s) for s in range(3)} for n in (5, 10, 20)}
    target = {s: level(0.3 + 0.1 * np.log(40), s) for s in range(3)}
    w = worth_real(curve, target, boot)
    assert w["worth"] == pytest.approx(40, rel=0.03) and w["extrapolated"]  # 40 > the full set (20)
    assert w["lo"] < 40 < w["hi"]
    inside = worth_real(curve, {s: level(0.3 + 0.1 * np.log(10), s) for s in range(3)}, boot)
    assert inside["worth"] == pytest.approx(10, rel=0.03) and not inside["extrapolated"]
    flat = {n: {s: level(0.6, s) for s in range(3)} for n in (5, 10, 20)}
    assert worth_real(flat, target, boot)["worth"] is None  # more real data did not help: not expressible


def test_p_value_is_at_most_one_when_replicates_tie():
    """Identical setups: every replicate's difference is 0; p must be 1, not 2."""
    n = 50
    boot = Bootstrap(n, {}, 500, seed=0)
    same = {s: boot.values(_cell(s, np.arange(n) % 3 > 0), "test/accuracy") for s in range(3)}
    d = paired_difference(same, same, boot)
    assert d["delta"] == 0 and d["p"] == 1.0
