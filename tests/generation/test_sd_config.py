"""Stable Diffusion configs, prompts and roles: pure Python, no torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthmix.core.config import parse_config
from synthmix.core.errors import ConfigError
from synthmix.generation.sd.config import DAFusionConfig, Text2ImgConfig, role_for_strength
from synthmix.generation.sd.prompts import class_name, class_prompt, placeholder_token

REPO = Path(__file__).resolve().parents[2]


def test_prompts_cycle_templates_and_use_overrides():
    templates = ["a photo of a {name}", "a close-up of a {name}"]
    names = {"mixed": "bowl of mixed fruit"}
    assert [class_prompt("apple", i, templates, names) for i in range(3)] == [
        "a photo of a apple", "a close-up of a apple", "a photo of a apple"]
    assert class_prompt("mixed", 1, templates, names) == "a close-up of a bowl of mixed fruit"
    assert class_name("granny_smith-apple", {}) == "granny smith apple"


def test_placeholder_token_is_lowercase_slug():
    assert placeholder_token("Granny Smith") == "<granny_smith>"
    assert placeholder_token("apple") == "<apple>"


@pytest.mark.parametrize(("strength", "role"), [(0.1, "in_dist"), (0.2, "in_dist"), (0.35, "unsorted"),
                                                (0.5, "near_ood"), (0.9, "near_ood")])
def test_role_by_strength(strength, role):
    assert role_for_strength(strength, 0.2, 0.5) == role


@pytest.mark.parametrize(("data", "field"), [
    ({"model": "m", "prompts": {"templates": ["a photo"]}}, "prompts.templates"),
    ({"model": "m", "prompts": {"templates": ["a {name} {other}"]}}, "prompts.templates"),
    ({"model": "m", "width": 100}, "width"),
    ({"model": "m", "steps": 0}, "steps"),
    ({"model": "m", "stepz": 3}, "stepz"),
    ({"steps": 3}, "model"),
])
def test_text2img_config_errors_name_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        parse_config(Text2ImgConfig, data, source="generator")
    assert f"- {field}" in str(err.value)


@pytest.mark.parametrize(("data", "needle"), [
    ({"model": "m", "strengths": [0.2, 1.5]}, "strengths"),
    ({"model": "m", "strengths": []}, "strengths"),
    ({"model": "m", "in_dist_max": 0.6, "near_ood_min": 0.5}, "in_dist_max"),
    ({"model": "m", "steps": 4, "strengths": [0.2]}, "no denoising step"),
    ({"model": "m", "textual_inversion": {"templates": ["a photo of a {name}"]}}, "textual_inversion.templates"),
])
def test_dafusion_config_errors(data, needle):
    with pytest.raises(ConfigError) as err:
        parse_config(DAFusionConfig, data, source="generator")
    assert needle in str(err.value)


def test_dafusion_defaults_follow_the_thesis():
    cfg = parse_config(DAFusionConfig, {"model": "m"})
    assert cfg.strengths == [0.2, 0.5]
    assert [role_for_strength(s, cfg.in_dist_max, cfg.near_ood_min) for s in cfg.strengths] == [
        "in_dist", "near_ood"]
    assert cfg.textual_inversion.enabled


@pytest.mark.parametrize("name", ["sd-text2img.yaml", "sd-dafusion.yaml"])
def test_shipped_configs_validate(name):
    from synthmix.generation.jobs import load_generate_config

    cfg = load_generate_config(REPO / "configs" / name)
    assert cfg.generator["type"] in ("text2img", "dafusion")


def test_sd15_architecture_configs_are_sd15():
    import json

    unet = json.loads((REPO / "configs/sd15/unet.json").read_text())
    assert unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert unet["cross_attention_dim"] == 768
    te = json.loads((REPO / "configs/sd15/text_encoder.json").read_text())
    assert (te["hidden_size"], te["num_hidden_layers"]) == (768, 12)
    vae = json.loads((REPO / "configs/sd15/vae.json").read_text())
    assert vae["block_out_channels"] == [128, 256, 512, 512]
