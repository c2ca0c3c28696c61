"""timm backbones through the registry: random-weight tiny models, local weights round trip,
clear errors for missing / mismatched weights, pretrained defaults, Grad-CAM layer."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("timm")

from synthmix.core.errors import ConfigError  # noqa: E402
from synthmix.models import create_model, model_defaults  # noqa: E402
from synthmix.models.classifier import Classifier  # noqa: E402


@pytest.mark.parametrize("name,size", [("timm:test_resnet", 32), ("timm:test_convnext", 32),
                                       ("timm:test_efficientnet", 32), ("timm:test_vit", 32)])
def test_timm_classifier_contract(name, size):
    torch.manual_seed(0)
    m = create_model(name, 3, input_size=size)
    assert isinstance(m, Classifier)
    x = torch.randn(2, 3, size, size)
    f = m.forward_features(x)
    assert f.shape == (2, m.feature_dim)
    assert m.forward_head(f).shape == (2, 3)
    assert torch.allclose(m(x), m.forward_head(f))
    # Grad-CAM target: an [N, C, h, w] map on the gradient path of the logits
    seen = {}
    h = m.gradcam_layer().register_forward_hook(lambda mod, i, o: seen.setdefault("o", o))
    m(x).sum().backward()
    h.remove()
    assert seen["o"].ndim == 4 and seen["o"].shape[0] == 2


def test_vit_input_size_sets_position_embeddings():
    m = create_model("timm:test_vit", 3, input_size=48)
    assert m(torch.randn(1, 3, 48, 48)).shape == (1, 3)
    assert tuple(m.backbone.net.patch_embed.img_size) == (48, 48)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_round_trip(tmp_path, suffix):
    torch.manual_seed(1)
    src = create_model("timm:test_convnext", 3, input_size=32)
    sd = {k: v.contiguous() for k, v in src.backbone.net.state_dict().items()}
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    torch.manual_seed(2)  # a different random init: only the loaded weights can make them equal
    fresh = create_model("timm:test_convnext", 3, input_size=32)
    loaded = create_model("timm:test_convnext", 3, input_size=32, weights=str(path))
    x = torch.randn(3, 3, 32, 32)
    src.eval(), fresh.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(x), src.forward_features(x))
        assert not torch.allclose(fresh.forward_features(x), src.forward_features(x))


def test_vit_weights_load_at_another_input_size(tmp_path):
    """timm's own filter resamples the position embeddings (4 patches + CLS -> 9 + CLS)."""
    from safetensors.torch import save_file

    src = create_model("timm:test_vit", 3, input_size=32)
    save_file({k: v.contiguous() for k, v in src.backbone.net.state_dict().items()}, str(tmp_path / "v.safetensors"))
    m = create_model("timm:test_vit", 3, input_size=48, weights=str(tmp_path / "v.safetensors"))
    assert m.backbone.net.pos_embed.shape[1] == src.backbone.net.pos_embed.shape[1] + 5
    assert torch.equal(m.backbone.net.blocks[0].attn.qkv.weight, src.backbone.net.blocks[0].attn.qkv.weight)
    assert m(torch.randn(1, 3, 48, 48)).shape == (1, 3)


def test_weights_from_folder_and_timm_checkpoint_with_classifier(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    full = timm.create_model("test_resnet", num_classes=1000)  # a checkpoint with its own 1000-way fc
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(tmp_path / "model.safetensors"))
    m = create_model("timm:test_resnet", 2, weights=str(tmp_path))
    x = torch.randn(2, 3, 32, 32)
    full.eval(), m.eval()
    with torch.no_grad():
        assert torch.allclose(m.forward_features(x), full.forward_head(full.forward_features(x), pre_logits=True))


def test_synthmix_classifier_state_dict_loads_as_weights(tmp_path):
    torch.manual_seed(4)
    src = create_model("timm:test_efficientnet", 3)
    torch.save(src.state_dict(), tmp_path / "final.pt")
    m = create_model("timm:test_efficientnet", 5, weights=str(tmp_path / "final.pt"))
    src.eval(), m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.forward_features(x), src.forward_features(x))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "convnext_tiny.safetensors"
    with pytest.raises(ConfigError, match=r"model.weights: file not found: .*convnext_tiny.safetensors.*never downloads"):
        create_model("timm:test_convnext", 3, weights=str(missing))


def test_folder_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="holds none of model.safetensors"):
        create_model("timm:test_convnext", 3, weights=str(tmp_path))


