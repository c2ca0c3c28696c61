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
    cols = ["test/accuracy", "test/macro_f1", "test/roc_auc", "corruption/accuracy"]
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
        cells.append({**c, "done": m is not None, "metrics": m or {}, "train_info": _train_info(run, c["train"])})
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
        first = members[0]
        rows.append({"setup": setup, "model": model, "n_done": len(done), "n_cells": len(members),
                     "seeds": [c["seed"] for c in done], "metrics": agg, "diff": diff,
                     "control": first.get("control"), "synthetic": first.get("synthetic"),
                     "mix": first.get("mix"), "loss": first.get("loss"), "compute": _compute(done)})
    summary = {"study": plan.get("study"), "reference": ref, "headline": headline_metrics(study, set(metrics)),
               "metrics": metrics, "setups": rows, "cells": cells, "incomplete": incomplete_cells(run),
               "lower_is_better": [k for k in metrics if lower_is_better(k)],
               "data": _data_info(run, plan, study), "budget": study.get("budget") or {"mode": "steps"}}
    summary["baseline"] = baseline_check(summary)
    summary["corruptions"] = corruption_table(summary)
    summary["ood_by_detector"] = ood_detector_table(summary)
    summary["compute_note"] = compute_note(summary)
    from synthmix.experiments.verdict import study_verdict

    summary["verdict"] = study_verdict(run, summary, study)
    return summary


def _train_info(run: Path, key: str) -> dict[str, Any]:
    p = stage_dir(run, key) / "done.json"
    if not p.exists():
        return {}
    done = read_json(p)
    return {**done.get("summary", {}), "seconds": done.get("seconds"), "cpu_seconds": done.get("cpu_seconds")}


