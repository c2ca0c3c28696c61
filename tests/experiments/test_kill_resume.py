"""Killing `synthmix run` mid-grid and running it again: every cell ends done exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_helpers import study_dict, tiny_dataset, write_study

from synthmix.core.io import read_json, read_jsonl

SEEDS = list(range(6))


def run_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "synthmix", "run", str(config), "--out", str(out), "--no-report", "--threads", "1"]


def evaluate_done(run: Path) -> set[str]:
    plan = run / "plan.json"
    if not plan.exists():
        return set()
    keys = {c["evaluate"] for c in read_json(plan)["cells"]}
    return {k for k in keys if (run / "stages" / k / "done.json").exists()}


@pytest.mark.slow
def test_kill_mid_grid_then_resume_runs_each_cell_once(tmp_path):
    data = tiny_dataset(tmp_path / "data", per_class=5, test_per_class=2)
    config = write_study(tmp_path / "study.yaml", study_dict(data, seeds=SEEDS))
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(run_cmd(config, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
    while len(evaluate_done(run)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = evaluate_done(run)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 2 <= len(done_before) < len(SEEDS), "the run must be killed mid-grid"

    second = subprocess.run(run_cmd(config, run), env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]

    plan = read_json(run / "plan.json")
    events = read_jsonl(run / "events.jsonl")
    cell_keys = [k for c in plan["cells"] for k in (c["train"], c["evaluate"])]
    for key in cell_keys + [plan["shared"]["scan"]]:
        assert [e["event"] for e in events if e["key"] == key].count("done") == 1, key
    # Cells finished before the kill were not started again; everything is done now.
    for key in done_before:
        assert [e["event"] for e in events if e["key"] == key].count("start") == 1
    assert evaluate_done(run) == {c["evaluate"] for c in plan["cells"]}
    assert not list(run.glob("stages/*/running.pid"))
    status = subprocess.run([sys.executable, "-m", "synthmix", "status", str(run), "--json"],
                            env=env, capture_output=True, text=True)
    import json

    assert json.loads(status.stdout)["counts"] == {"done": len(SEEDS), "running": 0, "failed": 0, "pending": 0}
