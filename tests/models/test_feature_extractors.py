"""CLIP / DINOv2 image towers from a local folder (tiny random configs saved by the test)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from synthmix.core.errors import ConfigError  # noqa: E402
from synthmix.models import create_model, model_defaults  # noqa: E402


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=16)
    d = tmp_path_factory.mktemp("clip")
    CLIPVisionModel(cfg).save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 32, "width": 32},
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    return d


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(1)
    cfg = Dinov2Config(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                       image_size=32, patch_size=8)
    d = tmp_path_factory.mktemp("dino")
    Dinov2Model(cfg).save_pretrained(d)
    return d


def test_clip_tower_matches_transformers_and_is_frozen(clip_dir):
    from transformers import CLIPVisionModel

    m = create_model("clip_vision", 3, weights=str(clip_dir))
    ref = CLIPVisionModel.from_pretrained(str(clip_dir), local_files_only=True).eval()
    x = torch.randn(2, 3, 32, 32)
    m.train()  # the frozen tower stays in eval mode while the head trains
    assert not m.backbone.net.training
    with torch.no_grad():
        assert torch.allclose(m.forward_features(x), ref(pixel_values=x).pooler_output, atol=1e-6)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)
    loss = m(x).sum()
    loss.backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    # other input sizes interpolate the position embeddings
    assert m(torch.randn(1, 3, 48, 48)).shape == (1, 3)


def test_dinov2_tower_pooling(dino_dir):
    from transformers import Dinov2Model

    ref = Dinov2Model.from_pretrained(str(dino_dir), local_files_only=True).eval()
    x = torch.randn(2, 3, 32, 32)
    m = create_model("dinov2", 4, weights=str(dino_dir), pooling="cls+mean").eval()
    with torch.no_grad():
        out = ref(pixel_values=x)
        want = torch.cat([out.pooler_output, out.last_hidden_state[:, 1:].mean(1)], 1)
        assert m.feature_dim == 64
        assert torch.allclose(m.forward_features(x), want, atol=1e-6)
    assert m(x).shape == (2, 4)


def test_defaults_read_the_preprocessor_config(clip_dir):
    d = model_defaults("clip_vision", weights=str(clip_dir))
    assert d["input_size"] == 32 and d["normalization"] == "clip"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="needs a local folder"):
        create_model("dinov2", 3)
    with pytest.raises(ConfigError, match=r"dino-small is not a model folder with config.json"):
        create_model("dinov2", 3, weights=str(tmp_path / "dino-small"))
