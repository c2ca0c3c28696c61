"""augment_batch: per-sample, deterministic given the generator, each op doing what it says."""

from __future__ import annotations

import pytest
import torch

from synthmix.core.config import parse_config
from synthmix.core.errors import ConfigError
from synthmix.data.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, augment_batch, normalize


def _batch(n=6, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_identity_when_everything_off():
    x = _batch()
    y = augment_batch(x, AugmentConfig(hflip=0.0), _g())
    assert y.dtype == torch.float32 and torch.equal(y, x.float() / 255)


def test_flip_probability_one_flips_every_sample_exactly():
    x = _batch()
    y = augment_batch(x, AugmentConfig(hflip=1.0), _g())
    assert torch.equal(y, x.flip(-1).float() / 255)
    y = augment_batch(x, AugmentConfig(hflip=0.0, vflip=1.0), _g())
    assert torch.equal(y, x.flip(-2).float() / 255)


def test_per_sample_and_deterministic():
    x = _batch(n=64).expand(64, 3, 16, 16).contiguous()
    x[:] = x[0]  # the same image 64 times: per-sample randomness must still differ
    cfg = AugmentConfig(hflip=0.5, crop_scale=(0.5, 1.0), rotation=15, brightness=0.3, noise=0.02)
    a = augment_batch(x, cfg, _g(1))
    b = augment_batch(x, cfg, _g(1))
    assert torch.equal(a, b)
    assert len({round(float(v), 4) for v in a.mean(dim=(1, 2, 3))}) > 50
    g = _g(1)
    v1, v2 = augment_batch(x, cfg, g), augment_batch(x, cfg, g)  # SimCLR: two views from one stream
    assert torch.equal(v1, a) and not torch.equal(v1, v2)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_geometry_with_no_change_is_identity_up_to_float_error():
    x = _batch()
    # rotation so small it is zero in float32; forces the grid_sample path
    y = augment_batch(x, AugmentConfig(hflip=1.0, rotation=1e-9), _g())
    assert torch.allclose(y, x.flip(-1).float() / 255, atol=1e-5)


def test_margins_show_the_fill_colour_and_keep_content():
    x = torch.full((8, 3, 32, 32), 255, dtype=torch.uint8)
    x[:, 1:] = 0  # pure red images
    cfg = AugmentConfig(hflip=0.0, margin=0.5, fill=(0, 0, 255))
    y = augment_batch(x, cfg, _g(2))
    blue = (y[:, 2] > 0.99) & (y[:, 0] < 0.01)
    red = (y[:, 0] > 0.99) & (y[:, 2] < 0.01)
    frac_blue = blue.float().mean(dim=(1, 2))
    assert (frac_blue > 0).all() and (frac_blue < 0.8).all()
    assert (red.float().mean(dim=(1, 2)) > 0.2).all()


def test_crop_zooms_in():
    # left half black, right half white: a random crop of 25 % area changes the white share
    x = torch.zeros(32, 3, 32, 32, dtype=torch.uint8)
    x[..., 16:] = 255
    y = augment_batch(x, AugmentConfig(hflip=0.0, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0)), _g(3))
    share = y.mean(dim=(1, 2, 3))
    assert share.std() > 0.1 and ((share < 0.1) | (share > 0.9)).any()


def test_grayscale_and_colour_ops():
    x = _batch(n=8)
    y = augment_batch(x, AugmentConfig(hflip=0.0, grayscale=1.0), _g())
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])
    y = augment_batch(x, AugmentConfig(hflip=0.0, brightness=0.5), _g())
    ratio = (y.mean(dim=(1, 2, 3)) / (x.float() / 255).mean(dim=(1, 2, 3)))
    assert ratio.min() < 0.98 and ratio.max() > 1.02
    # hue rotation in YIQ keeps luma (before clamping: use mid-range colours)
    mid = torch.full((4, 3, 4, 4), 128, dtype=torch.uint8)
    mid[:, 0] = 160
    y = augment_batch(mid, AugmentConfig(hflip=0.0, hue=0.5), _g())
    luma = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    assert torch.allclose(luma(y), luma(mid.float() / 255), atol=2e-3)
    assert not torch.allclose(y, mid.float() / 255, atol=1e-2)


def test_noise_is_added():
    x = torch.full((4, 3, 16, 16), 128, dtype=torch.uint8)
    y = augment_batch(x, AugmentConfig(hflip=0.0, noise=0.1), _g())
    assert abs(float((y - 128 / 255).std()) - 0.1) < 0.01


def test_float_input_and_bad_shape():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(augment_batch(x, AugmentConfig(hflip=0.0), _g()), x)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        augment_batch(torch.rand(3, 8, 8), AugmentConfig(), _g())


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="crop_scale"):
        parse_config(AugmentConfig, {"crop_scale": [0.9, 0.5]})
    with pytest.raises(ConfigError, match="hflp"):
        parse_config(AugmentConfig, {"hflp": 0.5})


def test_normalize():
    x = torch.rand(2, 3, 4, 4)
    y = normalize(x)
    m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(y, (x - m) / s)
    assert torch.equal(normalize(x, "none"), x)


def test_separable_fast_path_equals_grid_sample():
    from synthmix.data import augment as A

    x = torch.rand(16, 3, 20, 12)
    cfg = AugmentConfig(hflip=0.5, vflip=0.5, crop_scale=(0.3, 1.0), margin=0.4, translate=0.1,
                        fill=(10, 200, 30))
    u = torch.rand(16, A._DRAWS, generator=_g(5))
    hf = torch.where(u[:, 0] < 0.5, -1.0, 1.0)
    vf = torch.where(u[:, 1] < 0.5, -1.0, 1.0)
    fast = A._geometry(x, cfg, u, hf, vf)
    ref = A._geometry(x, cfg, u, hf, vf, force_grid=True)
    assert torch.allclose(fast, ref, atol=1e-4)


def test_torchvision_equivalent_pipeline_runs():
    from synthmix.data.augment import torchvision_transform

    cfg = AugmentConfig(hflip=1.0, crop_scale=(0.5, 1.0), margin=0.3, rotation=10, brightness=0.2,
                        grayscale=1.0, noise=0.01)
    tf = torchvision_transform(cfg, 24)
    torch.manual_seed(0)
    y = tf(torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8))
    assert y.shape == (3, 24, 24) and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.allclose(y[0], y[1], atol=0.05)  # grey-scale with p=1 (plus small noise)
    plain = torchvision_transform(AugmentConfig(hflip=1.0), 8)(torch.arange(64, dtype=torch.uint8)
                                                              .view(1, 8, 8).expand(3, 8, 8))
    assert torch.allclose(plain[0, 0], torch.arange(8).flip(0).float() / 255)
