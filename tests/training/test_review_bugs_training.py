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
