"""The thesis setups through the real stages on a tiny folder: embedded generator (a few steps),
CE real-only, SupCon real-only and SupCon + in-dist positives + near-OOD negatives."""

from __future__ import annotations

import pytest
from study_helpers import study_dict, tiny_dataset

from synthmix.core.io import read_json
from synthmix.experiments.load import parse_study
from synthmix.experiments.runner import run_study


@pytest.mark.slow
def test_supcon_setups_with_generated_negatives(tmp_path):
    data = tiny_dataset(tmp_path / "data", per_class=4, test_per_class=2)
    d = study_dict(data, seeds=[0])
    d["generators"] = {"embedded": {
        "type": "embedded", "batch_size": 32,
        "train": {"resolution": 16, "steps": 3, "batch_size": 8, "model": {"size": "tiny"}, "sample_every": 0,
                  "sample_steps": 2, "warmup_steps": 1, "checkpoint_every": 3},
        "generate": {"steps": 3, "img2img_per_parent": 1, "in_dist_strengths": [0.3],
                     "near_ood_strengths": [0.8]}}}
    d["contrastive"] = {"epochs": 1, "m_per_class": 2, "batches_per_epoch": 1, "probe_epochs": 1,
                        "model_kwargs": {"width": 4}}
    d["setups"] += [{"name": "supcon-real", "loss": "supcon"},
                    {"name": "supcon+id+nood", "loss": "supcon", "generator": "embedded",
                     "near_ood_negatives": True}]
    summary = run_study(parse_study(d), tmp_path / "run", verbose=False, threads=1)
    assert summary["run"]["failed"] == 0 and summary["run"]["blocked"] == 0, summary["run"]
    cells = {c["setup"]: c for c in summary["cells"]}
    for name in ("real", "supcon-real", "supcon+id+nood"):
        m = cells[name]["metrics"]
        assert 0 <= m["test/accuracy"] <= 1 and "ood/near_ood/energy/auroc" in m, name
    # the SupCon run used the generated images: positives and near-OOD negatives
    train = read_json(tmp_path / "run" / "stages" / cells["supcon+id+nood"]["train"] / "done.json")["summary"]
    res = read_json(tmp_path / "run" / "stages" / cells["supcon+id+nood"]["train"] / train["run"] / "results.json")
    assert train["thesis_setup"] == "in_dist_near_ood"
    assert res["counts"]["in_dist"] > 0 and res["counts"]["near_ood_negatives"] > 0
    diff = {r["setup"]: r for r in summary["setups"]}["supcon-real"]["diff"]
    assert diff["test/accuracy"]["n"] == 1  # one seed: a difference without an interval
