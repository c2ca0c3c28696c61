"""LoRA / DreamBooth adaptation through the production path: tiny random-weight SD, offline."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sd_helpers import real_manifest, single_thread

from synthmix.core.errors import ConfigError
from synthmix.data.manifest import read_manifest, train_rows
from synthmix.generation.jobs import GenerateConfig, run_generate

assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("model") / "tiny-sd")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """Same architecture, other weights: an adapter of tiny_model must not load into it."""
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("model2") / "tiny-sd-other", seed=1)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return real_manifest(tmp_path_factory.mktemp("data"), {"apple": 2, "banana": 2})


LORA = {"rank": 2, "steps": 3, "batch_size": 2, "resolution": 32, "checkpoint_every": 2,
        "learning_rate": 0.05, "text_encoder": True}


def gen_cfg(model, **over):
    g = {"type": "lora", "model": str(model), "steps": 4, "width": 32, "height": 32, "guidance": 5.0,
         "images_per_class": 2, "seed": 1, "lora": dict(LORA)}
    g.update(over)
    return g


def _pipe(model, task="text2img"):
    from synthmix.core.config import parse_config
    from synthmix.generation.sd.adapted import LoRAGenConfig
    from synthmix.generation.sd.pipeline import load_pipeline

    cfg = parse_config(LoRAGenConfig, {k: v for k, v in gen_cfg(model).items() if k != "type"})
    return cfg, load_pipeline(cfg, task, "cpu")


def _images(manifest, label):
    from synthmix.data.images import load_rgb

    return [load_rgb(r["path"]) for r in train_rows(read_manifest(manifest)) if r["label"] == label]


def _train(pipe, cfg, manifest, out, fp="f1", label="apple"):
    from synthmix.generation.sd.lora import adapter_key, train_adapter

    return train_adapter(pipe, adapter_key(label), {label: _images(manifest, label)}, {label: f"<{label}>"},
                         {label: label}, cfg.lora, out, "cpu", fp, str(cfg.model))


def _base_params(pipe):
    """Every non-LoRA parameter, under its name without peft's ``base_layer.`` wrapper."""
    out = {}
    for part in ("unet", "text_encoder", "vae"):
        for n, p in getattr(pipe, part).named_parameters():
            if "lora_" not in n:
                out[f"{part}.{n.replace('base_layer.', '')}"] = p.detach().clone()
    return out


def _generate(pipe, prompt="a photo of a <apple> apple"):
    from synthmix.generation.sd.pipeline import image_generators

    return pipe(prompt=[prompt], num_inference_steps=4, guidance_scale=5.0, height=32, width=32,
                generator=image_generators([5]), output_type="np").images[0]


def test_lora_trains_only_lora_weights_and_changes_the_images(tmp_path, tiny_model, manifest):
    import torch

    from synthmix.generation.sd.lora import activate, lora_parameters

    cfg, pipe = _pipe(tiny_model)
    base_image = _generate(pipe)
    before = _base_params(pipe)
    res = _train(pipe, cfg, manifest, tmp_path / "lora")
    assert len(res.losses) == 3 and all(np.isfinite(res.losses))
    after = _base_params(pipe)
    assert before.keys() == after.keys()
    for k, v in before.items():  # every base weight bit-identical
        assert torch.equal(v, after[k]), k
    unet_lora = lora_parameters(pipe.unet, res.name)
    te_lora = lora_parameters(pipe.text_encoder, res.name)
    assert unet_lora and te_lora
    # lora_B starts at zero (the adapter starts as the identity) and has been trained
    assert all(p.abs().sum() > 0 for n, p in {**unet_lora, **te_lora}.items() if "lora_B" in n)
    assert (tmp_path / "lora/c_apple.safetensors").is_file()
    assert not (tmp_path / "lora/c_apple.state.safetensors").exists()
    # adapter off: exactly the base model's image; adapter on: a different image
    activate(pipe, None)
    np.testing.assert_array_equal(_generate(pipe), base_image)
    activate(pipe, res.name)
    assert np.abs(_generate(pipe) - base_image).max() > 1e-3
    # the finished adapter loads (fresh pipeline) and gives the same image; other settings -> error
    _, fresh = _pipe(tiny_model)
    again = _train(fresh, cfg, manifest, tmp_path / "lora")
    assert again.losses == []
    activate(fresh, again.name)
    np.testing.assert_allclose(_generate(fresh), _generate(pipe), atol=1e-6)
    _, fresh2 = _pipe(tiny_model)
    with pytest.raises(ConfigError, match="other settings"):
        _train(fresh2, cfg, manifest, tmp_path / "lora", fp="f2")


