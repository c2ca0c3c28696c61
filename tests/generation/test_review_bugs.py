"""Review bugs of issue 13 below the experiments layer: settings accepted and then ignored or
silently replaced, and counts that can be zero. Each test failed on the code before its fix."""

from __future__ import annotations

import pytest

from synthmix.core.config import parse_config
from synthmix.core.errors import ConfigError

# ---------------------------------------------------------------- SD speed: classic attention + fused qkv


@pytest.mark.parametrize("cls_name", ["Text2ImgConfig", "DAFusionConfig"])
def test_classic_attention_with_fused_qkv_is_refused(cls_name):
    """fuse_qkv_projections() installs diffusers' fused SDPA processor, silently replacing the
    classic one: the combination must be a config error naming both fields."""
    from synthmix.generation.sd import config as sd_config

    data = {"model": "m", "speed": {"attention": "classic", "fuse_qkv": True}}
    with pytest.raises(ConfigError) as err:
        parse_config(getattr(sd_config, cls_name), data, source="generator")
    msg = str(err.value)
    assert "generator" in msg and "- speed" in msg
    assert "attention: classic" in msg and "fuse_qkv" in msg
    # each alone stays valid
    for speed in ({"attention": "classic"}, {"attention": "sdpa", "fuse_qkv": True}):
        parse_config(getattr(sd_config, cls_name), {"model": "m", "speed": speed}, source="generator")


# ---------------------------------------------------------------- embedded: interp with one class


@pytest.fixture(scope="module")
def one_class(tmp_path_factory):
    """(checkpoint, manifest) of a tiny embedded generator trained 4 steps on a single class."""
    from embedded_helpers import folder_manifest, tiny_train_config

    from conftest import make_imagefolder
    from synthmix.generation.embedded.train import train_generator

    root = tmp_path_factory.mktemp("one_class")
    ds = make_imagefolder(root / "ds", per_class={"apple": 6}, test_per_class=1)
    manifest = folder_manifest(ds, root / "manifest.jsonl")
    ckpt = train_generator(tiny_train_config(manifest, root / "model"), show_progress=False)
    return ckpt, manifest


def _build(manifest, out_dir, **fields):
    from synthmix.data.manifest import read_manifest, train_rows
    from synthmix.generation.embedded.backend import build
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig

    cfg = EmbeddedGenerateConfig(steps=2, device="cpu", **fields)
    return build(cfg, train_rows(read_manifest(manifest)), manifest, out_dir)


def test_interp_with_one_class_is_a_config_error(one_class, tmp_path):
    """Before: no interp row was planned and no error raised (the near-OOD images the user asked
    for were silently missing, found out only when a later stage needed them)."""
    ckpt, manifest = one_class
    with pytest.raises(ConfigError, match=r"generator\.interp_per_class: 3 .* at least two .* got 1 \(apple\)"):
        _build(manifest, tmp_path, checkpoint=str(ckpt), per_class=1, interp_per_class=3)
    _, planned = _build(manifest, tmp_path, checkpoint=str(ckpt), per_class=2, interp_per_class=0)
    assert [r["method"] for r in planned] == ["sample", "sample"]


def test_interp_with_one_class_fails_before_training(tmp_path, monkeypatch):
    """With ``train`` settings (no checkpoint) the error comes before the generator is trained:
    here three classes, two excluded from training."""
    from embedded_helpers import folder_manifest

    from conftest import make_imagefolder
    from synthmix.generation.embedded import backend

    def no_training(*args, **kwargs):
        raise AssertionError("the generator was trained before the config error")

    monkeypatch.setattr(backend, "resolve_checkpoint", no_training)
    manifest = folder_manifest(make_imagefolder(tmp_path / "ds", per_class={"apple": 2, "banana": 2,
                                                                             "mixed": 2}, test_per_class=1),
                               tmp_path / "manifest.jsonl")
    train = {"exclude_classes": ["banana", "mixed"], "steps": 1}
    with pytest.raises(ConfigError, match=r"generator\.interp_per_class.*got 1 \(apple\)"):
        _build(manifest, tmp_path / "gen", train=train, interp_per_class=1)
    with pytest.raises(ConfigError, match=r"generator\.interp_per_class.*got 1 \(mixed\)"):
        _build(manifest, tmp_path / "gen", train={"classes": ["mixed"]}, interp_per_class=1)
    with pytest.raises(AssertionError, match="trained before"):  # two classes: planning goes on
        _build(manifest, tmp_path / "gen", train={"exclude_classes": ["mixed"]}, interp_per_class=1)


