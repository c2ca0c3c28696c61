"""``synthmix check``'s rules on a summary (the quick demo exercises the whole command)."""

from __future__ import annotations

import pytest

from synthmix.experiments import check


def _summary(**compute):
    setup = {"setup": "real+oe-nood", "n_done": 3, "n_cells": 3, "synthetic": True, "loss": "ce",
             "control": None, "compute": compute}
    return {"incomplete": [], "setups": [setup], "verdict": {"comparisons": [{}]}}


@pytest.mark.parametrize("compute, bad", [({"n_synthetic": 0.0}, True), ({"n_synthetic": 0.0, "outliers": 187.0}, False),
                                          ({"n_synthetic": 55.0}, False), ({}, True)])
def test_a_synthetic_setup_must_train_on_synthetic_rows_or_outliers(tmp_path, monkeypatch, compute, bad):
    import synthmix.experiments.results as results

    monkeypatch.setattr(results, "aggregate", lambda run: _summary(**compute))
    said = check.problems(tmp_path)
    assert ("setup real+oe-nood asks for synthetic images but trained on none" in said) == bad
    assert any("report.html is missing" in p for p in said)  # no report in an empty folder


def test_ood_by_detector_table_holds_every_detector_and_group_with_accuracy():
    from synthmix.experiments.results import ood_detector_markdown, ood_detector_table

    def st(v):
        return {"mean": v, "lo": v, "hi": v}

    metrics = {"test/accuracy": st(0.9), "ood_group/near/msp/auroc": st(0.8), "ood_group/near/msp/fpr95": st(0.5),
               "ood_group/near/energy/auroc": st(0.7), "ood_group/far/msp/auroc": st(0.95)}
    summary = {"metrics": sorted(metrics), "setups": [{"setup": "real", "model": "cnn", "metrics": metrics},
                                                      {"setup": "oe", "model": "cnn", "metrics": {}}]}
    t = ood_detector_table(summary)
    assert t["groups"] == ["near", "far"] and set(t["detectors"]) == {"msp", "energy"}
    real, oe = t["rows"]
    assert real["accuracy"] == 0.9 and real["ood"]["near"]["msp"] == {"auroc": 0.8, "fpr95": 0.5}
    assert real["ood"]["far"]["energy"]["auroc"] is None and oe["accuracy"] is None
    md = ood_detector_markdown(t)
    assert "| real | 0.900 |" in md and "**0.800**" in md and "far-OOD AUROC by detector" in md
    assert ood_detector_table({"metrics": ["test/accuracy"], "setups": []}) == {} and ood_detector_markdown({}) == ""
