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
