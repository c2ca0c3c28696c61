"""SIGKILL ``synthmix train`` (tiny_cnn, CPU) at seeded-random epochs and during evaluation, re-run
it, and compare with an uninterrupted run: equal final weights, equal metrics, a clean audit.

Progress is observed from ``checkpoints/last.pt`` (its ``next_epoch``, read when the file is
replaced) and from ``checkpoints/final.pt`` (training over, evaluation running): no sleeps.
Each child imports torch, so the test is marked slow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from helpers import kill_at, kill_points, run_to_end, synthmix_cmd

from synthmix.audit import audit_run, errors
from synthmix.core.io import read_json

EPOCHS = 6


class EpochsDone:
    """Callable progress probe: epochs finished according to ``last.pt`` (re-read when replaced)."""

    def __init__(self, run: Path):
        self.path = run / "checkpoints" / "last.pt"
        self.key, self.value = None, 0

    def __call__(self) -> int:
        import torch

        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        key = (st.st_ino, st.st_mtime_ns)
        if key != self.key:
            # os.replace is atomic: we open either the old file or the new one, never a partial one.
            self.value = int(torch.load(self.path, map_location="cpu", weights_only=True)["next_epoch"])
            self.key = key
        return self.value


def write_config(tmp_path: Path) -> Path:
    from conftest import make_imagefolder

    ds = make_imagefolder(tmp_path / "ds", per_class={"apple": 6, "banana": 6}, test_per_class=2, size=(20, 16))
    cfg = {"folder": str(ds), "val_fraction": 0.2, "gradcam": False, "eval_splits": ["val", "test"],
           "preprocess": {"size": 16},
           "train": {"model": "tiny_cnn", "model_kwargs": {"width": 4}, "input_size": 16, "epochs": EPOCHS,
                     "batch_size": 4, "device": "cpu", "num_threads": 1, "augment": {"hflip": 0.5}}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(run: Path) -> dict:
    import torch

    return torch.load(run / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_training_survives_sigkill_and_ends_with_the_same_weights(tmp_path):
    import torch

    cfg = write_config(tmp_path)
    ref = tmp_path / "ref"
    run_to_end(synthmix_cmd("train", str(cfg), "--out", str(ref), "--no-progress"))

    run = tmp_path / "killed"
    cmd = synthmix_cmd("train", str(cfg), "--out", str(run), "--no-progress")
    seen = []
    for k in kill_points(11, 1, EPOCHS - 1, 2):
        probe = EpochsDone(run)
        kill = kill_at(cmd, lambda k=k, probe=probe: probe() >= k, f"epochs>={k}")
        assert kill.returncode in (-9, 0), kill.stderr
        seen.append((kill.reached, kill.returncode, EpochsDone(run)()))
        assert not (run / "results.json").exists() or kill.returncode == 0
    # and once more while evaluating: training is over (final.pt written), results.json not yet
    final = run / "checkpoints" / "final.pt"
    kill = kill_at(cmd, final.exists, "final.pt written (evaluating)")
    assert kill.returncode in (-9, 0), kill.stderr
    assert any(r and rc == -9 for r, rc, _ in seen), seen

    out = run_to_end(cmd)
    assert "run:" in out.stdout
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = read_json(ref / "results.json"), read_json(run / "results.json")
    assert ra["eval"] == rb["eval"]
    strip = ("seconds",)
    assert [{k: v for k, v in h.items() if k not in strip} for h in ra["fit"]["history"]] == \
        [{k: v for k, v in h.items() if k not in strip} for h in rb["fit"]["history"]]
    assert rb["fit"]["epochs_run"] == EPOCHS
    problems = audit_run(run)[0]
    assert errors(problems) == [], problems
