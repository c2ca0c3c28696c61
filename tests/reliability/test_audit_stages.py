"""`synthmix audit` on the run directories of the real stages: a training run (``synthmix train``)
and a study run (``synthmix run``). Clean: passes. Each injected fault: named, exit code 1.

(A generation dir is covered by the lead's test_audit.py and by the kill tests.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthmix.audit import audit_run, errors
from synthmix.core.io import read_jsonl


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(dataset root, run dir) of a finished 1-epoch tiny_cnn run, evaluated on val and test."""
    from conftest import make_imagefolder
    from synthmix.training.train import TrainRunConfig, train_run

    base = tmp_path_factory.mktemp("audit-train")
    ds = make_imagefolder(base / "ds", per_class={"apple": 5, "banana": 5}, test_per_class=2, size=(20, 16))
    cfg = TrainRunConfig(folder=ds, val_fraction=0.2, gradcam=False, preprocess={"size": 16},
                         train={"model": "tiny_cnn", "model_kwargs": {"width": 4}, "input_size": 16,
                                "epochs": 1, "batch_size": 4, "device": "cpu"})
    train_run(cfg, base / "run", progress=False)
    return ds, base / "run"


def fresh(trained, tmp_path: Path) -> Path:
    """A private copy of the dataset and the run (absolute paths rewritten), safe to damage."""
    ds, run = trained
    shutil.copytree(ds, tmp_path / "ds")
    shutil.copytree(run, tmp_path / "run")
    for f in (tmp_path / "run").rglob("*"):
        if f.suffix in (".jsonl", ".json", ".yaml"):
            f.write_text(f.read_text().replace(str(ds), str(tmp_path / "ds")))
    return tmp_path / "run"


def _cut(path: Path, keep: float = 0.5) -> Path:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    return path


def _flip(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_clean_training_run_passes(trained, tmp_path):
    run = fresh(trained, tmp_path)
    problems, counts = audit_run(run)
    assert problems == []
    # the scan manifest and the selection are checked row by row; json, .pt and .npy files whole
    assert counts["manifests"] == 2 and counts["files_checked"] == counts["rows"] > 0
    assert counts["artifacts_checked"] >= 10
    assert CliRunner().invoke(_app(), ["audit", str(run)]).exit_code == 0


def _app():
    from synthmix.cli.app import _register, app

    _register()
    return app


def _deleted_image(run):
    victim = Path(read_jsonl(run / "data" / "manifest.jsonl")[0]["path"])
    victim.unlink()
    return victim, "is missing"


def _truncated_image(run):
    victim = Path(read_jsonl(run / "data" / "manifest.jsonl")[1]["path"])
    return _cut(victim), "does not match the sha256"


def _duplicated_row(run):
    sel = run / "selection.jsonl"
    lines = sel.read_text().splitlines(keepends=True)
    sel.write_text("".join(lines + lines[:1]))
    return sel, "appears 2 times"


FAULTS = {
    "deleted-image": _deleted_image,
    "truncated-image": _truncated_image,
    "duplicated-selection-row": _duplicated_row,
    "truncated-final-weights": lambda run: (_cut(run / "checkpoints" / "final.pt"), "not a complete torch checkpoint"),
    "flipped-byte-checkpoint": lambda run: (_flip(run / "checkpoints" / "last.pt"), "CRC mismatch"),
    "truncated-results": lambda run: (_cut(run / "results.json"), "not valid JSON"),
    "truncated-logits": lambda run: (_cut(run / "eval" / "test" / "logits.npy", 0.8), "(truncated?)"),
    "torn-manifest-line": lambda run: (_cut(run / "data" / "manifest.jsonl", 0.97), "last line is incomplete"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_injected_fault_in_training_run_is_named(trained, tmp_path, fault):
    run = fresh(trained, tmp_path)
    victim, phrase = FAULTS[fault](run)
    problems = errors(audit_run(run)[0])
    assert len(problems) >= 1
    named = [p for p in problems if phrase in p.problem and Path(p.path).name == victim.name]
    assert named, problems
    result = CliRunner().invoke(_app(), ["audit", str(run)])
    assert result.exit_code == 1 and "problem(s)" in result.output


def test_no_hash_still_finds_structural_damage(trained, tmp_path):
    run = fresh(trained, tmp_path)
    _cut(run / "checkpoints" / "final.pt")
    _flip(run / "checkpoints" / "last.pt")  # only a CRC check sees this one
    problems = errors(audit_run(run, check_hashes=False)[0])
    assert [Path(p.path).name for p in problems] == ["final.pt"]


def test_study_run_dir_passes_then_names_each_fault(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from study_helpers import study_dict, tiny_dataset

    from synthmix.experiments.load import parse_study
    from synthmix.experiments.runner import run_study

    data = tiny_dataset(tmp_path / "data", per_class=4, test_per_class=2)
    run = tmp_path / "run"
    summary = run_study(parse_study(study_dict(data, seeds=[0])), run, verbose=False, threads=1)
    assert summary["run"]["failed"] == 0
    problems, counts = audit_run(run)
    assert problems == [] and counts["rows"] > 0 and counts["artifacts_checked"] > 10

    manifest = next(run.rglob("stages/*/manifest.jsonl"))
    victim_img = Path(read_jsonl(manifest)[0]["path"])
    victim_img.unlink()
    done = _cut(next(run.rglob("stages/*/done.json")))
    weights = _cut(next(run.rglob("final.pt")))
    named = {(Path(p.path).name, p.problem.split(" (")[0]) for p in errors(audit_run(run)[0])}
    assert (victim_img.name, f"file of row {read_jsonl(manifest)[0]['id']} in manifest.jsonl is missing") in named
    assert any(n == done.name and "not valid JSON" in why for n, why in named)
    assert any(n == weights.name and "not a complete torch checkpoint" in why for n, why in named)