def test_lora_resume_equals_uninterrupted(tmp_path, tiny_model, manifest, monkeypatch):
    from safetensors.torch import load_file

    from synthmix.generation.sd import lora

    cfg, pipe = _pipe(tiny_model)
    cfg = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"steps": 4, "checkpoint_every": 2,
                                                                     "lr_schedule": "cosine", "warmup_steps": 1})})
    full = _train(pipe, cfg, manifest, tmp_path / "a", label="banana")

    real_seed = lora.derive_seed

    def die_at_step_3(seed, key, step, *rest):
        if step == 3:
            raise KeyboardInterrupt("simulated kill")
        return real_seed(seed, key, step, *rest)

    _, pipe_b = _pipe(tiny_model)
    monkeypatch.setattr(lora, "derive_seed", die_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        _train(pipe_b, cfg, manifest, tmp_path / "b", label="banana")
    assert (tmp_path / "b/c_banana.state.safetensors").is_file() and not (tmp_path / "b/c_banana.safetensors").exists()
    monkeypatch.setattr(lora, "derive_seed", real_seed)
    _, pipe_c = _pipe(tiny_model)
    resumed = _train(pipe_c, cfg, manifest, tmp_path / "b", label="banana")
    assert resumed.start_step == 2 and len(resumed.losses) == 2
    np.testing.assert_allclose(resumed.losses, full.losses[2:], rtol=1e-5)
    a, b = load_file(str(tmp_path / "a/c_banana.safetensors")), load_file(str(tmp_path / "b/c_banana.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6, err_msg=k)


def test_adapter_for_another_base_model_fails(tmp_path, tiny_model, other_model, manifest):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from synthmix.generation.sd.lora import load_adapter

    cfg, pipe = _pipe(tiny_model)
    res = _train(pipe, cfg, manifest, tmp_path / "lora")
    _, other = _pipe(other_model)
    with pytest.raises(ConfigError, match="weights differ"):
        load_adapter(other, res.path, str(other_model), ["apple"], {"apple": "<apple>"})
    # another architecture: the config hash differs
    with safe_open(str(res.path), framework="pt") as f:
        meta = json.loads(f.metadata()["synthmix"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["base_config_hash"] = "0" * 16
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"synthmix": json.dumps(meta)})
    _, fresh = _pipe(tiny_model)
    with pytest.raises(ConfigError, match="another architecture"):
        load_adapter(fresh, bad, str(tiny_model), ["apple"], {"apple": "<apple>"})
    with pytest.raises(ConfigError, match="not for"):
        load_adapter(fresh, res.path, str(tiny_model), ["banana"], {"banana": "<banana>"})


def test_lora_job_rows_prior_and_resume(tmp_path, tiny_model, manifest):
    lora_cfg = {**LORA, "steps": 2, "text_encoder": False, "prior": {"enabled": True, "num_images": 1, "steps": 2}}
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=4,
                         generator=gen_cfg(tiny_model, lora=lora_cfg,
                                           prompts={"templates": ["a photo of a {token} {name} {place}"],
                                                    "contexts": {"place": ["on a table", "in a garden"]}}))
    assert run_generate(cfg) == {"planned": 4, "skipped": 0, "ok": 4, "failed": 0}
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    for r in rows:
        assert (r["source"], r["method"], r["role"], r["status"]) == ("lora", "txt2img", "in_dist", "ok")
        token = f"<{r['label']}>"
        assert r["prompt"].startswith(f"a photo of a {token} {r['label']} ")
        assert r["prompt"].endswith(("on a table", "in a garden"))
        assert r["checkpoint"] == f"lora/c_{r['label']}.safetensors"
        assert (tmp_path / "out" / r["checkpoint"]).is_file()
        rec = r["recipe"]
        assert (rec["name"], rec["kind"], rec["rank"], rec["steps"], rec["adapter"]) == (
            "custom", "lora", 2, 2, r["checkpoint"])
        assert rec["prior"]["enabled"] is True
    assert sorted((tmp_path / "out/lora/prior").rglob("*.png")) and len(list((tmp_path / "out/lora/prior").rglob("*.png"))) == 2
    adapter = tmp_path / "out/lora/c_apple.safetensors"
    mtime = adapter.stat().st_mtime_ns
    assert run_generate(cfg) == {"planned": 4, "skipped": 4, "ok": 0, "failed": 0}
    assert adapter.stat().st_mtime_ns == mtime


def test_lora_img2img_job_and_loading_finished_adapters(tmp_path, tiny_model, manifest):
    lora_cfg = {**LORA, "steps": 1, "text_encoder": False, "per_class": False}
    first = GenerateConfig(manifest=manifest, out_dir=tmp_path / "a", batch_size=4,
                           generator=gen_cfg(tiny_model, method="img2img", strengths=[0.5], lora=lora_cfg))
    assert run_generate(first)["ok"] == 4
    rows = read_manifest(tmp_path / "a/manifest.jsonl")
    assert {r["checkpoint"] for r in rows} == {"lora/all.safetensors"}
    assert all(r["parent_id"] and r["strength"] == 0.5 and r["method"] == "img2img" for r in rows)
    # a second study reuses the finished adapter folder instead of training
    reuse = GenerateConfig(manifest=manifest, out_dir=tmp_path / "b", batch_size=4,
                           generator=gen_cfg(tiny_model, method="img2img", strengths=[0.5],
                                             lora={**lora_cfg, "adapter": str(tmp_path / "a/lora")}))
    assert run_generate(reuse)["ok"] == 4
    assert not (tmp_path / "b/lora").exists()


def test_missing_adapter_fails_before_any_image(tmp_path, tiny_model, manifest):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=4,
                         generator=gen_cfg(tiny_model, lora={**LORA, "adapter": str(tmp_path / "nowhere")}))
    with pytest.raises(ConfigError, match="not found"):
        run_generate(cfg)
    assert not (tmp_path / "out/manifest.jsonl").exists()
    assert not list((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize(("over", "needle"), [
    ({"prompts": {"templates": ["a photo of a {name}"]}}, "lack {token}"),
    ({"lora": {"templates": ["a photo of a {name}"]}}, "must contain {token}"),
    ({"lora": {"recipe": "nope"}}, "unknown lora recipe"),
    ({"method": "img2img", "steps": 1, "strengths": [0.5]}, "no denoising step"),
])
def test_lora_config_errors(over, needle):
    from synthmix.core.config import parse_config
    from synthmix.generation.sd.adapted import LoRAGenConfig

    with pytest.raises(ConfigError) as err:
        parse_config(LoRAGenConfig, {"model": "m", **over}, source="generator")
    assert needle in str(err.value)


def test_recipes_fill_unset_fields_and_overrides_win():
    from synthmix.core.config import parse_config
    from synthmix.generation.sd.config import TextualInversionConfig
    from synthmix.generation.sd.lora import LoRAConfig
    from synthmix.generation.sd.recipes import RECIPES, recipe_record

    dd = parse_config(LoRAConfig, {"recipe": "datadream", "steps": 7})
    assert (dd.rank, dd.alpha, dd.learning_rate, dd.batch_size, dd.text_encoder, dd.lr_schedule, dd.steps) == (
        16, 16.0, 1e-4, 8, True, "cosine", 7)
    dm = parse_config(LoRAConfig, {"recipe": "diffmix"})
    assert (dm.rank, dm.learning_rate, dm.steps, dm.per_class) == (10, 5e-5, 35000, False)
    ti = parse_config(TextualInversionConfig, {"recipe": "dafusion"})
    assert (ti.steps, ti.learning_rate, ti.batch_size, ti.resolution) == (1000, 5e-4, 4, 512)
    rec = recipe_record("lora", dd, "my/model", adapter="lora/x.safetensors")
    assert rec["name"] == "datadream" and rec["rank"] == 16 and rec["steps"] == 7
    assert rec["published_base_model"] == RECIPES["datadream"].base_model and rec["model"] == "my/model"
    assert all(r.source and r.base_model for r in RECIPES.values())


def test_preflight_checks_model_and_adapter_folders(tmp_path, tiny_model):
    from synthmix.generation.sd.backend import preflight

    preflight("lora", {"model": str(tiny_model)})
    preflight("embedded", {"anything": 1})  # not a Stable Diffusion generator: nothing to check
    with pytest.raises(ConfigError, match="lora.adapter"):
        preflight("lora", {"model": str(tiny_model), "lora": {"adapter": str(tmp_path / "none")}})
    with pytest.raises(ConfigError, match="textual_inversion.load_from"):
        preflight("dafusion", {"model": str(tiny_model), "textual_inversion": {"load_from": str(tmp_path / "none")}})
    with pytest.raises(ConfigError, match="generator.model"):
        preflight("diffmix", {"model": str(tmp_path / "no-model")})


def test_lora_refuses_unsupported_pipelines(tmp_path):
    from types import SimpleNamespace

    from synthmix.core.config import parse_config
    from synthmix.generation.sd.lora import LoRAConfig, train_adapter

    sdxl_like = SimpleNamespace(unet=1, vae=1, text_encoder=1, tokenizer=1, text_encoder_2=1)
    with pytest.raises(ConfigError, match="generator.lora: .*two text encoders"):
        train_adapter(sdxl_like, "all", {}, {}, {}, parse_config(LoRAConfig, {}), tmp_path, "cpu", "f", "m")
    flux_like = SimpleNamespace(transformer=1, vae=1, text_encoder=1, tokenizer=1)
    with pytest.raises(ConfigError, match="missing unet"):
        train_adapter(flux_like, "all", {}, {}, {}, parse_config(LoRAConfig, {}), tmp_path, "cpu", "f", "m")
