"""Embedded generator speed options: bf16 autocast, math attention, channels-last, torch.compile.

Each option must keep what is computed (within bf16 rounding) and keep resumption exact."""

from __future__ import annotations

import pytest
import torch
from embedded_helpers import folder_manifest, tiny_train_config

from synthmix.generation.embedded.config import ModelConfig


@pytest.fixture
def manifest(tiny_folder, tmp_path):
    return folder_manifest(tiny_folder, tmp_path / "manifest.jsonl")


def _small_model(resolution=16, seed=0):
    from synthmix.generation.embedded.unet import ClassConditionalUNet

    torch.manual_seed(seed)
    return ClassConditionalUNet(ModelConfig(size="small"), 3, resolution).eval()


def _batch(n=6, resolution=16):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, resolution, resolution, generator=g) * 2 - 1
    return x, torch.randint(0, 1000, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)


def test_math_attention_equals_sdpa_in_fp32():
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    model = _small_model()  # the small preset keeps diffusers' mid-block attention
    x, t, c = _batch()
    with torch.no_grad():
        model.set_attention("sdpa")
        ref = model(x, t, c)
        model.set_attention("math")
        procs = [m.processor for m in model.modules() if isinstance(m, Attention)]
        out = model(x, t, c)
    assert procs and all(isinstance(p, AttnProcessor) for p in procs)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    model.set_attention("sdpa")
    assert all(isinstance(m.processor, AttnProcessor2_0) for m in model.modules() if isinstance(m, Attention))
    with pytest.raises(ValueError, match="unknown implementation"):
        model.set_attention("flash")


def test_prepare_for_precision_picks_math_only_for_cpu_bf16():
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    from synthmix.generation.embedded.unet import prepare_for_precision

    model = _small_model()

    def kinds():
        return {type(m.processor) for m in model.modules() if isinstance(m, Attention)}

    prepare_for_precision(model, "cpu", "bf16")
    assert kinds() == {AttnProcessor}
    prepare_for_precision(model, "cpu", "fp32")
    assert kinds() == {AttnProcessor2_0}
    prepare_for_precision(model, "cuda", "bf16")  # a GPU keeps the fused kernels (no CUDA needed to set)
    assert kinds() == {AttnProcessor2_0}


def test_bf16_loss_runs_convolutions_in_bf16_and_matches_fp32():
    from synthmix.generation.embedded.diffusion import train_scheduler
    from synthmix.generation.embedded.train import diffusion_loss

    model = _small_model()
    sched = train_scheduler(ModelConfig())
    x, _, c = _batch(16)
    seen = []
    hook = model.unet.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        l32 = diffusion_loss(model, sched, x, c, torch.Generator().manual_seed(5), 5.0, "fp32")
        l16 = diffusion_loss(model, sched, x, c, torch.Generator().manual_seed(5), 5.0, "bf16")
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert l16.dtype == torch.float32  # the loss itself is reduced in fp32
    assert abs(float(l16) - float(l32)) < 0.02 * float(l32), (float(l32), float(l16))
    with pytest.raises(ValueError, match="precision"):
        diffusion_loss(model, sched, x, c, torch.Generator().manual_seed(5), 5.0, "fp16")


def test_bf16_sampling_stays_close_to_fp32():
    from synthmix.generation.embedded.diffusion import denoise

    model = _small_model()
    cond = torch.tensor([0, 1, 2, 0])
    out = {}
    for p in ("fp32", "bf16"):
        gens = [torch.Generator().manual_seed(i) for i in range(4)]
        out[p] = denoise(model, ModelConfig(), cond, gens, steps=5, guidance=2.0, precision=p)
    assert out["bf16"].dtype == torch.float32
    diff = (out["bf16"] - out["fp32"]).abs().mean()
    # same noise, same model: bf16 rounding moves pixels by a little, not a different image
    assert diff < 0.05 * out["fp32"].abs().mean() + 0.01, float(diff)
    assert not torch.equal(out["bf16"], out["fp32"])  # bf16 really ran


