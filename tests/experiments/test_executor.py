"""The stage executor on small real functions: once per key, resumable, failures contained, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from synthmix.core.io import read_json, read_jsonl
from synthmix.experiments.executor import DONE, ERROR, FAILED, LOCK, Stage, execute, stage_dir
from synthmix.experiments.status import stage_state


def write_sum(ctx):
    """Sum the inputs' totals plus this stage's own value; write it as the stage output."""
    total = ctx.config["value"] + sum(read_json(d / "out.json")["total"] for d in ctx.deps.values())
    (ctx.out_dir / "out.json").write_text(json.dumps({"total": total}))
    return {"total": total}


def fail_if_flagged(ctx):
    if (ctx.run_dir / "fail-flag").exists():
        (ctx.out_dir / "partial.txt").write_text("half")
        raise ValueError("flagged to fail\nsecond line")
    return write_sum(ctx)


def diamond():
    a = Stage("scan", "a", {"value": 1}, write_sum)
    b = Stage("train", "b", {"value": 10}, write_sum, {"a": a})
    c = Stage("train", "c", {"value": 100}, fail_if_flagged, {"a": a})
    d = Stage("evaluate", "d", {"value": 1000}, write_sum, {"b": b, "c": c})
    e = Stage("evaluate", "e", {"value": 5}, write_sum, {"b": b})
    return a, b, c, d, e


def starts(run):
    return [e["label"] for e in read_jsonl(run / "events.jsonl") if e["event"] == "start"]


def test_each_stage_runs_once_and_rerun_does_nothing(tmp_path):
    a, b, c, d, e = diamond()
    out = execute(tmp_path, [d, e])
    assert set(out.values()) == {"ran"}
    assert sorted(starts(tmp_path)) == ["a", "b", "c", "d", "e"]  # shared a and b ran once
    assert read_json(stage_dir(tmp_path, d.key) / "out.json")["total"] == 1000 + 11 + 101
    assert read_json(stage_dir(tmp_path, d.key) / DONE)["summary"] == {"total": 1112}
    again = execute(tmp_path, [d, e])
    assert set(again.values()) == {"done"}
    assert len(starts(tmp_path)) == 5


def test_keys_follow_config_and_dependencies():
    a, b, c, d, e = diamond()
    a2 = Stage("scan", "a", {"value": 2}, write_sum)
    b2 = Stage("train", "b", {"value": 10}, write_sum, {"a": a2})
    assert Stage("scan", "renamed label", {"value": 1}, write_sum).key == a.key  # label is not identity
    assert a2.key != a.key and b2.key != b.key  # upstream change propagates
    assert Stage("train", "b", {"value": 10}, write_sum, {"a": a}).key == b.key
    assert b.key.startswith("train-")


def test_failure_is_recorded_blocks_dependents_only_and_is_retried(tmp_path):
    (tmp_path / "fail-flag").write_text("1")
    a, b, c, d, e = diamond()
    out = execute(tmp_path, [d, e])
    assert out[c.key] == "failed" and out[d.key] == "blocked"
    assert out[e.key] == "ran" and out[b.key] == "ran"  # the other branch went on
    failed = read_json(stage_dir(tmp_path, c.key) / FAILED)
    assert failed["message"] == "ValueError: flagged to fail"  # one line
    assert "Traceback" in (stage_dir(tmp_path, c.key) / ERROR).read_text()
    assert not (stage_dir(tmp_path, c.key) / DONE).exists()  # partial output is not "done"
    assert stage_state(tmp_path, c.key) == ("failed", "ValueError: flagged to fail")
    (tmp_path / "fail-flag").unlink()
    out = execute(tmp_path, [d, e])
    assert out[c.key] == "ran" and out[d.key] == "ran" and out[b.key] == "done"
    assert not (stage_dir(tmp_path, c.key) / FAILED).exists()
    assert not (stage_dir(tmp_path, c.key) / "partial.txt").exists()  # a failed attempt's debris is cleared
    assert starts(tmp_path).count("c") == 2 and starts(tmp_path).count("b") == 1


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    a = Stage("scan", "a", {"value": 1}, write_sum)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    d = stage_dir(tmp_path, a.key)
    d.mkdir(parents=True)
    import socket

    (d / LOCK).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname()}))
    assert stage_state(tmp_path, a.key)[0] == "pending"
    assert execute(tmp_path, [a])[a.key] == "ran"
    assert not (d / LOCK).exists()


def test_stage_locked_by_a_live_process_is_left_to_it(tmp_path):
    a = Stage("scan", "a", {"value": 1}, write_sum)
    b = Stage("train", "b", {"value": 1}, write_sum, {"a": a})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        d = stage_dir(tmp_path, a.key)
        d.mkdir(parents=True)
        (d / LOCK).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        assert stage_state(tmp_path, a.key)[0] == "running"
        out = execute(tmp_path, [b], wait_for_others=False)
        assert out == {a.key: "busy", b.key: "busy"}
        assert not (d / DONE).exists()
    finally:
        other.kill()
        other.wait()
    assert execute(tmp_path, [b])[b.key] == "ran"  # the holder died: its lock is stale now


def test_done_marker_is_written_after_outputs(tmp_path):
    seen = {}

    def check(ctx):
        seen["done_during_run"] = (ctx.out_dir / DONE).exists()
        (ctx.out_dir / "x.txt").write_text("x")
        return None

    s = Stage("scan", "s", {}, check)
    execute(tmp_path, [s])
    assert seen == {"done_during_run": False}
    assert (stage_dir(tmp_path, s.key) / DONE).exists()
    assert os.listdir(stage_dir(tmp_path, s.key)).count(LOCK) == 0


@pytest.mark.parametrize("bad", [KeyboardInterrupt])
def test_interrupt_is_not_swallowed(tmp_path, bad):
    def boom(ctx):
        raise bad()

    s = Stage("scan", "s", {}, boom)
    with pytest.raises(bad):
        execute(tmp_path, [s])
    assert not (stage_dir(tmp_path, s.key) / LOCK).exists()
    assert stage_state(tmp_path, s.key)[0] == "pending"
