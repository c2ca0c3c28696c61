"""train_run / train_seeds / evaluate_run / the CLI on the tiny conftest data (tiny_cnn, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmix.core.config import load_config
from synthmix.core.errors import ConfigError
from synthmix.training.train import TrainRunConfig, train_run

TRAIN = {"model": "tiny_cnn", "input_size": 32, "epochs": 2, "batch_size": 8, "device": "cpu"}


def _synthetic_manifest(root: Path, per_class: int = 8) -> Path:
    from conftest import COLOURS, make_image
    from synthmix.data.manifest import new_row, write_manifest

    rows = []
    for c, colour in COLOURS.items():
        for i in range(per_class):
            p = root / "img" / f"{c}_{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            make_image(colour, size=(36, 36), seed=1000 + 17 * i + len(c)).save(p)
            rows.append(new_row(id=f"syn-{c}-{i}", path=f"img/{p.name}", label=c, split="train",
                                source="embedded", role="in_dist", status="ok"))
    write_manifest(root / "manifest.jsonl", rows)
    return root / "manifest.jsonl"


def test_train_run_layout_two_stage_mix_and_evaluate(tiny_folder, tmp_path):
    syn = _synthetic_manifest(tmp_path / "syn")
    cfg = TrainRunConfig(folder=tiny_folder, val_fraction=0.25, synthetic_manifests=[syn],
                         mix={"kind": "ratio", "real_fraction": 0.5}, train=TRAIN,
                         pretrain={"mix": {"kind": "synthetic_only", "total": 12}, "train": TRAIN})
    run = tmp_path / "run"
    res = train_run(cfg, run, progress=False)
    for f in ("config.yaml", "classes.json", "selection.jsonl", "selection.json", "checkpoints/last.pt",
              "checkpoints/final.pt", "results.json", "pretrain/selection.json", "eval/test/metrics.json",
              "eval/test/features.npy", "eval/test/gradcam.png", "eval/val/logits.npy"):
        assert (run / f).exists(), f
    assert json.loads((run / "classes.json").read_text()) == ["apple", "banana", "orange"]
    assert res["selection"]["n_real"] == res["selection"]["n_synthetic"] == 9  # 18 real train after val
    assert res["pretrain"]["selection"]["n_real"] == 0
    assert res["pretrain"]["selection"]["n_synthetic"] == 12
    assert res["eval"]["test"]["n"] == 9 and 0 <= res["eval"]["test"]["accuracy"] <= 1
    assert any((run / "tb").iterdir())
    # the stored config is resolved and reloads; a different config in the same dir is refused
    # (paths inside the run tree are stored relative, outside ones absolute: synthmix.core.paths)
    stored = load_config(TrainRunConfig, run / "config.yaml")
    assert stored.manifest == Path("data/manifest.jsonl") and stored.folder is None
    assert stored.synthetic_manifests == [syn.resolve()]
    from synthmix.training.train import load_run_config

    assert load_run_config(run).manifest == (run / "data" / "manifest.jsonl").resolve()
    assert train_run(cfg, run, progress=False) == res  # finished: skipped
    with pytest.raises(ConfigError, match="different config"):
        train_run(cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 0.1})}), run,
                  progress=False)

    from synthmix.training.rundir import evaluate_run

    again = evaluate_run(run, split="test", name="test-again", gradcam=False)
    assert again["accuracy"] == pytest.approx(res["eval"]["test"]["accuracy"])
    ext = evaluate_run(run, folder=tiny_folder / "test", gradcam=False)
    assert ext["n"] == 9 and ext["mapping"]["extra"] == []


def test_cli_train_seeds_and_evaluate(tiny_folder, tmp_path):
    from typer.testing import CliRunner

    from synthmix.cli.app import _register, app

    _register()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"folder: {tiny_folder}\nval_fraction: 0.25\ngradcam: false\neval_splits: [test]\n"
                   f"train: {json.dumps(TRAIN)}\n")
    out = tmp_path / "runs"
    r = CliRunner().invoke(app, ["train", str(cfg), "--seeds", "0", "1", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["splits"]["test"]["accuracy"]
    per_seed = [json.loads((out / f"seed-{s}" / "results.json").read_text())["eval"]["test"]["accuracy"]
                for s in (0, 1)]
    assert acc["values"] == per_seed and acc["n"] == 2
    assert acc["lo"] <= acc["mean"] <= acc["hi"]
    r = CliRunner().invoke(app, ["evaluate", str(out / "seed-0"), "--split", "test", "--no-gradcam"])
    assert r.exit_code == 0, r.output
    assert (out / "seed-0" / "eval" / "test" / "roc.png").exists()


def test_repo_config_loads():
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "configs").glob("train-*.yaml")):
        cfg = load_config(TrainRunConfig, path)
        assert cfg.train.epochs >= 1


def test_run_config_needs_exactly_one_data_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        TrainRunConfig(train=TRAIN)
    with pytest.raises(ValueError, match="exactly one"):
        TrainRunConfig(manifest=tmp_path / "m.jsonl", folder=tmp_path, train=TRAIN)
