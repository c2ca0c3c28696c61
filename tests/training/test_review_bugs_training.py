"""Training settings that were accepted and then silently ignored (issue 13, review bugs)."""

from __future__ import annotations

import pytest
import torch

from synthmix.core.errors import ConfigError
from synthmix.models import create_model
from synthmix.training.config import TrainConfig
from synthmix.training.loop import fit


def _data(n: int = 6, classes: int = 2, size: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % classes


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"model": "tiny_cnn", "input_size": 16, "epochs": 2, "batch_size": 3, "lr": 0.01,
                          "seed": 0, "device": "cpu", **kw})


def test_early_stopping_without_validation_data_is_refused(tmp_path):
    """Before: with no val rows the patience never counted and training ran every epoch, as if
    the setting had not been given."""
    cfg = _cfg(early_stopping_patience=1)
    model = create_model(cfg.model, 2, **cfg.model_args())
    with pytest.raises(ConfigError, match=r"early_stopping_patience: 1 needs validation data.*no val rows"):
        fit(model, _data(), None, cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before any work
    # with validation data, or without patience, training runs
    res = fit(model, _data(), _data(4), cfg, tmp_path / "with-val", progress=False)
    assert res.epochs_run >= 1
    res = fit(model, _data(), None, _cfg(), tmp_path / "no-val", progress=False)
    assert res.epochs_run == 2


@pytest.mark.parametrize(("fields", "field"), [
    ({"loss": "simclr", "queue_size": 16}, "queue_size"),
    ({"loss": "simclr", "hard_weight": 2.0}, "hard_weight"),
    ({"probe": "linear", "probe_augment": {"crop_scale": [0.5, 1.0]}}, "probe_augment"),
])
def test_contrastive_settings_the_run_would_ignore_are_refused(fields, field):
    """Before: accepted; simclr never touched the queue or hard_weight, and the linear probe
    trains on cached un-augmented features (probe_augment unused)."""
    from synthmix.core.config import parse_config
    from synthmix.training.contrastive import ContrastiveConfig

    with pytest.raises(ConfigError, match=rf"- {field}|{field}: "):
        parse_config(ContrastiveConfig, fields, source="contrastive")
    # the same values where they are used
    ok = {"queue_size": {"queue_size": 16}, "hard_weight": {"hard_weight": 2.0},
          "probe_augment": {"probe": "finetune", "probe_augment": {"crop_scale": [0.5, 1.0]}}}[field]
    parse_config(ContrastiveConfig, ok, source="contrastive")


def test_simclr_with_a_queue_used_to_leave_the_queue_empty():
    """What the refusal replaces: a simclr run with queue_size > 0 trained exactly like one
    without (the queue is only read by the supcon branch)."""
    from synthmix.training.contrastive import ContrastiveConfig, ContrastiveData, train_contrastive

    x, y = _data(12, 2)
    data = ContrastiveData(x, y, torch.zeros(12, dtype=torch.bool), y.clone(), family=None)
    base = dict(model="tiny_cnn", input_size=16, epochs=1, m_per_class=3, probe_epochs=0, proj_dim=8,
                proj_hidden=16, batches_per_epoch=2, loss="simclr")
    cfg = ContrastiveConfig(**base, queue_size=0)
    a = train_contrastive(data, x, y, 2, cfg)
    b = train_contrastive(data, x, y, 2, cfg.model_copy(update={"queue_size": 16}))  # skips validation
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
