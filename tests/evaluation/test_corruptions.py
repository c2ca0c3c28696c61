"""ImageNet-C-style corruptions and mCE: monotone severities, determinism, references
(scipy / scikit-image / PIL / numpy), and mCE values computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from synthmix.evaluation.corruptions import (
    CORRUPTIONS,
    box_matrix,
    brightness,
    contrast,
    corrupt,
    disk_kernel,
    gaussian_blur,
    motion_kernel,
)
from synthmix.evaluation.robustness import (
    ce_by_corruption,
    corruption_errors,
    evaluate_corruptions,
    mce,
    mce_report,
    relative_mce,
    summarize_corruptions,
)

FRUITS = Path(__file__).resolve().parents[2] / "src" / "synthmix" / "assets" / "fruits" / "test"


def _photos(size=32, n=4) -> torch.Tensor:
    from PIL import Image

    paths = sorted(FRUITS.glob("*/*.jpg"))[::7][:n]
    imgs = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def photos():
    return _photos()


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_shape_dtype_and_severity_monotone(photos, name):
    change = []
    for s in range(1, 6):
        out = corrupt(photos, name, s, seed=0)
        assert out.dtype == torch.uint8 and out.shape == photos.shape
        change.append((out.float() - photos.float()).abs().mean().item())
    assert change[0] > 0, f"{name}: severity 1 changes nothing"
    for a, b in zip(change, change[1:], strict=False):
        assert b >= a - 1e-6, f"{name}: pixel change not monotone in severity: {change}"
    assert change[-1] > change[0]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_deterministic_with_a_seed_and_non_square(name):
    x = _photos(size=40)[:, :, :, :32].contiguous()  # 40 x 32
    a, b = corrupt(x, name, 3, seed=5), corrupt(x, name, 3, seed=5)
    assert torch.equal(a, b) and a.shape == x.shape
    if name in ("gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "fog"):
        assert not torch.equal(a, corrupt(x, name, 3, seed=6))


def test_gaussian_noise_and_impulse_statistics():
    x = torch.full((8, 3, 32, 32), 128, dtype=torch.uint8)
    d = (corrupt(x, "gaussian_noise", 5, 0).float() - 128) / 255
    assert d.std().item() == pytest.approx(0.10, rel=0.05)
    out = corrupt(x, "impulse_noise", 5, 0)
    frac = ((out == 0) | (out == 255)).float().mean().item()
    assert frac == pytest.approx(0.07, rel=0.15)
    shot = corrupt(x, "shot_noise", 5, 0).float() / 255  # Poisson(x*50)/50: mean x, var x/50
    assert shot.mean().item() == pytest.approx(128 / 255, abs=0.01)
    assert shot.var().item() == pytest.approx((128 / 255) / 50, rel=0.1)


def test_gaussian_blur_matches_scipy(photos):
    from scipy.ndimage import gaussian_filter

    sigma = 1.0  # severity 5 at 32 px
    ref = np.stack([np.stack([gaussian_filter(photos[i, c].double().numpy() / 255, sigma, mode="mirror",
                                              truncate=3.0) for c in range(3)]) for i in range(len(photos))])
    ref = np.clip(np.round(ref * 255), 0, 255)
    ours = gaussian_blur(photos, 5).numpy().astype(float)
    assert np.abs(ours - ref).max() <= 1


def test_brightness_matches_skimage_hsv(photos):
    from skimage.color import hsv2rgb, rgb2hsv

    x = photos[0].permute(1, 2, 0).numpy() / 255
    hsv = rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)  # severity 5 (CIFAR-10-C)
    ref = np.clip(np.round(hsv2rgb(hsv) * 255), 0, 255)
    ours = brightness(photos[:1], 5)[0].permute(1, 2, 0).numpy().astype(float)
    assert np.abs(ours - ref).max() <= 1


def test_contrast_by_hand(photos):
    x = photos.double().numpy() / 255
    m = x.mean(axis=(2, 3), keepdims=True)
    ref = np.clip(np.round(((x - m) * 0.15 + m) * 255), 0, 255)
    assert np.abs(contrast(photos, 5).numpy() - ref).max() <= 1


def test_box_matrix_is_area_resampling():
    img = _photos(size=32)[0].float() / 255
    half = box_matrix(32, 16)
    assert torch.allclose((half.float() @ img @ half.float().T), torch.nn.functional.avg_pool2d(img, 2), atol=1e-6)
    up = box_matrix(16, 32).float()  # each output pixel lies inside one input pixel: nearest
    small = torch.rand(3, 16, 16)
    assert torch.allclose(up @ small @ up.T, small.repeat_interleave(2, 1).repeat_interleave(2, 2))
    m = box_matrix(32, 24)  # fractional: each output averages 4/3 input pixels
    assert torch.allclose(m.sum(1), torch.ones(24, dtype=m.dtype))
    assert m[0, :2].tolist() == pytest.approx([0.75, 0.25])


def test_kernels_are_normalised_and_shaped():
    for r, a in [(0.3, 0.4), (1.5, 0.1), (10.5, 0.7)]:
        k = disk_kernel(r, a)
        assert k.sum().item() == pytest.approx(1.0) and torch.allclose(k, k.flip(0)) and torch.allclose(k, k.T)
    k = motion_kernel(6, 1.0, 0.0)  # horizontal, one-sided: mass on one row, one side of the centre
    c = k.shape[0] // 2
    assert k.sum().item() == pytest.approx(1.0)
    assert k[c].sum().item() == pytest.approx(1.0)
    assert k[c, :c].sum().item() == 0 or k[c, c + 1:].sum().item() == 0


def test_mce_of_reference_is_one_and_hand_example():
    errors = {
        "real": {"a": {1: 0.1, 2: 0.3}, "b": {1: 0.2, 2: 0.2}},
        "real+id": {"a": {1: 0.2, 2: 0.2}, "b": {1: 0.1, 2: 0.1}},
    }
    # CE_a = 0.4 / 0.4 = 1, CE_b = 0.2 / 0.4 = 0.5 -> mCE 0.75
    assert mce(errors, "real") == {"real": 1.0, "real+id": pytest.approx(0.75)}
    assert ce_by_corruption(errors, "real")["real+id"] == {"a": pytest.approx(1.0), "b": pytest.approx(0.5)}
    # relative: clean errors 0.05 (real) and 0.0 (real+id):
    # a: (0.2 + 0.2 - 0) / (0.05 + 0.25) = 4/3; b: 0.2 / (0.15 + 0.15) = 2/3 -> 1.0
    rel = relative_mce(errors, {"real": 0.05, "real+id": 0.0}, "real")
    assert rel["real"] == pytest.approx(1.0) and rel["real+id"] == pytest.approx(1.0)
    # tables read back from JSON (string severities) give the same numbers
    import json

    assert mce(json.loads(json.dumps(errors)), "real") == mce(errors, "real")


def test_mce_skips_a_corruption_without_reference_errors():
    errors = {"real": {"a": {1: 0.0}, "b": {1: 0.5}}, "x": {"a": {1: 0.2}, "b": {1: 0.25}}}
    rep = mce_report(errors, "real")
    assert rep["skipped"] == ["a"] and math.isnan(rep["ce"]["x"]["a"])
    assert rep["mce"]["x"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="severities"):
        mce({"real": {"a": {1: 0.1, 2: 0.2}}, "x": {"a": {1: 0.1}}}, "real")
    with pytest.raises(KeyError, match="reference setup 'nope'"):
        mce(errors, "nope")


class _RedModel(torch.nn.Module):
    """Class 1 when the mean red value (ImageNet-normalised) is above 0, else class 0."""

    def forward(self, x):
        r = x[:, 0].mean(dim=(1, 2))
        return torch.stack([-r, r], dim=1)


def test_evaluate_corruptions_against_a_manual_loop(photos):
    from synthmix.data.augment import normalize, to_float

    model = _RedModel()
    y = torch.tensor([0, 1, 1, 0])
    acc = evaluate_corruptions(model, photos, y, corruptions=["contrast", "fog"], severities=[1, 5], seed=3)
    assert set(acc) == {"contrast", "fog"} and set(acc["fog"]) == {1, 5}
    for c in acc:
        for s in (1, 5):
            pred = model(normalize(to_float(corrupt(photos, c, s, seed=3)))).argmax(1)
            assert acc[c][s] == pytest.approx((pred == y).float().mean().item())
    summary = summarize_corruptions(acc, clean_accuracy=1.0)
    assert summary["accuracy_by_category"].keys() == {"digital", "weather"}
    assert summary["corruption_accuracy"] == pytest.approx(np.mean([v for s in acc.values() for v in s.values()]))
    assert corruption_errors(acc)["fog"][5] == pytest.approx(1 - acc["fog"][5])
    with pytest.raises(ValueError, match="unknown"):
        evaluate_corruptions(model, photos, y, corruptions=["frost"])


def test_a_study_makes_the_corrupted_test_set_once_and_reads_it_back(tmp_path):
    """The evaluate stage's cache: the same images as corrupt() per (name, severity), made once per run."""
    import torch

    from synthmix.evaluation.corruptions import corrupt
    from synthmix.experiments.stages.evaluate import _corrupted_test_set

    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    combos = [("gaussian_noise", 1), ("contrast", 5)]
    a = _corrupted_test_set(x, combos, tmp_path)
    files = list(tmp_path.glob("corrupted-test-*.pt"))
    assert len(files) == 1 and a.shape == (8, 3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a[:4], corrupt(x, "gaussian_noise", 1, seed=0)) and torch.equal(a[4:], corrupt(x, "contrast", 5, seed=0))
    mtime = files[0].stat().st_mtime_ns
    assert torch.equal(_corrupted_test_set(x, combos, tmp_path), a) and files[0].stat().st_mtime_ns == mtime
    _corrupted_test_set(x[:2], combos, tmp_path)  # other images: another file, never the first one's
    assert len(list(tmp_path.glob("corrupted-test-*.pt"))) == 2
