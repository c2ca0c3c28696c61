"""Splits: stratified, seeded carving of val (and, for unsplit folders, test) from train.

The carve is a pure function of (the rows' ids, labels, fraction, seed): the same data
and seed give the same split on any machine, whatever the order files were listed in.
Per class, ``round(n * fraction)`` rows move, but at least one row always stays in the
source split, and a class with 2+ rows gives at least one row when ``fraction > 0``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from synthmix.core.seeding import derive_seed

SPLITS = ("train", "val", "test")


def carve(rows: Sequence[dict[str, Any]], fraction: float, seed: int, *, source: str = "train",
          target: str = "val") -> list[dict[str, Any]]:
    """Copies of ``rows`` where a stratified random ``fraction`` of ``source`` rows per label get
    ``split = target``. Other rows are unchanged. Order is kept."""
    if not 0 <= fraction < 1:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    by_label: dict[str, list[str]] = {}
    for r in rows:
        if r.get("split") == source:
            by_label.setdefault(r["label"], []).append(r["id"])
    chosen: set[str] = set()
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        n = len(ids)
        k = round(n * fraction)
        if fraction > 0 and n >= 2:
            k = max(1, k)
        k = min(k, n - 1)
        rng = random.Random(derive_seed(seed, target, label))
        chosen.update(rng.sample(ids, k) if k > 0 else [])
    out = []
    for r in rows:
        r = dict(r)
        if r.get("split") == source and r["id"] in chosen:
            r["split"] = target
        out.append(r)
    return out


def classification_rows(rows: Iterable[dict[str, Any]], exclude: Sequence[str] = ("mixed",),
                        split: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows usable for classification: label not in ``exclude`` (``mixed`` photos hold several
    classes: a near-OOD set, not a class), optionally only the given split(s)."""
    splits = None if split is None else ({split} if isinstance(split, str) else set(split))
    return [r for r in rows if r.get("label") not in set(exclude)
            and (splits is None or r.get("split") in splits)]