def test_hub_cache_miss_names_repo_and_does_not_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torchhub"))
    with pytest.raises(ConfigError, match=r"hub-cache: no cached weights for timm 'convnext_tiny'.*hf download timm/"):
        create_model("timm:convnext_tiny", 3, weights="hub-cache")


def test_hub_cache_hit_loads_the_cached_file(tmp_path, monkeypatch):
    """A Hugging Face cache laid out as `hf download` leaves it: found offline, loaded."""
    import huggingface_hub.constants as c
    import timm
    from safetensors.torch import save_file

    repo = timm.get_pretrained_cfg("test_resnet").hf_hub_id  # timm/test_resnet.r160_in1k
    snap = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    torch.manual_seed(5)
    full = timm.create_model("test_resnet", num_classes=1000)
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(snap / "model.safetensors"))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    m = create_model("timm:test_resnet", 3, weights="hub-cache")
    full.eval(), m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m.forward_features(x), full.forward_head(full.forward_features(x), pre_logits=True))


def test_mismatched_weights_name_the_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    other = timm.create_model("test_resnet", num_classes=0)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "resnet.safetensors"))
    with pytest.raises(ConfigError, match=r"resnet.safetensors does not fit timm 'test_convnext'"):
        create_model("timm:test_convnext", 3, weights=str(tmp_path / "resnet.safetensors"))


def test_truncated_weights_file(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ConfigError, match="cannot load .*bad.safetensors"):
        create_model("timm:test_convnext", 3, weights=str(p))


def test_unknown_timm_architecture():
    with pytest.raises(ConfigError, match="unknown timm architecture 'convnext_tinyy'"):
        create_model("timm:convnext_tinyy", 3)
    with pytest.raises(ConfigError, match=r"model.model_kwargs: timm 'test_resnet'.*no_such_arg"):
        create_model("timm:test_resnet", 3, no_such_arg=1)


def test_model_defaults_from_pretrained_cfg(tmp_path):
    import json

    d = model_defaults("timm:convnext_tiny")
    assert d["input_size"] == 224 and d["normalization"] == "imagenet"
    assert model_defaults("timm:vit_small_patch16_224")["normalization"] == "inception"
    clip = model_defaults("timm:vit_base_patch16_clip_224.openai")
    assert clip["normalization"] == "clip"
    # a weights folder's config.json overrides
    (tmp_path / "config.json").write_text(json.dumps({"pretrained_cfg": {"input_size": [3, 256, 256]}}))
    assert model_defaults("timm:convnext_tiny", weights=str(tmp_path))["input_size"] == 256
    assert model_defaults("small_cnn") == {"input_size": None, "normalization": "imagenet",
                                           "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def test_defaults_normalization_is_a_train_config_choice():
    from synthmix.data.augment import NORMALIZATIONS
    from synthmix.training.config import TrainConfig

    for arch in ("timm:convnext_tiny", "timm:vit_small_patch16_224", "timm:vit_base_patch16_clip_224.openai"):
        name = model_defaults(arch)["normalization"]
        assert TrainConfig(normalization=name).normalization == name
        assert NORMALIZATIONS[name][0] == pytest.approx(model_defaults(arch)["mean"])


def test_import_synthmix_models_stays_light():
    import subprocess
    import sys

    code = ("import sys, synthmix.models; "
            "assert 'timm' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_train_run_with_a_timm_backbone_from_local_weights(tiny_folder, tmp_path):
    """The study path: a TrainRunConfig names a timm model and a weights file; training,
    evaluation (Grad-CAM included) and final.pt work, and final.pt loads into a fresh model."""
    from safetensors.torch import save_file

    from synthmix.training.checkpoint import load_weights
    from synthmix.training.train import TrainRunConfig, train_run

    torch.manual_seed(0)
    src = create_model("timm:test_resnet", 3)
    save_file({k: v.contiguous() for k, v in src.backbone.net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    cfg = TrainRunConfig(folder=tiny_folder, val_fraction=0.25, train={
        "model": "timm:test_resnet", "model_kwargs": {"weights": str(tmp_path / "w.safetensors")},
        "input_size": 32, "epochs": 1, "batch_size": 8, "device": "cpu", "backbone_lr_mult": 0.1,
        "finetune": {"mode": "partial", "blocks": 1}, "normalization": "inception"})
    res = train_run(cfg, tmp_path / "run", progress=False)
    assert res["eval"]["test"]["accuracy"] is not None
    assert (tmp_path / "run" / "eval" / "test" / "gradcam.png").exists()
    fresh = create_model("timm:test_resnet", 3)
    load_weights(tmp_path / "run" / "checkpoints" / "final.pt", fresh)
