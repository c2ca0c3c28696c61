"""SupCon + Outlier Exposure: outlier images are contrastive negatives only and add an OE / energy
term to the probe (synthmix.training.contrastive.probe_epoch / train_contrastive, supcon_run)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def _probe_setup(seed=0):
    from synthmix.models import create_model
    from synthmix.training.contrastive import ContrastiveConfig

    cfg = ContrastiveConfig(model="tiny_cnn", input_size=16, epochs=0, probe_epochs=1, probe_batch_size=4,
                            probe_lr=0.05)
    torch.manual_seed(seed)
    model = create_model("tiny_cnn", 3, input_size=16)
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(10, model.feature_dim, generator=g)
    y = torch.arange(10) % 3
    out_feats = torch.randn(7, model.feature_dim, generator=g) * 2
    return cfg, model, feats, y, out_feats


@pytest.mark.parametrize("loss,ratio", [("oe", 1.0), ("oe", 2.0), ("energy", 0.5)])
def test_linear_probe_with_outliers_matches_a_naive_loop(loss, ratio):
    """One probe epoch with outliers == a hand-written loop: the same ID batches (the probe's
    generator), outliers drawn from their own generator, CE + the OE / energy formula written out."""
    import copy

    import torch.nn.functional as F

    from synthmix.training.contrastive import ProbeOutliers, probe_epoch
    from synthmix.training.outliers import OutlierLossConfig

    cfg, model, feats, y, out_feats = _probe_setup()
    ol = OutlierLossConfig(loss=loss, batch_ratio=ratio, weight=0.7, m_in=-3.0, m_out=-1.0)
    ref = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.probe_lr, weight_decay=cfg.weight_decay)
    out = ProbeOutliers(torch.zeros(7, 3, 16, 16, dtype=torch.uint8), ol, torch.Generator().manual_seed(9), out_feats)
    probe_epoch(model, None, y, cfg, opt, torch.Generator().manual_seed(1), feats, out)

    ropt = torch.optim.AdamW(ref.head.parameters(), lr=cfg.probe_lr, weight_decay=cfg.weight_decay)
    g, go = torch.Generator().manual_seed(1), torch.Generator().manual_seed(9)
    perm = torch.randperm(10, generator=g)
    for idx in (perm[0:4], perm[4:8], perm[8:10]):
        m = max(1, round(ratio * len(idx)))
        pick = torch.randperm(7, generator=go)[:m] if m <= 7 else torch.randint(7, (m,), generator=go)
        z_in, z_out = ref.forward_head(feats[idx]), ref.forward_head(out_feats[pick])
        loss_v = F.cross_entropy(z_in, y[idx])
        if loss == "oe":  # cross-entropy to the uniform distribution
            loss_v = loss_v + 0.7 * (-(z_out.log_softmax(1)).mean(1)).mean()
        else:  # energy E = -logsumexp; hinge-squared margins
            e_in, e_out = -z_in.logsumexp(1), -z_out.logsumexp(1)
            loss_v = loss_v + 0.7 * ((e_in + 3.0).clamp(min=0).pow(2).mean() + (-1.0 - e_out).clamp(min=0).pow(2).mean())
        ropt.zero_grad()
        loss_v.backward()
        ropt.step()
    for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_probe_outliers_use_their_own_generator_and_weight_zero_changes_nothing():
    from synthmix.training.contrastive import ProbeOutliers, probe_epoch
    from synthmix.training.outliers import OutlierLossConfig

    cfg, a, feats, y, out_feats = _probe_setup()
    _, b, _, _, _ = _probe_setup()
    for model, out in ((a, None), (b, ProbeOutliers(torch.zeros(7, 3, 16, 16, dtype=torch.uint8),
                                                    OutlierLossConfig(weight=0.0), torch.Generator().manual_seed(3),
                                                    out_feats))):
        opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.probe_lr)
        probe_epoch(model, None, y, cfg, opt, torch.Generator().manual_seed(1), feats, out)
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_oe_on_the_probe_flattens_the_outliers_softmax():
    from synthmix.training.contrastive import ProbeOutliers, probe_epoch
    from synthmix.training.outliers import OutlierLossConfig

    cfg, plain, feats, y, out_feats = _probe_setup()
    cfg = cfg.model_copy(update={"probe_epochs": 1})
    _, oe, _, _, _ = _probe_setup()
    out = ProbeOutliers(torch.zeros(7, 3, 16, 16, dtype=torch.uint8), OutlierLossConfig(weight=1.0),
                        torch.Generator().manual_seed(3), out_feats)
    for model, o in ((plain, None), (oe, out)):
        opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.probe_lr)
        for _ in range(20):
            probe_epoch(model, None, y, cfg, opt, torch.Generator().manual_seed(1), feats, o)

    def msp(m):
        with torch.no_grad():
            return m.forward_head(out_feats).softmax(1).max(1).values.mean().item()

    assert msp(oe) < msp(plain) - 0.05


def test_supcon_run_with_collage_outliers(tmp_path, monkeypatch):
    """Outliers join the contrastive batch as negatives (never probe rows) and the probe gets the
    OE term; results record them; a finished run with another outlier config is refused."""
    import json

    from test_supcon_run import _cfg, _dataset

    import synthmix.training.contrastive as contrastive
    from synthmix.core.errors import ConfigError
    from synthmix.training.supcon_run import supcon_run

    real, _ = _dataset(tmp_path, roles=())
    seen = {}
    original = contrastive.train_contrastive

    def spy(data, probe_x, probe_y, num_classes, cfg, checkpoint=None, **kw):
        seen.update(data=data, probe_y=probe_y, **kw)
        return original(data, probe_x, probe_y, num_classes, cfg, checkpoint=checkpoint, **kw)

    monkeypatch.setattr(contrastive, "train_contrastive", spy)
    outliers = {"source": "corrupted", "kinds": ["collage", "noise"], "max_images": 10, "loss": "oe"}
    res = supcon_run(_cfg(real, outliers=outliers), tmp_path / "run")
    data, n_real = seen["data"], 18
    assert data.is_negative.tolist() == [False] * n_real + [True] * 10
    assert data.labels[n_real:].tolist() == [j % 3 for j in range(10)]  # spread over the classes
    assert torch.equal(data.x[n_real:], seen["outliers"])
    assert len(seen["probe_y"]) == n_real  # the probe never trains on an outlier as a class
    assert seen["outlier_loss"].loss == "oe"
    assert res["outliers"]["n"] == 10 and res["outliers"]["kinds"] == {"collage": 5, "noise": 5}
    assert json.loads((tmp_path / "run" / "outliers.json").read_text())["n"] == 10
    with pytest.raises(ConfigError, match="different config"):
        supcon_run(_cfg(real, outliers={**outliers, "weight": 1.0}), tmp_path / "run")


@pytest.mark.parametrize("probe", ["linear", "finetune"])
def test_train_contrastive_with_outliers_resumes_mid_probe_to_the_same_weights(tmp_path, monkeypatch, probe):
    from test_contrastive_parts import _cfg, _data

    from synthmix.core.errors import ConfigError
    from synthmix.training import contrastive as mod
    from synthmix.training.outliers import OutlierLossConfig

    data, px, py = _data()
    out = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    ol = OutlierLossConfig(batch_ratio=0.5)
    cfg = _cfg(probe=probe, probe_epochs=3)
    full = mod.train_contrastive(data, px, py, 3, cfg, outliers=out, outlier_loss=ol)
    plain = mod.train_contrastive(data, px, py, 3, cfg)
    assert any(not torch.equal(a, b) for a, b in zip(full.model.state_dict().values(),
                                                     plain.model.state_dict().values(), strict=True))
    real, calls = mod.probe_epoch, {"n": 0}

    def twice(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    ck = tmp_path / "ck.pt"
    monkeypatch.setattr(mod, "probe_epoch", twice)
    with pytest.raises(KeyboardInterrupt):
        mod.train_contrastive(data, px, py, 3, cfg, checkpoint=ck, outliers=out, outlier_loss=ol)
    monkeypatch.setattr(mod, "probe_epoch", real)
    assert torch.load(ck, weights_only=True)["stage"] == "probe"
    resumed = mod.train_contrastive(data, px, py, 3, cfg, checkpoint=ck, outliers=out, outlier_loss=ol)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ConfigError, match="different config"):
        mod.train_contrastive(data, px, py, 3, cfg, checkpoint=ck, outliers=out,
                              outlier_loss=OutlierLossConfig(weight=1.0))
    with pytest.raises(ConfigError, match="different config"):
        mod.train_contrastive(data, px, py, 3, cfg, checkpoint=ck)
