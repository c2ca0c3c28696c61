"""ViM, ReAct, GEN, MaxLogit, KNN against pytorch-ood; the detector registry; grouped metrics
against scikit-learn and hand averages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmix.evaluation.ood.detectors import ALL_DETECTORS, DETECTORS, FittedDetectors, KNNDetector
from synthmix.evaluation.ood.metrics import full_spectrum_metrics, group_metrics, ood_metrics
from synthmix.evaluation.ood.posthoc import (
    LinearHead,
    ReActDetector,
    ViMDetector,
    gen_score,
    maxlogit_score,
)


def _fixture(n=80, d=12, c=4, seed=0):
    rng = np.random.default_rng(seed)
    h = np.abs(rng.normal(size=(n, d))) * rng.uniform(0.5, 2, d)  # ReLU-like activations
    W, b = rng.normal(size=(c, d)), rng.normal(size=c)
    y = rng.integers(0, c, n)
    q = np.abs(rng.normal(size=(15, d))) * 1.5
    return h, W, b, y, q


@pytest.mark.parametrize("d_sub", [3, 6])
def test_vim_matches_pytorch_ood(d_sub):
    from pytorch_ood.detector import ViM

    h, W, b, y, q = _fixture()
    ours = ViMDetector.fit(h, LinearHead(W, b), d=d_sub)
    ref = ViM(None, d=d_sub, w=torch.tensor(W), b=torch.tensor(b))
    ref.fit_features(torch.tensor(h, dtype=torch.float64), torch.tensor(y))
    assert ours.alpha == pytest.approx(ref.alpha, rel=1e-4)
    # pytorch-ood works in float32 and returns outlier scores (the negatives of ours)
    expected = -ref.predict_features(torch.tensor(q)).double().numpy()
    assert ours.score(q) == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_react_matches_pytorch_ood_and_clips():
    from pytorch_ood.detector import ReAct

    h, W, b, y, q = _fixture(seed=1)
    ours = ReActDetector.fit(h, LinearHead(W, b), percentile=90)
    Wt, bt = torch.tensor(W), torch.tensor(b)
    ref = ReAct(backbone=lambda x: x, head=lambda x: x @ Wt.T + bt, percentile=0.9)
    ref.fit_feature_maps(torch.tensor(h), torch.tensor(y))
    assert ours.threshold == pytest.approx(ref.threshold)
    assert ours.score(q) == pytest.approx(-ref.predict_feature_maps(torch.tensor(q)).numpy(), rel=1e-6)
    # activations below the threshold are untouched: plain energy there
    low = np.full((1, h.shape[1]), ours.threshold / 2)
    assert ours.score(low)[0] == pytest.approx(np.log(np.exp(low @ W.T + b).sum()))


@pytest.mark.parametrize("gamma,m", [(0.1, None), (0.5, 2), (1.0, 3)])
def test_gen_and_maxlogit_match_pytorch_ood(gamma, m):
    from pytorch_ood.detector import GEN, MaxLogit

    z = np.random.default_rng(2).normal(size=(9, 5)) * 4
    assert gen_score(z, gamma, m) == pytest.approx(-GEN.score(torch.tensor(z), gamma=gamma, M=m).numpy(), rel=1e-6)
    assert maxlogit_score(z) == pytest.approx(-MaxLogit.score(torch.tensor(z)).numpy())
    # naive: -(1/M) sum over the top-M probabilities of p^g (1-p)^g (p clamped to [1e-7, 1 - 1e-7])
    p = np.clip(np.exp(z) / np.exp(z).sum(1, keepdims=True), 1e-7, 1 - 1e-7)
    top = -np.sort(-p, 1)[:, : (m or 5)]
    assert gen_score(z, gamma, m) == pytest.approx(-(top**gamma * (1 - top) ** gamma).mean(1), rel=1e-5)


def test_knn_matches_pytorch_ood_on_normalised_features():
    from pytorch_ood.detector import KNN

    h, _, _, y, q = _fixture(seed=3)
    ours = KNNDetector.fit(h, k=5)
    ref = KNN(None, k=5).fit_features(torch.tensor(h), torch.tensor(y))
    assert ours.score(q) == pytest.approx(-ref.predict_features(torch.tensor(q)).numpy(), rel=1e-6)


def test_linear_head_from_small_cnn_reproduces_its_logits():
    from synthmix.models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", 3, input_size=16).eval()  # head: fc -> ReLU -> dropout -> fc
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        f = model.forward_features(x)
        z = model.forward_head(f)
    head = LinearHead.from_model(model)
    assert head.W.shape == (3, 128) and len(head.pre) == 2
    h = head.penultimate(f.numpy())
    assert h.min() >= 0 and head.logits(h) == pytest.approx(z.double().numpy(), rel=1e-5, abs=1e-5)
    tiny = create_model("tiny_cnn", 2, input_size=16)  # head: dropout -> fc (h = features)
    th = LinearHead.from_model(tiny)
    assert th.pre == [] and th.W.shape == (2, 16)
    odd = type("M", (), {"head": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh(), torch.nn.Linear(2, 2))})
    with pytest.raises(ValueError, match="unsupported head layer Tanh"):
        LinearHead.from_model(odd())


def test_fitted_detectors_registry_and_scores():
    rng = np.random.default_rng(4)
    f = np.abs(np.r_[rng.normal(0, 1, (40, 6)) + [3, 0, 0, 0, 0, 0], rng.normal(0, 1, (40, 6)) + [0, 3, 0, 0, 0, 0]])
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    W, b = np.array([[1.0, -1, 0, 0, 0, 0], [-1.0, 1, 0, 0, 0, 0]]), np.zeros(2)
    head = LinearHead(W, b)
    plain = FittedDetectors.fit(f, y, k=5)
    assert plain.names == ("msp", "energy", "maxlogit", "gen", "knn", "mahalanobis")
    full = FittedDetectors.fit(f, y, k=5, head=head)
    assert set(full.names) == set(ALL_DETECTORS) and set(DETECTORS) <= set(full.names)
    q = np.abs(rng.normal(0, 1, (10, 6)) + [0, 0, 0, 0, 6, 0])
    logits = head.logits(q)
    s = full.score(q, logits)
    assert set(s) == set(ALL_DETECTORS) and all(v.shape == (10,) for v in s.values())
    assert s["vim"] == pytest.approx(ViMDetector.fit(f, head).score(q))
    assert s["react"] == pytest.approx(ReActDetector.fit(f, head).score(q))
    # the default four are unchanged by the extension
    for name in DETECTORS:
        assert s[name] == pytest.approx(plain.score(q, logits)[name])
    assert set(full.score(q, logits, names=["knn", "vim"])) == {"knn", "vim"}
    with pytest.raises(ValueError, match="need FittedDetectors.fit"):
        plain.score(q, logits, names=["vim"])
    with pytest.raises(ValueError, match="unknown or unfitted"):
        plain.score(q, logits, names=["odin"])
    # far points: ViM flags what leaves the principal subspace
    s_in = full.score(f[:20], head.logits(f[:20]))
    assert ood_metrics(s_in["vim"], s["vim"])["auroc"] > 0.9


def test_vim_rejects_bad_dim():
    h, W, b, _, _ = _fixture()
    with pytest.raises(ValueError, match="d must be"):
        ViMDetector.fit(h, LinearHead(W, b), d=12)


# ------------------------------------------------------------------ metrics

def test_aupr_in_out_and_auroc_equal_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(5)
    i, o = rng.normal(1, 1, 40), rng.normal(0, 1, 25)
    m = ood_metrics(i, o)
    y = np.r_[np.ones(40), np.zeros(25)]
    s = np.r_[i, o]
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert m["aupr_in"] == pytest.approx(average_precision_score(y, s))
    assert m["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s))
    # FPR@95: fraction of OOD at or above the 5th-percentile ID threshold, from sklearn's ROC
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    assert m["fpr95"] == pytest.approx(fpr[np.searchsorted(tpr, 0.95, side="left")])


def test_group_metrics_average_per_group():
    per_set = {"mixed": {"auroc": 0.8, "fpr95": 0.5}, "lookalike": {"auroc": 0.6, "fpr95": 0.9},
               "textures": {"auroc": 0.99, "fpr95": 0.02, "aupr_in": 0.9}}
    g = group_metrics(per_set, {"near": ["mixed", "lookalike"], "far": ["textures"]})
    assert g["near"] == {"auroc": pytest.approx(0.7), "fpr95": pytest.approx(0.7), "n_sets": 2}
    assert g["far"]["aupr_in"] == 0.9 and g["far"]["n_sets"] == 1
    with pytest.raises(ValueError, match="without metrics.*'fruit_lookalikes'"):
        group_metrics(per_set, {"near": ["mixed", "fruit_lookalikes"]})
    with pytest.raises(ValueError, match="no OOD sets"):
        group_metrics(per_set, {"near": []})


def test_full_spectrum_pools_id_sets():
    test, shifted, ood = np.array([3.0, 4.0]), np.array([1.0]), np.array([2.0])
    assert full_spectrum_metrics([test, shifted], ood) == ood_metrics(np.r_[test, shifted], ood)
    assert full_spectrum_metrics([test, shifted], ood)["auroc"] == pytest.approx(2 / 3)


def test_vim_with_fewer_images_than_dimensions_keeps_half_the_span_of_the_train_activations():
    """N < D': the covariance has rank N and eigenvectors past it are an arbitrary basis of the null
    space (and d >= N leaves no train residual: alpha would be infinite); d is capped at rank // 2,
    and the residual equals the one from an explicit eigendecomposition of the covariance."""
    rng = np.random.default_rng(3)
    n, dim, c = 20, 64, 3
    h = np.abs(rng.normal(size=(n, dim)))
    W, b = rng.normal(size=(c, dim)), rng.normal(size=c)
    det = ViMDetector.fit(h, LinearHead(W, b))  # default d = 32 >= rank 20
    assert det.d_requested == 32 and det.d == 10 and det.principal_basis.shape == (dim, 10)
    assert np.isfinite(det.alpha) and 0 < det.alpha < 1e3
    x = h - det.u
    _, vec = np.linalg.eigh(x.T @ x / n)  # ascending: the leading 10 are the last columns
    top = vec[:, -10:]
    q = np.abs(rng.normal(size=(7, dim)))
    resid = np.linalg.norm((q - det.u) - (q - det.u) @ top @ top.T, axis=1)
    logits = q @ W.T + b
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    assert det.score(q) == pytest.approx(lse - det.alpha * resid, rel=1e-6, abs=1e-6)
    small = ViMDetector.fit(h, LinearHead(W, b), d=5)  # below the rank: as asked
    assert small.d == small.d_requested == 5
