"""Embedded generator training: loss goes down, checkpoints resume, bad input is refused."""

from __future__ import annotations

import json

import pytest
import torch
from embedded_helpers import folder_manifest, tiny_train_config

from synthmix.core.errors import ConfigError, DataError


@pytest.fixture
def manifest(tiny_folder, tmp_path):
    return folder_manifest(tiny_folder, tmp_path / "manifest.jsonl")


def _fixed_batch_loss(ckpt, manifest_cfg, use_ema=False) -> float:
    """Loss of the checkpoint's weights on one fixed batch with fixed noise and timesteps."""
    from synthmix.generation.embedded.checkpoint import load_generator
    from synthmix.generation.embedded.diffusion import from_uint8, train_scheduler
    from synthmix.generation.embedded.train import diffusion_loss, load_training_data

    lg = load_generator(ckpt, use_ema=use_ema)
    x, y, _ = load_training_data(manifest_cfg)
    x0 = from_uint8(x).repeat(4, 1, 1, 1)
    with torch.no_grad():
        return float(diffusion_loss(lg.model, train_scheduler(lg.model_cfg), x0, y.repeat(4),
                                    torch.Generator().manual_seed(123), min_snr_gamma=5.0))


def test_training_lowers_the_loss(manifest, tmp_path):
    from synthmix.generation.embedded.train import train_generator

    cfg0 = tiny_train_config(manifest, tmp_path / "a", steps=1, lr=3e-3)
    before = _fixed_batch_loss(train_generator(cfg0, show_progress=False), cfg0)
    cfg = tiny_train_config(manifest, tmp_path / "a", steps=60, lr=3e-3, checkpoint_every=30)
    after = _fixed_batch_loss(train_generator(cfg, show_progress=False), cfg)
    assert after < 0.7 * before, (before, after)
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 60
    assert (tmp_path / "a" / "samples" / "final.png").is_file()


def test_killed_training_resumes_and_matches_uninterrupted(manifest, tmp_path):
    from synthmix.generation.embedded.checkpoint import load_state
    from synthmix.generation.embedded.train import train_generator

    def kill_at_5(step, loss):
        if step == 5:
            raise KeyboardInterrupt  # as if the process were killed after step 5

    cfg = tiny_train_config(manifest, tmp_path / "killed", steps=8, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, on_step=kill_at_5, show_progress=False)
    state = load_state(tmp_path / "killed" / "checkpoint.pt")
    assert state["step"] == 4 and not state["finished"]  # the last checkpoint before the kill

    seen = []
    train_generator(cfg, on_step=lambda s, _loss: seen.append(s), show_progress=False)
    assert seen == [5, 6, 7, 8]  # the step count continues from the checkpoint
    resumed = load_state(tmp_path / "killed" / "checkpoint.pt")
    assert resumed["step"] == 8 and resumed["finished"]

    straight = load_state(train_generator(tiny_train_config(manifest, tmp_path / "straight", steps=8),
                                          show_progress=False))
    for k, v in straight["ema"].items():
        torch.testing.assert_close(resumed["ema"][k], v, rtol=1e-5, atol=1e-6)


def test_resume_with_other_settings_is_refused(manifest, tmp_path):
    from synthmix.generation.embedded.train import train_generator

    train_generator(tiny_train_config(manifest, tmp_path / "r", steps=1), show_progress=False)
    with pytest.raises(ConfigError, match="different settings"):
        train_generator(tiny_train_config(manifest, tmp_path / "r", steps=2, lr=1e-2), show_progress=False)


def test_no_train_rows_is_a_clear_error(manifest, tmp_path):
    from synthmix.generation.embedded.train import train_generator

    cfg = tiny_train_config(manifest, tmp_path / "x", classes=["pear"])
    with pytest.raises(DataError, match="pear"):
        train_generator(cfg, show_progress=False)


def test_training_uses_real_train_rows_only(manifest, tmp_path):
    from synthmix.generation.embedded.train import load_training_data

    x, y, classes = load_training_data(tiny_train_config(manifest, tmp_path / "d"))
    assert classes == ["apple", "banana", "orange"]
    assert x.shape == (24, 3, 16, 16) and x.dtype == torch.uint8  # 8 train images per class, no test
    assert torch.bincount(y).tolist() == [8, 8, 8]


def test_the_same_training_in_two_folders_plans_the_same_rows(manifest, tmp_path):
    """Generated ids (and so seeds and images) depend on the weights, not on the checkpoint file,
    which also stores paths and timings: two runs in two folders plan identical rows."""
    from synthmix.generation.embedded.backend import plan_rows
    from synthmix.generation.embedded.checkpoint import load_generator
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig
    from synthmix.generation.embedded.train import train_generator

    cfg = EmbeddedGenerateConfig(checkpoint="-", per_class=2)
    plans, files = [], []
    for name in ("a", "b"):
        ckpt = train_generator(tiny_train_config(manifest, tmp_path / name))
        files.append(ckpt.read_bytes())
        plans.append(plan_rows(cfg, load_generator(ckpt)))
    assert files[0] != files[1]  # paths and timings differ ...
    assert plans[0] == plans[1]  # ... the planned rows do not
