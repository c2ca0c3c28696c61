"""Formatting of the answer table: CI text, differences, bold best, the headline sentence."""

from __future__ import annotations

from synthmix.reporting.tables import (
    answer_table,
    fmt_ci,
    fmt_diff,
    headline_sentence,
    markdown_table,
    metric_title,
)


def ci(mean, lo=None, hi=None, n=3):
    return {"mean": mean, "lo": lo, "hi": hi, "n": n}


def test_formats():
    assert fmt_ci(ci(0.91234, 0.9, 0.92)) == "0.912 ± 0.010"
    assert fmt_ci(ci(0.5, n=1)) == "0.500"  # one seed: no interval, none invented
    assert fmt_ci(None) == "–"
    assert fmt_diff(ci(0.031, -0.01, 0.072)) == "Δ +0.031 [-0.010, +0.072]"
    assert fmt_diff(ci(-0.02, n=1)) == "Δ -0.020"
    assert metric_title("ood/near_ood/energy/fpr95") == "near-OOD FPR@95 (energy)"
    assert metric_title("test/macro_f1") == "test macro-F1"


def summary():
    return {"reference": "real", "headline": ["test/accuracy", "ood/near_ood/energy/fpr95"],
            "lower_is_better": ["ood/near_ood/energy/fpr95"],
            "setups": [
                {"setup": "real", "model": "m", "n_done": 3, "n_cells": 3, "diff": {},
                 "metrics": {"test/accuracy": ci(0.80, 0.75, 0.85), "ood/near_ood/energy/fpr95": ci(0.5, 0.4, 0.6)}},
                {"setup": "syn", "model": "m", "n_done": 3, "n_cells": 3,
                 "metrics": {"test/accuracy": ci(0.86, 0.83, 0.89), "ood/near_ood/energy/fpr95": ci(0.6, 0.5, 0.7)},
                 "diff": {"test/accuracy": ci(0.06, 0.01, 0.11), "ood/near_ood/energy/fpr95": ci(0.1, -0.1, 0.3)}},
            ]}


def test_bold_and_significance():
    cols, rows = answer_table(summary())
    assert cols == ["test/accuracy", "ood/near_ood/energy/fpr95"]
    real, syn = rows
    assert real.is_reference and not syn.is_reference
    assert syn.cells[0].bold and not real.cells[0].bold  # higher accuracy is better
    assert real.cells[1].bold and not syn.cells[1].bold  # lower FPR@95 is better
    assert syn.cells[0].significant is True and syn.cells[1].significant is False
    assert real.cells[0].diff == ""


def test_headline_sentence_reports_the_difference_and_its_ci():
    s = headline_sentence(summary())
    assert "syn (m)" in s and "Δ +0.060 [+0.010, +0.110]" in s and "excludes zero" in s
    assert "No cell has finished" in headline_sentence({"setups": []})


def test_markdown_table_values_bold_and_column_choice():
    md = markdown_table(summary()).splitlines()
    assert md[0] == "| setup | seeds | test accuracy | near-OOD FPR@95 (energy) |"
    assert md[2] == "| real (reference) | 3/3 | 0.800 ± 0.050 | **0.500 ± 0.100** |"
    assert md[3] == ("| syn | 3/3 | **0.860 ± 0.030** (Δ +0.060 [+0.010, +0.110]) "
                     "| 0.600 ± 0.100 (Δ +0.100 [-0.100, +0.300]) |")
    only = markdown_table(summary(), metrics=["test/accuracy"]).splitlines()
    assert only[0] == "| setup | seeds | test accuracy |" and only[2] == "| real (reference) | 3/3 | 0.800 ± 0.050 |"
