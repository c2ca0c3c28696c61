from __future__ import annotations

import pytest
from scipy import stats

from synthmix.evaluation.stats import format_ci, mean_ci


@pytest.mark.parametrize("values", [[0.9636, 0.9455, 0.9818], [1.0, 2.0], [0.5, 0.7, 0.6, 0.9, 0.8]])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_mean_ci_matches_scipy_t_interval(values, confidence):
    ci = mean_ci(values, confidence)
    lo, hi = stats.t.interval(confidence, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert ci["mean"] == pytest.approx(sum(values) / len(values))
    assert ci["lo"] == pytest.approx(lo) and ci["hi"] == pytest.approx(hi)
    assert ci["n"] == len(values) and ci["values"] == values


def test_one_value_has_no_interval():
    ci = mean_ci([0.96])
    assert ci["mean"] == 0.96 and ci["lo"] is None and ci["hi"] is None
    assert "undefined" in ci["note"]
    assert "no CI" in format_ci(ci)


def test_identical_values_give_zero_width_and_bad_input_raises():
    ci = mean_ci([0.5, 0.5, 0.5])
    assert ci["lo"] == ci["hi"] == 0.5
    assert "n=3" in format_ci(ci)
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([1, 2], confidence=1.5)
