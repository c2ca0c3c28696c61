"""``synthmix status``: done / running / failed / pending, per cell and per stage, from the run dir alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.io import read_json
from synthmix.experiments.executor import DONE, FAILED, lock_holder, stage_dir
from synthmix.experiments.plan import plan_path

STATES = ("done", "running", "failed", "pending")


def stage_state(run_dir: Path, key: str) -> tuple[str, str | None]:
    """(state, message): running = a lock held by a live process; failed carries its one-line error."""
    d = stage_dir(run_dir, key)
    if (d / DONE).exists():
        return "done", None
    if lock_holder(run_dir, key):
        return "running", None
    if (d / FAILED).exists():
        return "failed", read_json(d / FAILED).get("message")
    return "pending", None


def load_plan(target: str | Path, run_dir: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """The plan of a run dir (its plan.json) or of a study YAML (planned now, nothing run)."""
    target = Path(target)
    if target.is_dir():
        if not plan_path(target).exists():
            from synthmix.core.errors import SynthmixError

            raise SynthmixError(f"{target}: not a run directory (no plan.json); pass the study YAML instead")
        return read_json(plan_path(target)), target
    from synthmix.experiments.config import default_run_dir
    from synthmix.experiments.load import load_study
    from synthmix.experiments.plan import build_plan

    cfg = load_study(target)
    return build_plan(cfg).as_dict(), Path(run_dir) if run_dir else default_run_dir(cfg)


def study_status(target: str | Path, run_dir: str | Path | None = None) -> dict[str, Any]:
    """{run_dir, cells: [{id, state, message, stage}], stages: [...], counts: {state: n}}."""
    plan, run = load_plan(target, run_dir)
    deps = {s["key"]: list(s["deps"].values()) for s in plan["stages"]}
    label = {s["key"]: s["label"] for s in plan["stages"]}
    states = {k: stage_state(run, k) for k in deps}

    def chain(key: str, seen: set[str]) -> list[str]:
        out = []
        for d in deps.get(key, []):
            if d not in seen:
                seen.add(d)
                out += chain(d, seen) + [d]
        return out

    cells = []
    for c in plan["cells"]:
        keys = chain(c["evaluate"], set()) + [c["evaluate"]]
        st, msg, where = states[c["evaluate"]][0], None, None
        if st != "done":
            failed = [k for k in keys if states[k][0] == "failed"]
            running = [k for k in keys if states[k][0] == "running"]
            if failed:
                st, msg, where = "failed", states[failed[0]][1], label[failed[0]]
            elif running:
                st, where = "running", label[running[0]]
            else:
                st = "pending"
        cells.append({"id": c["id"], "state": st, "message": msg, "stage": where,
                      "error_file": str(stage_dir(run, failed[0]) / "error.txt") if st == "failed" else None})
    stages = [{"key": k, "label": label[k], "state": states[k][0], "message": states[k][1]} for k in deps]
    counts = {s: sum(c["state"] == s for c in cells) for s in STATES}
    return {"run_dir": str(run), "study": plan.get("study"), "cells": cells, "stages": stages, "counts": counts}
