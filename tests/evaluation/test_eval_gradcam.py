"""Grad-CAM maps: right shape, in [0, 1], and they follow the input."""

from __future__ import annotations

import numpy as np
import torch

from synthmix.evaluation.gradcam import gradcam_figure, gradcam_maps, pick_examples
from synthmix.models import create_model


def _disc(cx: int, cy: int, size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.full((3, size, size), 0.1)
    mask = (xx - cx) ** 2 + (yy - cy) ** 2 < 36
    img[0][mask], img[1][mask] = 0.9, 0.2
    return img


def _model(name: str = "tiny_cnn"):
    torch.manual_seed(0)
    return create_model(name, 3, input_size=32).eval()


def test_map_shape_range_and_response_to_input():
    model = _model()
    x = torch.stack([_disc(8, 8), _disc(24, 24)])
    maps = gradcam_maps(model, x, targets=[0, 0])
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert maps[0].std() > 0  # not a constant map
    # the same target, different inputs: the map changes
    assert not np.allclose(maps[0], maps[1], atol=1e-3)
    again = gradcam_maps(model, x[:1], targets=[0])  # and is a function of the input alone
    assert np.allclose(again[0], maps[0], atol=1e-5)


def test_small_cnn_gradcam_uses_post_relu_feature_map():
    model = _model("small_cnn")
    layer = model.gradcam_layer()
    assert isinstance(layer, torch.nn.ReLU) and not layer.inplace
    maps = gradcam_maps(model, torch.stack([_disc(10, 16), _disc(22, 16)]))
    assert maps.shape == (2, 32, 32)
    assert not np.allclose(maps[0], maps[1], atol=1e-3)


def test_pick_examples_correct_and_wrong_per_class():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 1, 0])
    picks = pick_examples(y, pred, 3, per_class=1, seed=0)
    assert [(y[i], ok) for i, ok in picks] == [(0, True), (0, False), (1, True), (2, False)]
    assert all((pred[i] == y[i]) == ok for i, ok in picks)


def test_gradcam_figure_writes_png(tmp_path):
    model = _model()
    x = (torch.stack([_disc(8, 8), _disc(20, 20), _disc(12, 24)]) * 255).to(torch.uint8)
    panels = gradcam_figure(model, x, np.array([0, 1, 2]), np.array([0, 2, 2]), ["a", "b", "c"],
                            tmp_path / "g.png", per_class=1)
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [(p["true"], p["pred"], p["correct"]) for p in panels] == [("a", "a", True), ("b", "c", False),
                                                                       ("c", "c", True)]