def test_interp_rows_mix_each_class_with_every_other(tmp_path):
    """The planned interp rows with 3 classes: each class mixed in turn with each other class."""
    from types import SimpleNamespace

    from synthmix.generation.embedded.backend import plan_rows
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig

    loaded = SimpleNamespace(classes=["a", "b", "c"], checkpoint="x" * 12)
    cfg = EmbeddedGenerateConfig(checkpoint="unused.pt", interp_per_class=4, interp_weight=0.3)
    rows = plan_rows(cfg, loaded)  # type: ignore[arg-type]
    pairs = [(r["label"], r["interp_label"]) for r in rows]
    assert pairs == [("a", "b"), ("a", "c"), ("a", "b"), ("a", "c"), ("b", "c"), ("b", "a"), ("b", "c"),
                     ("b", "a"), ("c", "a"), ("c", "b"), ("c", "a"), ("c", "b")]
    assert {r["role"] for r in rows} == {"near_ood"} and {r["interp_weight"] for r in rows} == {0.3}


def test_comparison_grid_of_a_one_class_generator(one_class, tmp_path):
    """Before: the grid asked for interp rows, got none and crashed in torch.cat on the empty group."""
    from PIL import Image

    from synthmix.generation.embedded.report import comparison_grid

    ckpt, manifest = one_class
    out = comparison_grid(ckpt, manifest, tmp_path / "grid.png", n=2, strengths=(0.5,), steps=2)
    # 1 class: rows real, samples, img2img at 0.5 (no interp row) of 2 images of 16 px, padding 2, scale 2
    assert Image.open(out).size == (2 * (2 * 18 + 2), 2 * (3 * 18 + 2))


# ---------------------------------------------------------------- embedded: generate.batch_size


def test_embedded_batch_size_bounds_each_sampling_call_and_keeps_images(one_class, tmp_path, monkeypatch):
    """``generate.batch_size`` is the most rows per denoise call. Before: accepted and ignored (one
    call per group of rows, however large). Images depend on the row's seed only."""
    import numpy as np

    from synthmix.generation.embedded import diffusion
    from synthmix.generation.writer import to_uint8

    ckpt, manifest = one_class
    calls: list[int] = []
    real_denoise = diffusion.denoise

    def counting(model, cfg, cond, generators, **kw):
        calls.append(len(generators))
        return real_denoise(model, cfg, cond, generators, **kw)

    monkeypatch.setattr(diffusion, "denoise", counting)
    fields = dict(checkpoint=str(ckpt), per_class=5, img2img_per_parent=1, max_parents_per_class=3,
                  in_dist_strengths=[0.5], near_ood_strengths=[0.9])
    images = {}
    for bs in (2, 32):
        gen, planned = _build(manifest, tmp_path, batch_size=bs, **fields)
        calls.clear()
        images[bs] = [to_uint8(a) for a in gen.render(planned)]
        # groups: 5 samples, 3 img2img at 0.5, 3 at 0.9 (render keeps each group's rows together)
        assert calls == ([2, 2, 1, 2, 1, 2, 1] if bs == 2 else [5, 3, 3]), (bs, calls)
    assert len(images[2]) == len(images[32]) == 11
    for a, b in zip(images[2], images[32], strict=True):
        # the tolerance of test_embedded_sampling: batched convolutions may flip a rare pixel by 1 level
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert not np.array_equal(images[2][0], images[2][1])


# ---------------------------------------------------------------- SD: the loaded dtype is the requested one


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("model") / "tiny-sd")


def _load(tiny_sd, **speed):
    from synthmix.generation.sd.config import Text2ImgConfig
    from synthmix.generation.sd.pipeline import load_pipeline

    return load_pipeline(Text2ImgConfig(model=str(tiny_sd), speed=speed), "text2img", "cpu")


