"""``synthmix generator train / sample / grid`` end to end with a tiny model; the repo config loads."""

from __future__ import annotations

from pathlib import Path

import yaml
from embedded_helpers import folder_manifest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


def test_repo_config_is_a_valid_train_config():
    from synthmix.core.config import load_config
    from synthmix.generation.embedded.config import TrainConfig

    cfg = load_config(TrainConfig, REPO / "configs" / "generator-fruits.yaml")
    assert cfg.resolution == 32 and cfg.model.size == "small" and "mixed" in cfg.exclude_classes


def test_train_sample_grid_commands(tiny_folder, tmp_path):
    import synthmix.cli.generator  # noqa: F401  (adds the commands)
    from synthmix.cli.app import app
    from synthmix.data.manifest import read_manifest

    manifest = folder_manifest(tiny_folder, tmp_path / "manifest.jsonl")
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(yaml.safe_dump({
        "manifest": str(manifest), "out_dir": str(tmp_path / "model"), "resolution": 16,
        "model": {"size": "tiny"}, "steps": 2, "batch_size": 4, "sample_every": 0, "sample_steps": 2,
        "threads": 1, "device": "cpu"}))
    runner = CliRunner()
    res = runner.invoke(app, ["generator", "train", str(cfg), "--steps", "3"])
    assert res.exit_code == 0, res.output
    ckpt = tmp_path / "model" / "checkpoint.pt"
    assert ckpt.is_file()

    res = runner.invoke(app, ["generator", "sample", str(ckpt), "--out-dir", str(tmp_path / "s"),
                              "--per-class", "2", "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = read_manifest(tmp_path / "s" / "manifest.jsonl")
    assert len(rows) == 6 and {r["label"] for r in rows} == {"apple", "banana", "orange"}

    res = runner.invoke(app, ["generator", "grid", str(ckpt), "--manifest", str(manifest), "--out",
                              str(tmp_path / "grid.png"), "--n", "2", "--strengths", "0.5", "--steps", "2"])
    assert res.exit_code == 0, res.output
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:  # 3 classes x (real, sample, 1 strength, interp) rows
        assert im.height > im.width


def test_bad_train_config_names_the_field(tmp_path):
    import synthmix.cli.generator  # noqa: F401
    from synthmix.cli.app import app

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"manifest": "m.jsonl", "out_dir": "o", "stepz": 3}))
    res = CliRunner().invoke(app, ["generator", "train", str(cfg)])
    assert res.exit_code != 0
    assert "stepz" in str(res.exception)
