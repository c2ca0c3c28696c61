"""Run every case of the bad-input corpus (``corpus.py``) and check docs/reliability.md lists them."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import CASES, markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- corpus:begin -->", "<!-- corpus:end -->"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path):
    """Each case asserts its exact outcome inside ``case.fn``; the outcome it checks is also documented."""
    assert case.outcome.strip(), f"{case.id}: no documented outcome"
    case.fn(tmp_path)


def test_at_least_40_cases_in_every_area():
    areas = {c.area for c in CASES}
    assert len(CASES) >= 40 and areas == {"image", "dataset", "config", "runtime"}


def test_doc_lists_every_case_with_its_outcome():
    text = DOC.read_text(encoding="utf-8")
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown_table().strip(), (
        "docs/reliability.md is out of date: regenerate the table with "
        "`.venv/bin/python tests/reliability/corpus.py`")
