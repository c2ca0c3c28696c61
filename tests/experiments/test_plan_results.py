"""Grid expansion, shared stage keys, and aggregation of saved cell metrics (mean, CI, paired diff)."""

from __future__ import annotations

import json

import pytest
from study_helpers import study_dict, tiny_dataset

from synthmix.core.io import atomic_write_json
from synthmix.experiments.executor import DONE, stage_dir
from synthmix.experiments.grid import expand
from synthmix.experiments.load import parse_study
from synthmix.experiments.plan import build_plan
from synthmix.experiments.results import aggregate
from synthmix.experiments.runner import prepare
from synthmix.experiments.status import study_status

GEN = {"embedded": {"type": "embedded", "train": {"steps": 1, "model": {"size": "tiny"}},
                    "generate": {"img2img_per_parent": 1}}}


@pytest.fixture
def data(tmp_path):
    return tiny_dataset(tmp_path / "data", per_class=2, test_per_class=1)


def grid_study(data, seeds=(0, 1, 2), controls=False, **over):
    d = study_dict(data, seeds=list(seeds), generators=GEN, controls={"enabled": controls}, **over)
    d["models"].append({"name": "tiny_cnn", "label": "tiny8", "args": {"width": 8}})
    d["setups"] += [{"name": "mix50", "generator": "embedded", "mix": {"kind": "ratio", "real_fraction": 0.5}},
                    {"name": "pre-ft", "generator": "embedded", "schedule": "pretrain_finetune", "models": ["tiny8"]}]
    d["curation"] = {"enabled": True}
    return parse_study(d)


def test_grid_crosses_setups_models_seeds(data):
    cfg = grid_study(data)
    ids = [c.id for c in expand(cfg)]
    assert len(ids) == (2 + 2 + 1) * 3 and len(set(ids)) == len(ids)
    assert "pre-ft/tiny8/s2" in ids and "pre-ft/tiny_cnn/s0" not in ids


def test_shared_stages_have_one_key(data):
    plan = build_plan(grid_study(data))
    kinds = {}
    for s in plan.stages():
        kinds.setdefault(s.kind, set()).add(s.key)
    assert len(kinds["scan"]) == 1 and len(kinds["generator"]) == 1 and len(kinds["generate"]) == 1
    assert len(kinds["curate"]) == 1
    # the curation classifier is the reference cell real/tiny_cnn/s0: same key, trained once
    real0 = next(c for c in plan.cells if c.cell.id == "real/tiny_cnn/s0")
    assert plan.shared["curation_classifier"].key == real0.train.key
    assert len(kinds["train"]) == len(plan.cells) == 15


def test_controls_are_added_automatically_with_equal_budgets(data):
    cfg = grid_study(data, controls=True)
    setups = {c.setup.name: c.setup for c in expand(cfg)}
    assert {"real+aug1", "real@25%", "real@50%", "real@75%"} <= set(setups)
    assert setups["real+aug1"].control == "augment" and setups["real+aug1"].mix.kind == "per_real"
    assert setups["real@50%"].mix.real_subset == 0.5 and not setups["real@50%"].uses_synthetic
    plan = build_plan(cfg)
    assert "classical:1" in plan.shared
    budgets = {c.train.config["budget"]["epochs_over_real"] for c in plan.cells}
    assert budgets == {1}  # one budget for every CE cell (training.epochs of the study)
    # the budget splits: pretrain + fine-tune = one budget, whatever each stage's data holds
    from synthmix.experiments.stages.train import step_budget

    pre = next(c for c in plan.cells if c.cell.setup.name == "pre-ft").train.config
    joint = next(c for c in plan.cells if c.cell.setup.name == "mix50").train.config
    assert sum(s for s in step_budget(pre, 20) if s) == step_budget(joint, 20)[0] == 3  # ceil(20 / 8)
    # a study without synthetic setups gets no controls beyond itself
    plain = parse_study(study_dict(data))
    assert [c.setup.name for c in expand(plain)] == ["real", "real"]


def test_adding_a_seed_keeps_every_existing_key(data):
    before = {s.key for s in build_plan(grid_study(data, seeds=(0, 1))).stages()}
    after = {s.key for s in build_plan(grid_study(data, seeds=(0, 1, 2))).stages()}
    assert before < after
    assert len(after - before) == 2 * 5  # train + evaluate of the 5 new cells


def test_changing_generation_settings_rekeys_only_downstream(data):
    a = build_plan(grid_study(data))
    d = grid_study(data)
    gen = d.generators["embedded"].model_copy(update={"generate": {"img2img_per_parent": 2}})
    b = build_plan(d.model_copy(update={"generators": {"embedded": gen}}))
    ka = {s.label: s.key for s in a.stages()}
    kb = {s.label: s.key for s in b.stages()}
    assert ka["train generator embedded"] == kb["train generator embedded"]
    assert ka["train real/tiny_cnn/s1"] == kb["train real/tiny_cnn/s1"]
    assert ka["generate embedded"] != kb["generate embedded"]
    assert ka["train mix50/tiny_cnn/s0"] != kb["train mix50/tiny_cnn/s0"]


def fake_done(run, key, metrics):
    d = stage_dir(run, key)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / "metrics.json", metrics)
    atomic_write_json(d / DONE, {"summary": {}})


def test_aggregate_mean_ci_and_seed_paired_difference(tmp_path, data):
    import numpy as np
    from scipy import stats

    d = study_dict(data, seeds=[0, 1, 2], generators=GEN, controls={"enabled": False})
    d["setups"].append({"name": "mix50", "generator": "embedded", "mix": {"kind": "ratio", "real_fraction": 0.5}})
    cfg, plan, run = prepare(parse_study(d), tmp_path / "run")
    acc = {("real", 0): 0.80, ("real", 1): 0.70, ("real", 2): 0.75,
           ("mix50", 0): 0.85, ("mix50", 1): 0.78}  # mix50 seed 2 not done
    for c in plan.cells:
        key = (c.cell.setup.name, c.cell.seed)
        if key in acc:
            fake_done(run, c.evaluate.key, {"test/accuracy": acc[key], "ood/near_ood/energy/fpr95": 0.5})
    summary = aggregate(run)
    rows = {r["setup"]: r for r in summary["setups"]}
    real = rows["real"]["metrics"]["test/accuracy"]
    vals = np.array([0.80, 0.70, 0.75])
    half = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / np.sqrt(3)
    assert real["mean"] == pytest.approx(vals.mean()) and real["hi"] - real["mean"] == pytest.approx(half)
    diff = rows["mix50"]["diff"]["test/accuracy"]
    assert diff["n"] == 2 and diff["mean"] == pytest.approx(((0.85 - 0.80) + (0.78 - 0.70)) / 2)
    assert rows["mix50"]["n_done"] == 2 and rows["mix50"]["n_cells"] == 3
    assert rows["real"]["diff"] == {}
    assert summary["headline"] == ["test/accuracy", "ood/near_ood/energy/fpr95"]
    assert summary["lower_is_better"] == ["ood/near_ood/energy/fpr95"]
    st = study_status(run)
    assert st["counts"] == {"done": 5, "running": 0, "failed": 0, "pending": 1}
    json.dumps(summary)  # JSON-able
