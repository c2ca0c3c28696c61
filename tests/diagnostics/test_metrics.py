"""Diagnostic metrics against naive loops and library references (torchmetrics, scipy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr

from synthmix.diagnostics.diversity import diversity, mean_pairwise_distance
from synthmix.diagnostics.fid import fid, kid
from synthmix.diagnostics.labels import label_agreement, per_class_agreement
from synthmix.diagnostics.manifold import knn_radii, prdc
from synthmix.diagnostics.memorisation import low_res, memorisation_summary, nearest_cosine, nearest_pixels
from synthmix.diagnostics.relate import rankdata, relate, spearman


def naive_prdc(real, fake, k):
    """Straight from the papers' definitions, with scipy distances and loops."""
    drr, dff, dfr = cdist(real, real), cdist(fake, fake), cdist(fake, real)
    r_real = np.sort(drr, 1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(dff, 1)[:, k]
    precision = np.mean([any(dfr[j, i] <= r_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(dfr[j, i] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(sum(dfr[j, i] <= r_real[i] for i in range(len(real))) for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([dfr[:, i].min() <= r_real[i] for i in range(len(real))])
    return precision, recall, density, coverage


def test_prdc_matches_naive_definition():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 8))
    fake = rng.normal(0.4, 1.2, size=(45, 8))
    got = prdc(real, fake, k=3, block=16, dtype="float64")
    p, r, d, c = naive_prdc(real, fake, 3)
    assert got["precision"] == pytest.approx(p)
    assert got["recall"] == pytest.approx(r)
    assert got["density"] == pytest.approx(d)
    assert got["coverage"] == pytest.approx(c)
    assert 0 < p < 1 and 0 < r < 1  # the fixture exercises both branches


def test_radii_match_sorted_distances():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    np.testing.assert_allclose(knn_radii(x, 4, block=7), np.sort(cdist(x, x), 1)[:, 4], rtol=1e-4, atol=1e-4)


def test_identical_sets_give_full_precision_recall_and_zero_fid():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    m = prdc(x, x.copy(), k=5)
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["coverage"] == 1.0
    assert fid(x, x.copy()) == pytest.approx(0.0, abs=1e-6)


def test_shifted_set_loses_recall_and_precision():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    shifted = rng.normal(size=(300, 8)) + np.r_[3.0, np.zeros(7)]
    a, b = prdc(real, same), prdc(real, shifted)
    assert a["recall"] > 0.8 and a["precision"] > 0.8
    assert b["recall"] < a["recall"] - 0.3 and b["precision"] < a["precision"] - 0.3
    assert b["coverage"] < a["coverage"] - 0.3
    assert fid(real, shifted) > fid(real, same) + 5


def test_collapsed_set_keeps_precision_but_loses_recall():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 4))
    modes = real[:3]  # a generator that repeats 3 real images with tiny noise
    fake = np.repeat(modes, 100, 0) + rng.normal(scale=1e-3, size=(300, 4))
    m = prdc(real, fake, k=5)
    assert m["precision"] == 1.0
    assert m["recall"] < 0.1 and m["coverage"] < 0.1
    # 3 modes: only the 2/3 of pairs across modes are far apart; 1 mode: nothing is
    assert diversity(real, fake)["diversity_ratio"] < 0.75
    one = real[:1] + rng.normal(scale=1e-3, size=(50, 4))
    assert diversity(real, one)["diversity_ratio"] < 0.01


def test_fid_matches_torchmetrics_and_scipy_sqrtm():
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(5)
    a = rng.normal(size=(80, 6))
    b = rng.normal(0.3, 1.5, size=(70, 6)) @ rng.normal(size=(6, 6))
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref_tm = float(_compute_fid(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2))))
    ref_sp = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real))
    assert fid(a, b) == pytest.approx(ref_tm, rel=1e-6)
    assert fid(a, b) == pytest.approx(ref_sp, rel=1e-6)


