"""A study whose Stable Diffusion model is missing stops before any stage runs, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthmix.core.errors import ConfigError
from synthmix.experiments.load import load_study
from synthmix.experiments.runner import preflight, run_study


def test_missing_sd_model_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    cfg = load_study(Path(__file__).resolve().parents[2] / "configs" / "fruit-study.yaml")
    with pytest.raises(ConfigError, match=r"generators\.\w+\.generate\.model: .*stable-diffusion-v1-5.* "
                                          r"not in the local Hugging Face cache"):
        preflight(cfg)
    with pytest.raises(ConfigError):
        run_study(cfg, tmp_path / "run", verbose=False)
    assert not list((tmp_path / "run" / "stages").glob("*/done.json"))  # nothing ran
