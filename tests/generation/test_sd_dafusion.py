"""DA-Fusion: textual inversion (few steps) and img2img through the production path, tiny weights, offline."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sd_helpers import real_manifest, single_thread, to_u8

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
def manifest(tmp_path_factory):
    return real_manifest(tmp_path_factory.mktemp("data"), {"apple": 2, "banana": 1}, rgba=True)


def gen_cfg(model, **over):
    g = {"type": "dafusion", "model": str(model), "steps": 10, "width": 32, "height": 32, "guidance": 5.0,
         "strengths": [0.2, 0.35, 0.5], "images_per_real": 1, "seed": 3,
         "textual_inversion": {"steps": 3, "batch_size": 2, "resolution": 32, "checkpoint_every": 2}}
    g.update(over)
    return g


def _pipe(model):
    from synthmix.core.config import parse_config
    from synthmix.generation.sd.config import DAFusionConfig
    from synthmix.generation.sd.pipeline import load_pipeline

    cfg = parse_config(DAFusionConfig, {k: v for k, v in gen_cfg(model).items() if k != "type"})
    return cfg, load_pipeline(cfg, "img2img", "cpu")


def _images(manifest, label):
    from synthmix.data.images import load_rgb

    return [load_rgb(r["path"]) for r in train_rows(read_manifest(manifest)) if r["label"] == label]


def test_textual_inversion_learns_only_the_new_token(tmp_path, tiny_model, manifest):
    import torch

    from synthmix.generation.sd.textual_inversion import initial_embedding, train_token

    cfg, pipe = _pipe(tiny_model)
    te, tok = pipe.text_encoder, pipe.tokenizer
    before = {k: v.clone() for k, v in te.state_dict().items()}
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    vocab = len(tok)
    init = initial_embedding(tok, te, "apple")
    res = train_token(pipe, _images(manifest, "apple"), "<apple>", "apple", cfg.textual_inversion,
                      tmp_path / "ti", "cpu", fp="f1")
    assert len(res.losses) == 3 and all(np.isfinite(res.losses))
    assert res.embedding.shape == init.shape and not torch.allclose(res.embedding, init)
    # the token is installed: one new row, equal to the learned vector; every other weight unchanged
    assert len(tok) == vocab + 1 and tok.convert_tokens_to_ids("<apple>") == vocab
    assert tok.convert_tokens_to_ids("<apple>") in tok("a photo of a <apple>").input_ids
    after = te.state_dict()
    for k, v in before.items():
        if v.shape == after[k].shape:
            assert torch.equal(v, after[k]), k
        else:  # the token-embedding table
            assert torch.equal(after[k][:vocab], v) and torch.equal(after[k][vocab], res.embedding)
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in unet_before.items())
    assert (tmp_path / "ti/apple.safetensors").is_file() and not (tmp_path / "ti/apple.state.safetensors").exists()
    # a finished token is loaded, not retrained; other settings -> clear error
    again = train_token(pipe, _images(manifest, "apple"), "<apple>", "apple", cfg.textual_inversion,
                        tmp_path / "ti", "cpu", fp="f1")
    assert again.losses == [] and torch.equal(again.embedding, res.embedding)
    with pytest.raises(ConfigError, match="other settings"):
        train_token(pipe, _images(manifest, "apple"), "<apple>", "apple", cfg.textual_inversion,
                    tmp_path / "ti", "cpu", fp="f2")


def test_textual_inversion_resume_equals_uninterrupted(tmp_path, tiny_model, manifest, monkeypatch):
    import torch

    from synthmix.generation.sd import textual_inversion as ti

    cfg, pipe = _pipe(tiny_model)
    tcfg = cfg.textual_inversion.model_copy(update={"steps": 4, "checkpoint_every": 2})
    images = _images(manifest, "banana")
    full = ti.train_token(pipe, images, "<banana>", "banana", tcfg, tmp_path / "a", "cpu", fp="x")

    real_seed = ti.derive_seed

    def die_at_step_3(seed, token, step):
        if step == 3:
            raise KeyboardInterrupt("simulated kill")
        return real_seed(seed, token, step)

    monkeypatch.setattr(ti, "derive_seed", die_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        ti.train_token(pipe, images, "<banana>", "banana", tcfg, tmp_path / "b", "cpu", fp="x")
    assert (tmp_path / "b/banana.state.safetensors").is_file() and not (tmp_path / "b/banana.safetensors").exists()
    monkeypatch.setattr(ti, "derive_seed", real_seed)
    resumed = ti.train_token(pipe, images, "<banana>", "banana", tcfg, tmp_path / "b", "cpu", fp="x")
    assert resumed.start_step == 2 and len(resumed.losses) == 2
    np.testing.assert_allclose(resumed.losses, full.losses[2:], rtol=1e-5)
    assert torch.allclose(resumed.embedding, full.embedding, atol=1e-6)


def test_dafusion_job_rows_roles_and_resume(tmp_path, tiny_model, manifest):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=4, generator=gen_cfg(tiny_model))
    counts = run_generate(cfg)
    assert counts == {"planned": 9, "skipped": 0, "ok": 9, "failed": 0}
    real = {r["id"]: r for r in train_rows(read_manifest(manifest))}
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    assert len({r["id"] for r in rows}) == 9
    roles = {0.2: "in_dist", 0.35: "unsorted", 0.5: "near_ood"}
    for r in rows:
        parent = real[r["parent_id"]]
        assert (r["source"], r["method"], r["status"], r["split"]) == ("dafusion", "img2img", "ok", "train")
        assert r["label"] == r["parent_label"] == parent["label"]
        assert r["role"] == roles[r["strength"]]
        assert r["prompt"] == f"a photo of a <{r['label']}>" and r["steps"] == 10 and r["guidance"] == 5.0
        assert (tmp_path / "out" / r["checkpoint"]).is_file()
        assert (r["width"], r["height"]) == (32, 32)
    assert sorted((r["parent_id"], r["strength"]) for r in rows) == sorted(
        (pid, s) for pid in real for s in roles)
    ti_file = tmp_path / "out/textual_inversion/apple.safetensors"
    mtime = ti_file.stat().st_mtime_ns
    assert run_generate(cfg) == {"planned": 9, "skipped": 9, "ok": 0, "failed": 0}
    assert ti_file.stat().st_mtime_ns == mtime  # nothing retrained
    # more images per real image: the ones made are kept, only new ones are rendered
    more = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=4,
                          generator=gen_cfg(tiny_model, images_per_real=2))
    assert run_generate(more) == {"planned": 18, "skipped": 9, "ok": 9, "failed": 0}


def test_img2img_same_image_at_any_batch_size(tiny_model, manifest):
    from synthmix.core.config import parse_config
    from synthmix.data.manifest import resolve_path
    from synthmix.generation.sd.config import DAFusionConfig
    from synthmix.generation.sd.img2img import DAFusionGenerator, plan_dafusion

    cfg = parse_config(DAFusionConfig, {**{k: v for k, v in gen_cfg(tiny_model).items() if k != "type"},
                                        "textual_inversion": {"enabled": False}, "strengths": [0.5]})
    real = train_rows(read_manifest(manifest))
    parents = {r["id"]: (r["label"], resolve_path(manifest, r["path"])) for r in real}
    rows = plan_dafusion(cfg, real, None)
    assert rows[0]["prompt"] == f"a photo of a {rows[0]['label']}" and rows[0]["checkpoint"] is None
    gen = DAFusionGenerator(cfg, "cpu", parents, "unused")
    batch = [to_u8(a) for a in gen.render(rows)]
    single = [to_u8(gen.render([r])[0]) for r in rows]
    for a, b in zip(batch, single, strict=True):
        assert a.shape == (32, 32, 3)
        np.testing.assert_array_equal(a, b)


def test_textual_inversion_refuses_unsupported_pipelines():
    from types import SimpleNamespace

    from synthmix.generation.sd.textual_inversion import check_supported

    sdxl_like = SimpleNamespace(unet=1, vae=1, text_encoder=1, tokenizer=1, text_encoder_2=1)
    with pytest.raises(ConfigError, match="enabled: false"):
        check_supported(sdxl_like)
    with pytest.raises(ConfigError, match="missing unet"):
        check_supported(SimpleNamespace(transformer=1, vae=1, text_encoder=1, tokenizer=1))


def test_two_labels_sharing_a_token_is_an_error():
    from synthmix.generation.sd.img2img import tokens_for

    with pytest.raises(ConfigError, match="share the token"):
        tokens_for(["granny smith", "granny_smith"])