def test_fid_of_a_translated_set_is_the_squared_shift():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(100, 5))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0])
    assert fid(a, a + shift) == pytest.approx(float((shift ** 2).sum()), rel=1e-6)


def test_kid_matches_torchmetrics_poly_mmd_on_full_sets():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(7)
    a = rng.normal(size=(50, 10))
    b = rng.normal(0.5, 1.0, size=(50, 10))
    ref = float(poly_mmd(torch.from_numpy(a), torch.from_numpy(b)))
    got = kid(a, b, subsets=3, subset_size=50, dtype="float64")
    assert got["kid"] == pytest.approx(ref, rel=1e-6)
    assert kid(a, b, subsets=3, subset_size=50)["kid"] == pytest.approx(ref, rel=1e-4)  # float32 dots  # every subset is the whole (permuted) set
    assert got["kid_std"] == pytest.approx(0.0, abs=1e-9)
    same = kid(a, rng.normal(size=(50, 10)), subsets=20, subset_size=40)
    assert abs(same["kid"]) < got["kid"] / 5


def test_kid_subset_size_is_clamped_and_seeded():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    k1, k2 = kid(a, b, subsets=5, subset_size=100, seed=1), kid(a, b, subsets=5, subset_size=100, seed=1)
    assert k1 == k2 and k1["subset_size"] == 20
    with pytest.raises(ValueError, match="at least 2"):
        kid(a, b[:1])


def test_mean_pairwise_distance_matches_naive():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(37, 6))
    d = cdist(x, x)
    assert mean_pairwise_distance(x, block=8, dtype="float64") == pytest.approx(d.sum() / (37 * 36), rel=1e-9)
    assert mean_pairwise_distance(x, block=8) == pytest.approx(d.sum() / (37 * 36), rel=1e-5)
    assert np.isnan(mean_pairwise_distance(x[:1]))


def test_copies_of_training_images_are_flagged_as_memorised():
    rng = np.random.default_rng(10)
    train_px = rng.integers(0, 256, size=(40, 3, 32, 32), dtype=np.uint8)
    train_f = rng.normal(size=(40, 12)).astype(np.float32)
    copies = [3, 17, 29]
    novel_px = rng.integers(0, 256, size=(5, 3, 32, 32), dtype=np.uint8)
    novel_f = rng.normal(size=(5, 12)).astype(np.float32)
    syn_px = np.concatenate([train_px[copies], novel_px])
    syn_f = np.concatenate([train_f[copies], novel_f])
    i_cos, cos = nearest_cosine(syn_f, train_f, block=3)
    i_px, mad = nearest_pixels(low_res(syn_px, 8), low_res(train_px, 8), block=2)
    assert list(i_cos[:3]) == copies and list(i_px[:3]) == copies
    np.testing.assert_allclose(cos[:3], 1.0, atol=1e-5)
    np.testing.assert_allclose(mad[:3], 0.0, atol=1e-6)
    assert (mad[3:] > 0.04).all()  # noise averaged over 4x4 blocks: ~0.07
    s = memorisation_summary(cos, mad, cosine_threshold=0.99, pixel_threshold=0.02)
    assert s["share_flagged"] == pytest.approx(3 / 8)
    assert s["share_pixel"] == pytest.approx(3 / 8)
    # naive cosine reference
    fn = syn_f / np.linalg.norm(syn_f, axis=1, keepdims=True)
    tn = train_f / np.linalg.norm(train_f, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, (fn @ tn.T).max(1), atol=1e-5)
    np.testing.assert_array_equal(i_cos, (fn @ tn.T).argmax(1))


def test_low_res_averages_blocks():
    x = np.zeros((1, 3, 4, 4), np.uint8)
    x[0, :, :2, :2] = 255
    out = low_res(x, 2).reshape(3, 2, 2)
    np.testing.assert_allclose(out[:, 0, 0], 1.0)
    np.testing.assert_allclose(out[:, 1, 1], 0.0)