def _compute(done: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean optimizer steps, images seen, wall and CPU seconds of a setup's finished cells."""
    import numpy as np

    out = {}
    for k in ("steps", "images_seen", "seconds", "cpu_seconds", "n_real", "n_synthetic", "outliers"):
        v = [c["train_info"].get(k) for c in done if c["train_info"].get(k) is not None]
        if v:
            out[k] = float(np.mean(v))
    out["still_improving"] = sum(bool(c["train_info"].get("still_improving")) for c in done)
    return out


def _data_info(run: Path, plan: dict[str, Any], study: dict[str, Any]) -> dict[str, Any]:
    """Real train images per class (of the classes, not the near-OOD class) and the test set size."""
    from collections import Counter

    from synthmix.data.manifest import read_manifest, resolve_path

    key = plan.get("shared", {}).get("scan")
    done = stage_dir(run, key) / "done.json" if key else None
    if done is None or not done.exists():
        return {}
    manifest = resolve_path(done, read_json(done)["summary"]["manifest"])
    from synthmix.experiments.config import NEAR_OOD_CLASS

    near = (study.get("dataset") or {}).get("near_ood_class", NEAR_OOD_CLASS)
    all_rows = read_manifest(manifest)
    rows = [r for r in all_rows if r.get("source") == "real" and r.get("label") != near]
    train = Counter(r["label"] for r in rows if r.get("split") == "train")
    return {"real_train_counts": dict(sorted(train.items())),
            "n_test": sum(r.get("split") == "test" for r in rows),
            "n_near_ood": sum(1 for r in all_rows if r.get("label") == near)}


def baseline_check(summary: dict[str, Any]) -> dict[str, Any]:
    """Was the real-only reference still improving when its budget ended (validation loss falling)?"""
    ref = next((s for s in summary["setups"] if s["setup"] == summary.get("reference")), None)
    if ref is None or not ref["n_done"]:
        return {}
    n = ref["compute"].get("still_improving", 0)
    return {"setup": ref["setup"], "still_improving": n, "n": ref["n_done"],
            "flag": n * 2 > ref["n_done"],
            "text": (f"The reference {ref['setup']} was still improving at the end of its budget in {n} of "
                     f"{ref['n_done']} seeds (validation loss at its lowest and falling): a longer budget may "
                     "raise it, and every synthetic gain measured against it may shrink.")
            if n * 2 > ref["n_done"] else
            f"The reference {ref['setup']} had converged (validation loss no longer falling) in "
            f"{ref['n_done'] - n} of {ref['n_done']} seeds."}


def compute_note(summary: dict[str, Any]) -> str:
    """One line on training compute: equal steps, or how much it differs between setups."""
    steps = {s["setup"]: s["compute"].get("steps") for s in summary["setups"]
             if s.get("loss") == "ce" and s["compute"].get("steps")}
    if not steps:
        return ""
    lo, hi = min(steps.values()), max(steps.values())
    mode = (summary.get("budget") or {}).get("mode", "steps")
    if hi == lo:
        return f"Equal compute: every cross-entropy cell took {int(lo)} optimizer steps ({mode} budget)."
    return (f"Compute DIFFERS between setups ({mode} budget): {int(lo)} to {int(hi)} optimizer steps "
            f"({hi / lo:.1f}x); differences in results mix the effect of the data with that of training length.")


def incomplete_cells(run_dir: Path) -> list[dict[str, Any]]:
    """Cells without results, each with its state and the first failed stage's message."""
    from synthmix.experiments.status import study_status

    return [{"cell": c["id"], "state": c["state"], "stage": c["stage"], "message": c["message"]}
            for c in study_status(run_dir)["cells"] if c["state"] != "done"]


def ood_detector_table(summary: dict[str, Any]) -> dict[str, Any]:
    """OpenOOD-style: per setup, test accuracy next to the near- and far-OOD group AUROC (and
    FPR@95) of every detector, mean over seeds. ``{"detectors", "groups", "rows": [{"setup",
    "model", "accuracy", "ood": {group: {detector: {"auroc", "fpr95"}}}}]}``; {} without OOD sets."""
    keys = [k.split("/") for k in summary["metrics"] if k.startswith("ood_group/") and k.endswith("/auroc")]
    if not keys:
        return {}
    groups = [g for g in ("near", "far") if any(k[1] == g for k in keys)]
    detectors = list(dict.fromkeys(k[2] for k in keys))
    rows = []
    for s in summary["setups"]:
        m = s["metrics"]

        def mean(key: str, m=m) -> float | None:
            return m[key]["mean"] if key in m else None

        rows.append({"setup": s["setup"], "model": s["model"], "accuracy": mean("test/accuracy"),
                     "ood": {g: {d: {"auroc": mean(f"ood_group/{g}/{d}/auroc"),
                                     "fpr95": mean(f"ood_group/{g}/{d}/fpr95")} for d in detectors} for g in groups}})
    return {"detectors": detectors, "groups": groups, "rows": rows}


def ood_detector_markdown(table: dict[str, Any]) -> str:
    """:func:`ood_detector_table` as markdown: one AUROC table per group."""
    if not table:
        return ""
    out = []
    for g in table["groups"]:
        out.append(f"{g}-OOD AUROC by detector (mean over seeds; test accuracy for reference):\n")
        out.append("| setup | test accuracy | " + " | ".join(table["detectors"]) + " |")
        out.append("|---" * (2 + len(table["detectors"])) + "|")
        for r in table["rows"]:
            vals = [r["ood"][g][d]["auroc"] for d in table["detectors"]]
            best = max((v for v in vals if v is not None), default=None)
            cells = ["–" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in vals]
            acc = "–" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            out.append(f"| {r['setup']} | {acc} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).strip()


def corruption_table(summary: dict[str, Any]) -> dict[str, Any]:
    """Per setup: mean accuracy under each corruption (over severities and seeds) and the mean
    corruption error relative to the reference (Hendrycks & Dietterich: the reference scores 1.0)."""
    import numpy as np

    from synthmix.evaluation.robustness import mce

    names = sorted({k.split("/")[1] for k in summary["metrics"]
                    if k.startswith("corruption/") and k.count("/") == 2 and k.split("/")[1] != "accuracy"})
    if not names:
        return {}
    table: dict[str, dict[str, float]] = {}
    errors: dict[str, dict[str, dict[int, float]]] = {}
    for s in summary["setups"]:
        key = f"{s['setup']}|{s['model']}"
        table[key] = {n: s["metrics"][f"corruption/{n}/accuracy"]["mean"] for n in names
                      if f"corruption/{n}/accuracy" in s["metrics"]}
        errors[key] = {n: {sev: 1 - s["metrics"][f"corruption/{n}/s{sev}/accuracy"]["mean"] for sev in range(1, 6)}
                       for n in names if all(f"corruption/{n}/s{sev}/accuracy" in s["metrics"] for sev in range(1, 6))}
    out: dict[str, Any] = {"corruptions": names, "accuracy": table}
    ref = summary.get("reference")
    refs = [k for k in errors if k.split("|")[0] == ref and errors[k]]
    if refs:
        full = {k: v for k, v in errors.items() if v and set(v) == set(errors[refs[0]])}
        out["mce"] = {k: (None if np.isnan(v) else float(v)) for k, v in mce(full, refs[0]).items()}
    return out
