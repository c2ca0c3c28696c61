"""Mixes: realised ratios are exact, impossible requests fail clearly, selections are auditable."""

from __future__ import annotations

import json
import random

import pytest

from synthmix.core.errors import ConfigError
from synthmix.training.mixes import MixConfig, allocate, select_training_rows, write_selection

CLASSES = ["apple", "banana", "orange"]
REAL = {"apple": 20, "banana": 16, "orange": 14}  # 50 real train rows, unbalanced


def _rows(n_syn: int = 60, role: str = "in_dist"):
    rows = []
    for c, n in REAL.items():
        rows += [{"id": f"r-{c}-{i}", "label": c, "split": "train", "source": "real", "role": None}
                 for i in range(n)]
        rows += [{"id": f"t-{c}-{i}", "label": c, "split": "test", "source": "real", "role": None}
                 for i in range(3)]
        rows += [{"id": f"s-{c}-{i}", "label": c, "split": "train", "source": "embedded", "role": role,
                  "status": "ok", "parent_id": f"r-{c}-{i % n}"} for i in range(n_syn)]
        rows += [{"id": f"x-{c}-{i}", "label": c, "split": "train", "source": "embedded",
                  "role": "reject", "status": "ok"} for i in range(5)]
    return rows


@pytest.mark.parametrize("frac,total,n_real", [(0.9, None, 45), (0.5, None, 25), (0.3, None, 15),
                                               (0.0, None, 0), (0.5, 90, 45), (0.3, 100, 30)])
def test_ratio_mixes_are_exact(frac, total, n_real):
    sel = select_training_rows(_rows(), MixConfig(kind="ratio", real_fraction=frac, total=total), seed=0)
    n = total or 50
    assert sel.n_real == n_real and sel.n_synthetic == n - n_real
    assert sum(r["source"] == "real" for r in sel.rows) == n_real
    assert all(r["split"] == "train" for r in sel.rows)
    assert all(r["role"] != "reject" for r in sel.rows)
    assert sel.real_fraction == pytest.approx(n_real / n)
    # class proportions follow the real train set (largest remainder)
    assert sum(sel.counts["real"].values()) == n_real
    if n_real == 45:
        assert sel.counts["real"] == {"apple": 18, "banana": 14, "orange": 13}


def test_per_real_and_only_kinds():
    sel = select_training_rows(_rows(), MixConfig(kind="per_real", k=2), seed=0)
    assert sel.n_real == 50 and sel.n_synthetic == 100
    assert sel.counts["synthetic"] == {c: 2 * n for c, n in REAL.items()}
    # DA-Fusion semantics: exactly k children of each real parent, never another image's children
    real_ids = {r["id"] for r in sel.rows if r["source"] == "real"}
    per_parent = {}
    for r in sel.rows:
        if r["source"] != "real":
            assert r["parent_id"] in real_ids and r["parent_id"].split("-")[1] == r["label"]
            per_parent[r["parent_id"]] = per_parent.get(r["parent_id"], 0) + 1
    assert set(per_parent.values()) == {2} and len(per_parent) == 50
    sel = select_training_rows(_rows(), MixConfig(kind="synthetic_only"), seed=0)
    assert sel.n_real == 0 and sel.n_synthetic == 50
    sel = select_training_rows(_rows(), MixConfig(kind="real_only"), seed=0)
    assert sel.n_synthetic == 0 and sel.counts["real"] == REAL


def test_equal_class_balance():
    sel = select_training_rows(_rows(), MixConfig(kind="ratio", real_fraction=0.0, total=30,
                                                  class_balance="equal"), seed=0)
    assert sel.counts["synthetic"] == {"apple": 10, "banana": 10, "orange": 10}


def test_not_enough_synthetic_rows_is_a_clear_error():
    # per_real: a parent short of children keeps what it has, and the shortfall is recorded
    sel = select_training_rows(_rows(n_syn=30), MixConfig(kind="per_real", k=2), seed=0)
    assert sel.n_synthetic == 30 + 30 + 28 and sel.requested["short_parents"] == 10 + 2
    orphans = [{**r, "parent_id": None} if r["source"] != "real" else r for r in _rows()]
    with pytest.raises(ConfigError, match="none of the 50 real train images has a synthetic child"):
        select_training_rows(orphans, MixConfig(kind="per_real", k=1), seed=0)
    with pytest.raises(ConfigError, match="not enough synthetic"):
        # only 'reject' rows would be left: the default roles exclude them
        select_training_rows(_rows(role="reject"), MixConfig(kind="ratio", real_fraction=0.5), seed=0)
    with pytest.raises(ConfigError, match="not enough real images"):
        select_training_rows(_rows(), MixConfig(kind="ratio", real_fraction=0.9, total=80), seed=0)


def test_selection_is_seeded_and_independent_of_row_order():
    rows = _rows()
    mix = MixConfig(kind="ratio", real_fraction=0.3)
    a = select_training_rows(rows, mix, seed=1)
    shuffled = rows[:]
    random.Random(5).shuffle(shuffled)
    b = select_training_rows(shuffled, mix, seed=1)
    c = select_training_rows(rows, mix, seed=2)
    ids = lambda s: sorted(r["id"] for r in s.rows)  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_write_selection_for_audit(tmp_path):
    sel = select_training_rows(_rows(), MixConfig(kind="ratio", real_fraction=0.5), seed=0)
    write_selection(sel, tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "selection.jsonl").read_text().splitlines()]
    assert len(lines) == 50 and {"id", "source", "label", "role"} <= lines[0].keys()
    summary = json.loads((tmp_path / "selection.json").read_text())
    assert summary["n_real"] == 25 and summary["real_fraction"] == 0.5
    assert summary["requested"]["real_fraction"] == 0.5


def test_mix_config_validation():
    with pytest.raises(ValueError, match="real_fraction"):
        MixConfig(kind="ratio")
    with pytest.raises(ValueError, match="needs k"):
        MixConfig(kind="per_real")
    with pytest.raises(ValueError):
        MixConfig(kind="real_only", real_fraction=0.5)
    with pytest.raises(ValueError, match="total is only used"):
        MixConfig(kind="per_real", k=1, total=10)
    assert MixConfig(kind="ratio", real_fraction=0.3).label() == "30/70"
    # a mix that asks for synthetic images but could select none would silently equal real-only
    with pytest.raises(ValueError, match="selects no synthetic image"):
        MixConfig(kind="per_real", k=0)
    with pytest.raises(ValueError, match="selects no synthetic image"):
        MixConfig(kind="ratio", real_fraction=1.0)


def test_real_subsets_are_nested_per_seed_and_stratified():
    rows = _rows()
    sets = {f: {r["id"] for r in select_training_rows(rows, MixConfig(real_subset=f), seed=3).rows}
            for f in (0.25, 0.5, 0.75, 1.0)}
    assert sets[0.25] < sets[0.5] < sets[0.75] < sets[1.0]
    assert len(sets[0.25]) == 5 + 4 + 4  # ceil(0.25 * n) per class
    other = {r["id"] for r in select_training_rows(rows, MixConfig(real_subset=0.25), seed=4).rows}
    assert other != sets[0.25]
    assert MixConfig(real_subset=0.25).label() == "real@25%"


def test_allocate_largest_remainder():
    assert allocate(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert allocate(25, {"a": 20, "b": 16, "c": 14}) == {"a": 10, "b": 8, "c": 7}
    assert sum(allocate(7, {"a": 3, "b": 5}).values()) == 7
