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
                     "near_ood_negatives": True},
                    {"name": "supcon+oe-nood", "loss": "supcon", "generator": "embedded",
                     "outliers": {"source": "synthetic_role", "roles": ["near_ood"], "loss": "oe"}}]
    d["controls"] = {"enabled": False}
    summary = run_study(parse_study(d), tmp_path / "run", verbose=False, threads=1)
    assert summary["run"]["failed"] == 0 and summary["run"]["blocked"] == 0, summary["run"]
    cells = {c["setup"]: c for c in summary["cells"]}
    for name in ("real", "supcon-real", "supcon+id+nood"):
        m = cells[name]["metrics"]
        assert 0 <= m["test/accuracy"] <= 1 and "ood/near_ood/energy/auroc" in m, name
    # the SupCon run used the generated images: positives and near-OOD negatives
    train = read_json(tmp_path / "run" / "stages" / cells["supcon+id+nood"]["train"] / "done.json")["summary"]
    res = read_json(tmp_path / "run" / "stages" / cells["supcon+id+nood"]["train"] / train["run"] / "results.json")
    assert res["selection"]["n_synthetic_positives"] > 0 and res["selection"]["n_near_ood_negatives"] > 0
    assert train["n_synthetic"] == res["selection"]["n_synthetic"] > 0
    # SupCon + OE: the generator's near-OOD images are the outliers (negatives + the probe's OE term)
    train = read_json(tmp_path / "run" / "stages" / cells["supcon+oe-nood"]["train"] / "done.json")["summary"]
    res = read_json(tmp_path / "run" / "stages" / cells["supcon+oe-nood"]["train"] / train["run"] / "results.json")
    assert train["outliers"] == res["outliers"]["n"] > 0 and res["outliers"]["source"] == "synthetic_role"
    assert "ood/near_ood/energy/auroc" in cells["supcon+oe-nood"]["metrics"]
    diff = {r["setup"]: r for r in summary["setups"]}["supcon-real"]["diff"]
    assert diff["test/accuracy"]["n"] == 1  # one seed: a difference without an interval


@pytest.mark.slow
def test_supcon_without_synthetic_rows_fails_loudly_and_null_near_ood_class_is_a_class(tmp_path):
    """A SupCon setup whose generator's curated images hold no in_dist row fails (it must never
    silently equal supcon-real); near_ood_class: null means `mixed` is an ordinary class."""
    data = tiny_dataset(tmp_path / "data", per_class=4, test_per_class=2)
    d = study_dict(data, seeds=[0], controls={"enabled": False})
    d["dataset"]["near_ood_class"] = None
    d["generators"] = {"embedded": {
        "type": "embedded", "batch_size": 32,
        "train": {"resolution": 16, "steps": 2, "batch_size": 8, "model": {"size": "tiny"}, "sample_every": 0,
                  "sample_steps": 2, "warmup_steps": 1, "checkpoint_every": 2},
        # only near-OOD images are made: the in_dist role a supcon+id setup needs stays empty
        "generate": {"steps": 2, "img2img_per_parent": 0, "interp_per_class": 2}}}
    d["contrastive"] = {"epochs": 1, "m_per_class": 2, "batches_per_epoch": 1, "probe_epochs": 1,
                        "model_kwargs": {"width": 4}}
    d["curation"] = {"enabled": False}
    d["evaluation"]["near_ood"] = False
    d["setups"] += [{"name": "supcon-real", "loss": "supcon"},
                    {"name": "supcon+id", "loss": "supcon", "generator": "embedded"}]
    summary = run_study(parse_study(d), tmp_path / "run", verbose=False, threads=1)
    bad = {c["cell"]: c for c in summary["incomplete"]}
    assert list(bad) == ["supcon+id/tiny_cnn/s0"], bad
    assert "in_dist" in bad["supcon+id/tiny_cnn/s0"]["message"]
    cells = {c["setup"]: c for c in summary["cells"]}
    run = tmp_path / "run" / "stages" / cells["supcon-real"]["train"] / "run"
    assert "mixed" in read_json(run / "classes.json")