def test_pipeline_loads_in_the_requested_dtype(tiny_sd):
    import torch

    pipe = _load(tiny_sd, dtype="bfloat16", channels_last=False)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16
    assert _load(tiny_sd, channels_last=False).unet.dtype == torch.float32  # auto on a CPU


def test_a_dtype_ignored_at_load_is_an_error(tiny_sd, monkeypatch):
    """diffusers < 0.40 ignores ``from_pretrained(dtype=...)`` and loads float32 without a word:
    simulated here by dropping the argument. Before: the run went on in float32."""
    from diffusers import AutoPipelineForText2Image

    real = AutoPipelineForText2Image.from_pretrained

    def old_diffusers(folder, **kwargs):
        kwargs.pop("dtype")
        return real(folder, **kwargs)

    monkeypatch.setattr(AutoPipelineForText2Image, "from_pretrained", staticmethod(old_diffusers))
    with pytest.raises(ConfigError, match=r"generator\.speed\.dtype: .* loaded as torch\.float32, not the "
                                          r"requested torch\.bfloat16 .*diffusers >= 0\.40"):
        _load(tiny_sd, dtype="bfloat16")
    _load(tiny_sd, dtype="float32")  # what was asked for: no error


def test_attention_settings_reach_the_pipeline(tiny_sd):
    """classic alone is honoured (diffusers' AttnProcessor); fuse_qkv with sdpa fuses."""
    pipe = _load(tiny_sd, attention="classic", channels_last=False)
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"AttnProcessor"}
    pipe = _load(tiny_sd, attention="sdpa", fuse_qkv=True, channels_last=False)
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}


def test_speed_flags_a_pipeline_cannot_apply_are_refused(tiny_sd):
    """Before: ``hasattr`` guards skipped a flag the pipeline has no method for (e.g. a VAE
    without tiling, a denoiser without the classic processor), so it was silently ignored."""
    import torch

    from synthmix.generation.sd.config import SpeedConfig
    from synthmix.generation.sd.pipeline import prepare_pipeline

    pipe = _load(tiny_sd, channels_last=False)

    class NoTilingVae(torch.nn.Module):  # a VAE without enable_tiling / enable_slicing
        dtype, device = torch.float32, torch.device("cpu")

    real_vae = pipe.vae
    pipe.vae = NoTilingVae()
    try:
        with pytest.raises(ConfigError, match=r"generator\.speed: vae_tiling, vae_slicing not supported by "
                                              r"StableDiffusionPipeline"):
            prepare_pipeline(pipe, SpeedConfig(vae_tiling=True, vae_slicing=True, channels_last=False), "cpu")
    finally:
        pipe.vae = real_vae
    prepare_pipeline(pipe, SpeedConfig(vae_tiling=True, vae_slicing=True, channels_last=False), "cpu")
    assert pipe.vae.use_tiling and pipe.vae.use_slicing


# ---------------------------------------------------------------- embedded fidelity: zero counts


def test_fidelity_with_nothing_to_count_fails_clearly(one_class, tmp_path):
    """Before: per_class 0 or a manifest without real test rows crashed deep inside
    (``torch.cat`` of an empty list, a zero-step OneCycleLR) after loading and training."""
    from synthmix.core.errors import DataError
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.generation.embedded.fidelity import measure_fidelity

    ckpt, manifest = one_class
    with pytest.raises(ConfigError, match="fidelity: per_class must be >= 1, got 0"):
        measure_fidelity(str(ckpt), str(manifest), per_class=0)
    with pytest.raises(ConfigError, match="fidelity: classifier_epochs must be >= 1, got 0"):
        measure_fidelity(str(ckpt), str(manifest), per_class=1, classifier_epochs=0)
    no_test = tmp_path / "no_test.jsonl"
    write_manifest(no_test, [r for r in read_manifest(manifest) if r["split"] != "test"])
    with pytest.raises(DataError, match=r"no_test\.jsonl.*no real test images of the generator's classes"):
        measure_fidelity(str(ckpt), str(no_test), per_class=1, strengths=(0.5,), steps=2, classifier_epochs=1)