def test_label_agreement_hand_computed():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]]))
    labels = np.array([0, 1, 1, 2])
    m = label_agreement(logits, labels)
    assert m["agreement"] == pytest.approx(0.75)
    assert m["label_confidence"] == pytest.approx((0.7 + 0.8 + 0.4 + 0.6) / 4)
    per = per_class_agreement(logits, labels, ["a", "b", "c", "d"])
    assert per["b"]["agreement"] == pytest.approx(0.5) and "d" not in per


def test_spearman_matches_scipy_with_ties():
    x = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 4.0])
    y = np.array([0.1, 0.3, 0.2, 0.2, 0.9, 0.5])
    np.testing.assert_allclose(rankdata(x), [1, 2.5, 2.5, 4, 6, 5])
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)


def test_relate_marks_few_setups_descriptive():
    diags = {"a": {"fid": 10.0, "recall": 0.2}, "b": {"fid": 5.0, "recall": 0.5},
             "c": {"fid": 1.0, "recall": 0.9, "cas": 0.8}}
    effects = {"a": -0.02, "b": 0.01, "c": 0.03, "d": 0.5}
    rows = {r["diagnostic"]: r for r in relate(diags, effects)}
    assert rows["fid"]["spearman"] == pytest.approx(-1.0) and rows["recall"]["spearman"] == pytest.approx(1.0)
    assert rows["fid"]["n"] == 3 and rows["fid"]["descriptive"] and rows["fid"]["p_value"] is None
    assert rows["cas"]["n"] == 1 and np.isnan(rows["cas"]["spearman"])
    many = {f"s{i}": {"x": float(i)} for i in range(6)}
    r = relate(many, {f"s{i}": float(i % 3) for i in range(6)})[0]
    assert not r["descriptive"] and r["n"] == 6
    assert r["p_value"] == pytest.approx(spearmanr(range(6), [i % 3 for i in range(6)]).pvalue)


def test_cas_reads_a_synthetic_only_runs_real_test_accuracy(tmp_path):
    from synthmix.core.errors import DataError
    from synthmix.diagnostics.labels import cas_from_run

    d = tmp_path / "run" / "eval" / "test"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({
        "accuracy": 0.8, "n": 10, "n_labelled": 10,
        "per_class": {"apple": {"recall": 1.0, "precision": 0.7}, "banana": {"recall": 0.6},
                      "macro avg": 0.5}}))
    c = cas_from_run(tmp_path / "run")
    assert c["cas"] == 0.8 and c["per_class"] == {"apple": 1.0, "banana": 0.6} and c["n"] == 10
    with pytest.raises(DataError, match="CAS needs the run evaluated"):
        cas_from_run(tmp_path / "run", split="val")


def test_fid_with_rank_deficient_covariances_matches_torchmetrics():
    """Per class there are often fewer images than feature dimensions (singular covariances)."""
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(20, 64)), rng.normal(0.2, 1.3, size=(25, 64))
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = float(_compute_fid(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2))))
    assert fid(a, b) == pytest.approx(ref, rel=1e-5)


def test_fid_in_sample_space_equals_the_covariance_formula_when_n_is_below_d():
    """Fewer images than dimensions: the [N, M] singular-value form gives the [D, D] formula's value."""
    import numpy as np

    from synthmix.diagnostics.fid import fid, frechet_distance, mean_cov

    rng = np.random.default_rng(3)
    for n, m, d in ((12, 9, 40), (60, 80, 200)):
        a, b = rng.normal(size=(n, d)), rng.normal(0.2, 1.3, size=(m, d))
        want = frechet_distance(*mean_cov(a), *mean_cov(b))
        assert fid(a, b) == pytest.approx(want, rel=1e-6)
        assert fid(a, a) == pytest.approx(0.0, abs=1e-6 * d)
