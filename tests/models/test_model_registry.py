"""Model registry: shapes, features/head split, Grad-CAM layer, local weights for ResNet-18."""

from __future__ import annotations

import pytest
import torch

from synthmix.core.errors import ConfigError
from synthmix.models import available_models, create_model


@pytest.mark.parametrize("name,size", [("tiny_cnn", 32), ("small_cnn", 32), ("small_cnn", 64),
                                       ("resnet18", 32)])
def test_forward_features_head_and_cam_layer(name, size):
    torch.manual_seed(0)
    m = create_model(name, 3, input_size=size).eval()
    x = torch.randn(2, 3, size, size)
    f = m.forward_features(x)
    assert f.shape == (2, m.feature_dim)
    logits = m.forward_head(f)
    assert logits.shape == (2, 3)
    assert torch.allclose(m(x), logits)
    seen = {}
    h = m.gradcam_layer().register_forward_hook(lambda mod, i, o: seen.setdefault("o", o))
    m(x)
    h.remove()
    assert seen["o"].ndim == 4 and seen["o"].shape[0] == 2  # a spatial map


def test_small_cnn_is_the_fruit_study_network():
    m = create_model("small_cnn", 3, input_size=64)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    linears = [mod for mod in m.head if isinstance(mod, torch.nn.Linear)]
    assert linears[0].in_features == 64 * 16 * 16 and linears[-1].out_features == 3
    assert any(isinstance(mod, torch.nn.Dropout) for mod in m.head)
    with pytest.raises(ConfigError, match="multiple of 4"):
        create_model("small_cnn", 3, input_size=30)


def test_resnet18_loads_local_weights_and_never_downloads(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    ref = resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(ref.state_dict(), path)
    m = create_model("resnet18", 3, input_size=224, weights=str(path))
    assert torch.equal(m.backbone.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    with pytest.raises(ConfigError, match="file not found"):
        create_model("resnet18", 3, weights=str(tmp_path / "missing.pt"))


def test_unknown_model_lists_available():
    assert {"small_cnn", "tiny_cnn", "resnet18"} <= set(available_models())
    with pytest.raises(ConfigError, match="available: .*small_cnn"):
        create_model("vgg99", 3)