def test_bf16_training_resumes_exactly_and_is_close_to_fp32(manifest, tmp_path):
    from synthmix.generation.embedded.checkpoint import load_state
    from synthmix.generation.embedded.train import identity_hash, train_generator

    def kill_at_3(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    cfg = tiny_train_config(manifest, tmp_path / "killed", steps=6, checkpoint_every=2, precision="bf16")
    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, on_step=kill_at_3, show_progress=False)
    resumed = load_state(train_generator(cfg, show_progress=False))
    straight = load_state(train_generator(tiny_train_config(manifest, tmp_path / "straight", steps=6,
                                                            precision="bf16"), show_progress=False))
    fp32 = load_state(train_generator(tiny_train_config(manifest, tmp_path / "fp32", steps=6), show_progress=False))
    for k, v in straight["ema"].items():
        assert v.dtype == torch.float32  # checkpoints stay fp32
        torch.testing.assert_close(resumed["ema"][k], v, rtol=1e-5, atol=1e-6)
    # bf16 changes rounding, not the training: after 6 steps the weights are near the fp32 ones
    moved = sum(float((straight["model"][k] - v).abs().sum()) for k, v in fp32["model"].items())
    total = sum(float(v.abs().sum()) for v in fp32["model"].values())
    assert 0 < moved < 0.02 * total, (moved, total)
    # precision is an execution setting: a run may be resumed with another value
    assert identity_hash(cfg) == identity_hash(cfg.model_copy(update={"precision": "fp32"}))


def test_channels_last_training_matches_contiguous(manifest, tmp_path):
    from synthmix.generation.embedded.checkpoint import load_state
    from synthmix.generation.embedded.train import train_generator

    a = load_state(train_generator(tiny_train_config(manifest, tmp_path / "a", steps=4), show_progress=False))
    b = load_state(train_generator(tiny_train_config(manifest, tmp_path / "b", steps=4, channels_last=True),
                                   show_progress=False))
    for k, v in a["ema"].items():
        torch.testing.assert_close(b["ema"][k].contiguous(), v, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_training_matches_eager(manifest, tmp_path):
    from synthmix.generation.embedded.checkpoint import load_state
    from synthmix.generation.embedded.train import train_generator

    a = load_state(train_generator(tiny_train_config(manifest, tmp_path / "a", steps=3), show_progress=False))
    b = load_state(train_generator(tiny_train_config(manifest, tmp_path / "b", steps=3, compile=True),
                                   show_progress=False))
    assert set(a["model"]) == set(b["model"])  # the checkpoint holds the plain module's keys
    for k, v in a["ema"].items():
        torch.testing.assert_close(b["ema"][k], v, rtol=1e-4, atol=1e-5)


def test_low_res_steps_train_early_steps_at_half_resolution(manifest, tmp_path, monkeypatch):
    from synthmix.generation.embedded import train as train_mod
    from synthmix.generation.embedded.checkpoint import load_state

    seen = []
    real_loss = train_mod.diffusion_loss

    def spy(model, sched, x0, *a, **k):
        seen.append(x0.shape[-1])
        return real_loss(model, sched, x0, *a, **k)

    monkeypatch.setattr(train_mod, "diffusion_loss", spy)
    cfg = tiny_train_config(manifest, tmp_path / "lr", steps=5, low_res_steps=3)
    train_mod.train_generator(cfg, show_progress=False)
    assert seen == [8, 8, 8, 16, 16]  # resolution 16: three steps at 8 px, then full size

    def kill_at_3(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    killed = tiny_train_config(manifest, tmp_path / "killed", steps=5, low_res_steps=3, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_generator(killed, on_step=kill_at_3, show_progress=False)
    resumed = load_state(train_mod.train_generator(killed, show_progress=False))
    straight = load_state(tmp_path / "lr" / "checkpoint.pt")
    for k, v in straight["ema"].items():
        torch.testing.assert_close(resumed["ema"][k], v, rtol=1e-5, atol=1e-6)
    # unset, the field leaves the identity of older configs alone; set, it is part of it
    base = tiny_train_config(manifest, tmp_path / "x")
    assert train_mod.identity_hash(base) != train_mod.identity_hash(base.model_copy(update={"low_res_steps": 3}))


def test_low_res_steps_needs_a_divisible_half_resolution(manifest, tmp_path):
    from synthmix.core.errors import ConfigError
    from synthmix.generation.embedded.train import train_generator

    # small has 3 levels: 20 px is fine at full size (20 % 4 == 0) but 10 px is not divisible by 4
    cfg = tiny_train_config(manifest, tmp_path / "bad", resolution=20, model=ModelConfig(size="small"),
                            low_res_steps=1)
    with pytest.raises(ConfigError, match="low_res_steps"):
        train_generator(cfg, show_progress=False)
