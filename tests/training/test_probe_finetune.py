"""Fine-tune recipes in the training loop: backbone lr multiplier, head-only, last-N-blocks,
LoRA (peft) merged back into plain weights."""

from __future__ import annotations

import pytest
import torch

from synthmix.core.errors import ConfigError
from synthmix.models import create_model
from synthmix.training.config import TrainConfig
from synthmix.training.finetune import FinetuneConfig, apply_finetune
from synthmix.training.loop import _make_optimizer, fit


def _data(n=24, size=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 3
    return x, y


def _cfg(**kw):
    base = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "device": "cpu", "augment": {"hflip": 0.0}}
    return TrainConfig(**{**base, **kw})


def _snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _changed(before, model, prefix):
    after = model.state_dict()
    return {k for k, v in before.items() if k.startswith(prefix) and v.is_floating_point()
            and not torch.equal(v, after[k])}


def test_backbone_lr_mult_param_groups_and_zero_freezes():
    torch.manual_seed(0)
    m = create_model("tiny_cnn", 3, input_size=32)
    opt = _make_optimizer(m, _cfg(backbone_lr_mult=0.1))
    head_ids = {id(p) for p in m.head.parameters()}
    for g in opt.param_groups:
        is_head = all(id(p) in head_ids for p in g["params"])
        assert g["lr"] == pytest.approx(1e-2 if is_head else 1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)  # the head (base lr) first
    before = _snapshot(m)
    fit(m, _data(), None, _cfg(backbone_lr_mult=0.0, warmup_epochs=0.5), progress=False)
    assert not _changed(before, m, "backbone.") and _changed(before, m, "head.")


def test_head_only_keeps_the_backbone():
    torch.manual_seed(0)
    m = create_model("timm:test_resnet", 3)
    before = _snapshot(m)
    fit(m, _data(), None, _cfg(finetune={"mode": "head"}), progress=False)
    # BN running stats too: freeze_bn (default) keeps frozen BatchNorm layers in eval mode
    assert not _changed(before, m, "backbone.") and _changed(before, m, "head.")
    fit(m, _data(), None, _cfg(finetune={"mode": "head", "freeze_bn": False}, seed=1), progress=False)
    assert {k.rsplit(".", 1)[1] for k in _changed(before, m, "backbone.")} == {"running_mean", "running_var"}


def test_partial_trains_only_the_last_blocks():
    torch.manual_seed(0)
    m = create_model("timm:test_resnet", 3)
    names = apply_finetune(m, FinetuneConfig(mode="partial", blocks=1))
    assert names and all(n.startswith(("backbone.net.layer4.", "head.")) for n in names)
    assert any(n.startswith("backbone.net.layer4.") for n in names)
    names2 = apply_finetune(m, FinetuneConfig(mode="partial", blocks=2))
    assert any(n.startswith("backbone.net.layer3.") for n in names2)
    before = _snapshot(m)
    fit(m, _data(), None, _cfg(finetune={"mode": "partial", "blocks": 1}), progress=False)
    changed = _changed(before, m, "backbone.")
    assert changed and all(k.startswith("backbone.net.layer4.") for k in changed)
    # a ViT: its last block and the final norm after it
    v = create_model("timm:test_vit", 3, input_size=32)
    vn = apply_finetune(v, FinetuneConfig(mode="partial", blocks=1))
    blocks = {n.split(".")[3] for n in vn if n.startswith("backbone.net.blocks.")}
    assert len(blocks) == 1 and any(n.startswith("backbone.net.norm.") for n in vn)
    # a plain model: the backbone's last child with parameters
    s = create_model("small_cnn", 3, input_size=32)
    sn = apply_finetune(s, FinetuneConfig(mode="partial", blocks=1))
    assert {n.split(".")[1] for n in sn if n.startswith("backbone.")} == {"3"}


def test_lora_trains_low_rank_deltas_and_merges_back(tmp_path):
    pytest.importorskip("peft")
    torch.manual_seed(0)
    m = create_model("timm:test_vit", 3, input_size=32)
    keys = set(m.state_dict())
    before = _snapshot(m)
    names = apply_finetune(m, FinetuneConfig(mode="lora", lora_rank=2))
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    fit(m, _data(), None, _cfg(finetune={"mode": "lora", "lora_rank": 2}), progress=False)
    assert set(m.state_dict()) == keys  # merged: a plain state dict again
    assert not any("lora" in n for n, _ in m.named_modules())
    w0 = before["backbone.net.blocks.0.attn.qkv.weight"]
    w1 = m.state_dict()["backbone.net.blocks.0.attn.qkv.weight"]
    assert not torch.equal(w0, w1)
    assert torch.linalg.matrix_rank(w1 - w0, atol=1e-6) <= 2
    # the norms (not adapted) are unchanged
    assert torch.equal(before["backbone.net.blocks.0.norm1.weight"], m.state_dict()["backbone.net.blocks.0.norm1.weight"])
    fresh = create_model("timm:test_vit", 3, input_size=32)
    fresh.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 32, 32)
    m.eval(), fresh.eval()
    assert torch.allclose(fresh(x), m(x))


