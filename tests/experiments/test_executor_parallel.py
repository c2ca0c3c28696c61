"""``execute(jobs=N)``: cell stages in single-threaded worker processes, the others here, alone."""

from __future__ import annotations

import json
import os
import time

from synthmix.core.io import read_json, read_jsonl
from synthmix.experiments.executor import DONE, PARALLEL_KINDS, Stage, execute, stage_dir


def record(ctx):
    """Sum of the inputs' totals + own value; records which process ran it, when, with how many threads."""
    import torch

    t0 = time.time()
    if ctx.config.get("sleep"):
        time.sleep(ctx.config["sleep"])
    if (ctx.run_dir / f"fail-{ctx.config['value']}").exists():
        raise ValueError("flagged to fail")
    total = ctx.config["value"] + sum(read_json(d / "out.json")["total"] for d in ctx.deps.values())
    (ctx.out_dir / "out.json").write_text(json.dumps({
        "total": total, "pid": os.getpid(), "t0": t0, "t1": time.time(), "threads": torch.get_num_threads(),
        "runtime_threads": ctx.runtime.threads}))
    return {"total": total}


def study_like():
    """scan -> generator (heavy) -> train/evaluate cells; two cells need only the scan."""
    scan = Stage("scan", "scan", {"value": 1}, record)
    gen = Stage("generator", "generator", {"value": 2, "sleep": 0.6}, record, {"scan": scan})
    cells = []
    for i in range(3):
        deps = {"scan": scan} if i < 2 else {"scan": scan, "gen": gen}
        tr = Stage("train", f"train {i}", {"value": 10 * (i + 1), "sleep": 0.3}, record, deps)
        cells.append(Stage("evaluate", f"evaluate {i}", {"value": 100 * (i + 1)}, record, {"train": tr}))
    return scan, gen, cells


def out(run, stage):
    return read_json(stage_dir(run, stage.key) / "out.json")


def test_parallel_run_equals_serial_run_and_cell_stages_run_in_workers(tmp_path):
    scan, gen, cells = study_like()
    serial = execute(tmp_path / "serial", cells)
    par = execute(tmp_path / "par", cells, jobs=2)
    assert par == serial and set(par.values()) == {"ran"} and len(par) == 8
    run = tmp_path / "par"
    stages = {s.label: s for c in cells for s in (c, c.deps["train"])} | {"scan": scan, "generator": gen}
    for s in stages.values():  # the same results, whoever computed them
        assert out(run, s)["total"] == out(tmp_path / "serial", s)["total"]
    me = os.getpid()
    for label, s in stages.items():
        o = out(run, s)
        if s.kind in PARALLEL_KINDS:  # a worker process, one thread, told so by its runtime
            assert o["pid"] != me and o["threads"] == 1 and o["runtime_threads"] == 1, label
        else:
            assert o["pid"] == me, label
    # no cell stage overlaps the heavy stage: it ran alone, with this process's threads
    g = out(run, gen)
    for s in stages.values():
        if s.kind in PARALLEL_KINDS:
            o = out(run, s)
            assert o["t1"] <= g["t0"] or o["t0"] >= g["t1"], s.label
    # two workers did run at the same time (the two cells that need only the scan)
    t0, t1 = out(run, stages["train 0"]), out(run, stages["train 1"])
    assert t0["pid"] != t1["pid"] and max(t0["t0"], t1["t0"]) < min(t0["t1"], t1["t1"])
    # resumable: a second run does nothing
    assert set(execute(run, cells, jobs=2).values()) == {"done"}
    assert sum(e["event"] == "start" for e in read_jsonl(run / "events.jsonl")) == 8


def test_parallel_failure_blocks_only_dependents_and_is_retried(tmp_path):
    scan, gen, cells = study_like()
    (tmp_path / "fail-20").write_text("")  # train 1 fails in its worker
    res = execute(tmp_path, cells, jobs=2)
    bad, blocked = cells[1].deps["train"], cells[1]
    assert res[bad.key] == "failed" and res[blocked.key] == "blocked"
    assert "flagged to fail" in read_json(stage_dir(tmp_path, bad.key) / "failed.json")["message"]
    assert all(res[c.key] == "ran" for c in (cells[0], cells[2]))
    assert not (stage_dir(tmp_path, blocked.key) / DONE).exists()
    (tmp_path / "fail-20").unlink()
    res = execute(tmp_path, cells, jobs=2)
    assert res[bad.key] == "ran" and res[blocked.key] == "ran" and res[cells[0].key] == "done"


def test_parallel_progress_callback_counts_every_stage_once(tmp_path):
    scan, gen, cells = study_like()
    seen = []
    execute(tmp_path, cells, jobs=2, on_stage=lambda i, n, s, st: seen.append((i, n, s.label, st)))
    ends = [x for x in seen if x[3] != "start"]
    assert sorted(i for i, *_ in ends) == list(range(1, 9)) and {n for _, n, *_ in seen} == {8}
    assert sorted(lab for _, _, lab, _ in ends) == sorted(lab for _, _, lab, st in seen if st == "start")
