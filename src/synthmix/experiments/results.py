"""Aggregate a run's saved cell metrics: per setup (and model) over seeds, mean with 95 % CI,
and the seed-paired difference to the reference (real-only) setup with its CI.

Reads only files in the run dir (plan.json, study.yaml, each evaluate stage's metrics.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.io import read_json
from synthmix.experiments.executor import stage_dir
from synthmix.experiments.plan import plan_path

# Metrics where lower is better (best-in-column is the minimum).
LOWER_IS_BETTER = ("fpr95",)


def lower_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def headline_metrics(study: dict[str, Any], available: set[str]) -> list[str]:
    """The table's columns, in order: test accuracy / macro-F1 / ROC-AUC, then OOD AUROC + FPR@95
    of the primary detector on the near-OOD set, the far-OOD set and any extra OOD folder."""
    ev = study.get("evaluation", {})
    det = ev.get("primary_detector", "energy")
    cols = ["test/accuracy", "test/macro_f1", "test/roc_auc"]
    ood_sets = ["near_ood", "far_ood"] + [e["name"] for e in ev.get("extra", []) if e.get("ood")]
    for e in ev.get("extra", []):
        if not e.get("ood"):
            cols.append(f"{e['name']}/accuracy")
    for s in ood_sets:
        cols += [f"ood/{s}/{det}/auroc", f"ood/{s}/{det}/fpr95"]
    return [c for c in cols if c in available]


def cell_metrics(run_dir: Path, evaluate_key: str) -> dict[str, float] | None:
    p = stage_dir(run_dir, evaluate_key) / "metrics.json"
    if not (stage_dir(run_dir, evaluate_key) / "done.json").exists() or not p.exists():
        return None
    return {k: float(v) for k, v in read_json(p).items() if isinstance(v, (int, float))}


def aggregate(run_dir: str | Path) -> dict[str, Any]:
    """The study's answer as a JSON-able dict (written to results/summary.json by the runner)."""
    import yaml

    from synthmix.evaluation.stats import mean_ci

    run = Path(run_dir)
    plan = read_json(plan_path(run))
    study = yaml.safe_load((run / "study.yaml").read_text()) if (run / "study.yaml").exists() else {}
    ref = plan.get("reference")
    cells = []
    for c in plan["cells"]:
        m = cell_metrics(run, c["evaluate"])
        cells.append({**c, "done": m is not None, "metrics": m or {}})
    metrics = sorted({k for c in cells for k in c["metrics"]})
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["setup"], c["model"]), []).append(c)
    rows = []
    for (setup, model), members in groups.items():
        done = [c for c in members if c["done"]]
        agg = {k: mean_ci([c["metrics"][k] for c in done if k in c["metrics"]])
               for k in metrics if any(k in c["metrics"] for c in done)}
        diff = {}
        if ref is not None and setup != ref and (ref, model) in groups:
            ref_by_seed = {c["seed"]: c["metrics"] for c in groups[(ref, model)] if c["done"]}
            for k in agg:
                d = [c["metrics"][k] - ref_by_seed[c["seed"]][k] for c in done
                     if k in c["metrics"] and k in ref_by_seed.get(c["seed"], {})]
                if d:
                    diff[k] = mean_ci(d)
        rows.append({"setup": setup, "model": model, "n_done": len(done), "n_cells": len(members),
                     "seeds": [c["seed"] for c in done], "metrics": agg, "diff": diff})
    return {"study": plan.get("study"), "reference": ref, "headline": headline_metrics(study, set(metrics)),
            "metrics": metrics, "setups": rows, "cells": cells, "incomplete": incomplete_cells(run),
            "lower_is_better": [k for k in metrics if lower_is_better(k)]}


def incomplete_cells(run_dir: Path) -> list[dict[str, Any]]:
    """Cells without results, each with its state and the first failed stage's message."""
    from synthmix.experiments.status import study_status

    return [{"cell": c["id"], "state": c["state"], "stage": c["stage"], "message": c["message"]}
            for c in study_status(run_dir)["cells"] if c["state"] != "done"]