def test_lora_on_a_cnn_and_mode_switch_error():
    pytest.importorskip("peft")
    m = create_model("timm:test_resnet", 3)
    names = apply_finetune(m, FinetuneConfig(mode="lora"))
    assert any("lora_" in n and "conv" in n for n in names)
    with pytest.raises(ConfigError, match="holds LoRA adapters"):
        apply_finetune(m, FinetuneConfig(mode="full"))


def test_default_config_trains_everything():
    m = create_model("tiny_cnn", 3)
    assert apply_finetune(m, TrainConfig().finetune) == [n for n, _ in m.named_parameters()]


def test_mix_batch_mixup_and_cutmix():
    from synthmix.training.mixup import MixupConfig, mix_batch

    x = torch.rand(6, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    g = torch.Generator().manual_seed(0)
    xm, t, lam = mix_batch(x, y, 3, MixupConfig(mixup_alpha=0.4), g)
    assert 0 < lam < 1
    assert torch.allclose(xm, lam * x + (1 - lam) * x.flip(0))
    onehot = torch.nn.functional.one_hot(y, 3).float()
    assert torch.allclose(t, lam * onehot + (1 - lam) * onehot.flip(0)) and torch.allclose(t.sum(1), torch.ones(6))
    xc, tc, lamc = mix_batch(x, y, 3, MixupConfig(cutmix_alpha=1.0), torch.Generator().manual_seed(1))
    pasted = (xc != x).any(1)[0].float().mean().item()  # fraction of pixels taken from the partner
    assert pasted == pytest.approx(1 - lamc, abs=1e-6)
    assert torch.allclose(tc, lamc * onehot + (1 - lamc) * onehot.flip(0))
    # off: unchanged input, one-hot targets, still exactly one draw
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x0, t0, l0 = mix_batch(x, y, 3, MixupConfig(), g1)
    assert x0 is x and l0 == 1.0 and torch.equal(t0, onehot)
    torch.randint(0, 2**31 - 1, (1,), generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_fit_with_mixup_is_deterministic():
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = create_model("tiny_cnn", 3, input_size=32)
        fit(m, _data(), None, _cfg(epochs=2, mixup={"mixup_alpha": 0.2, "cutmix_alpha": 1.0}), progress=False)
        outs.append(_snapshot(m))
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_weight_ema_update_by_hand():
    from synthmix.training.ema import WeightEma

    m = torch.nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema = WeightEma(m, 0.9)
    with torch.no_grad():
        m.weight.fill_(3.0)
    ema.update(m)  # 0.9 * 1 + 0.1 * 3
    assert torch.allclose(ema.state["weight"], torch.full((1, 2), 1.2))
    with ema.swapped(m):
        assert torch.allclose(m.weight, torch.full((1, 2), 1.2))
    assert torch.allclose(m.weight, torch.full((1, 2), 3.0))


def test_fit_with_ema_resumes_exactly(tmp_path):
    x, y = _data()
    val = (x[:9], y[:9])
    cfg = _cfg(epochs=3, ema_decay=0.9, mixup={"mixup_alpha": 0.2})

    torch.manual_seed(0)
    ref = create_model("tiny_cnn", 3, input_size=32)
    fit(ref, (x, y), val, cfg, tmp_path / "a", progress=False)

    class Kill(Exception):
        pass

    def kill(epoch, record):
        if epoch == 1:
            raise Kill

    torch.manual_seed(0)
    m = create_model("tiny_cnn", 3, input_size=32)
    with pytest.raises(Kill):
        fit(m, (x, y), val, cfg, tmp_path / "b", progress=False, on_epoch_end=kill)
    torch.manual_seed(0)
    m2 = create_model("tiny_cnn", 3, input_size=32)
    r = fit(m2, (x, y), val, cfg, tmp_path / "b", progress=False)
    assert r.resumed_from_epoch == 2
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in ref.state_dict().items())
    # without validation the final weights are the average, not the last step's
    torch.manual_seed(0)
    a = create_model("tiny_cnn", 3, input_size=32)
    fit(a, (x, y), None, _cfg(epochs=2), progress=False)
    torch.manual_seed(0)
    b = create_model("tiny_cnn", 3, input_size=32)
    fit(b, (x, y), None, _cfg(epochs=2, ema_decay=0.5), progress=False)
    assert not torch.equal(a.head[-1].weight, b.head[-1].weight)
