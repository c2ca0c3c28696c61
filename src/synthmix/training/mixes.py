"""Training sets as selections of manifest rows: real only, real + synthetic at a ratio,
real + k synthetic per real image, synthetic only.

``select_training_rows(rows, mix, seed, classes=None) -> Selection``

- real rows: ``split == "train"`` and ``source == "real"``;
- synthetic rows: ``source != "real"``, ``role`` in ``mix.synthetic_roles``, ``status`` ok (or
  unset), ``split`` train (or unset);
- ``kind="ratio"``: ``total`` images (default: the number of real train images), of which
  ``round(real_fraction * total)`` are real and the rest synthetic (the fruit study's
  100/0, 50/50, 30/70, 0/100);
- ``kind="per_real"``: every real image + ``k`` of its own synthetic children (rows whose
  ``parent_id`` is that image: DA-Fusion semantics); a parent with fewer children keeps what it
  has (counted in ``short_parents``), one with none is an error when no parent has any;
- ``kind="real_only"`` / ``"synthetic_only"`` (synthetic_only: ``total`` images, default the
  number of real train images);
- ``real_subset=f``: only the first ``ceil(f * n_c)`` real train images of each class, in a
  permutation seeded by ``seed`` alone, so the subsets of one seed are nested (25 % in 50 % ...):
  the "more real data" control.

Each part is split over classes (``class_balance``): ``real_prior`` keeps the class
proportions of the real train set, ``equal`` gives every class the same count (largest
remainder rounding). Rows are drawn per class with a seeded ``random.Random``, from rows
sorted by id, so the selection does not depend on manifest order.

The realised counts are checked against the request (exactly, integers) and a request
that the manifests cannot satisfy raises :class:`ConfigError` with the counts per class:
the fruit study's "mixed" sets silently held no real images; here that cannot happen.
:func:`write_selection` records the selection (``selection.jsonl``: one line per row with
id, source, label, role, path; ``selection.json``: counts and fractions) for audit.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from synthmix.core.config import StrictModel
from synthmix.core.errors import ConfigError, SynthmixError
from synthmix.core.io import atomic_write_json, write_jsonl
from synthmix.core.seeding import derive_seed
from synthmix.data.manifest import SOURCE_REAL


class MixConfig(StrictModel):
    """How the training set mixes real and synthetic rows (see the module docstring)."""

    kind: Literal["ratio", "per_real", "real_only", "synthetic_only"] = "real_only"
    real_fraction: float | None = Field(None, ge=0, le=1, description="ratio: fraction of real images")
    total: int | None = Field(None, ge=1, description="ratio / synthetic_only: size of the training set "
                              "(default: the number of real train images)")
    k: int | None = Field(None, ge=0, description="per_real: synthetic images per real image")
    synthetic_roles: list[str] = Field(default_factory=lambda: ["in_dist", "unsorted"])
    class_balance: Literal["real_prior", "equal"] = "real_prior"
    real_subset: float | None = Field(None, gt=0, le=1, description="keep this fraction of each class's "
                                      "real train images (nested across fractions for a seed)")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> MixConfig:
        if self.kind == "ratio" and self.real_fraction is None:
            raise ValueError("kind 'ratio' needs real_fraction (e.g. 0.5 for 50/50)")
        if self.kind == "per_real" and self.k is None:
            raise ValueError("kind 'per_real' needs k (synthetic images per real image)")
        if self.kind != "ratio" and self.real_fraction is not None:
            raise ValueError(f"real_fraction is only used with kind 'ratio', not {self.kind!r}")
        if self.kind != "per_real" and self.k is not None:
            raise ValueError(f"k is only used with kind 'per_real', not {self.kind!r}")
        if self.kind in ("per_real", "real_only") and self.total is not None:
            raise ValueError(f"total is only used with kinds 'ratio' and 'synthetic_only', not {self.kind!r}")
        # A mix that asks for synthetic images must get some: otherwise it silently equals real-only.
        if self.kind == "per_real" and self.k == 0:
            raise ValueError("per_real with k: 0 selects no synthetic image; use kind real_only")
        if self.kind == "ratio" and self.real_fraction == 1:
            raise ValueError("ratio with real_fraction: 1 selects no synthetic image; use kind real_only")
        return self

    def label(self) -> str:
        """Short human name: ``real``, ``synthetic``, ``50/50``, ``real+2syn``."""
        if self.kind == "ratio":
            r = round(100 * (self.real_fraction or 0))
            return f"{r}/{100 - r}"
        if self.kind == "per_real":
            return f"real+{self.k}syn"
        base = {"real_only": "real", "synthetic_only": "synthetic"}[self.kind]
        return base if self.real_subset is None else f"{base}@{round(100 * self.real_subset)}%"


@dataclass
class Selection:
    """The chosen rows and their counts. ``real_fraction`` is the realised fraction."""

    rows: list[dict[str, Any]]
    counts: dict[str, dict[str, int]]  # {"real": {label: n}, "synthetic": {label: n}}
    n_real: int
    n_synthetic: int
    requested: dict[str, Any] = field(default_factory=dict)

    @property
    def real_fraction(self) -> float:
        return self.n_real / max(1, self.n_real + self.n_synthetic)

    def summary(self) -> dict[str, Any]:
        return {"n_total": self.n_real + self.n_synthetic, "n_real": self.n_real,
                "n_synthetic": self.n_synthetic, "real_fraction": self.real_fraction,
                "counts": self.counts, "requested": self.requested,
                "sources": dict(Counter(r.get("source") for r in self.rows))}


def real_train_rows(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> list[dict[str, Any]]:
    wanted = set(classes)
    return [r for r in rows if r.get("split") == "train" and r.get("source") == SOURCE_REAL
            and r.get("label") in wanted]


def synthetic_rows(rows: Sequence[dict[str, Any]], classes: Sequence[str],
                   roles: Sequence[str]) -> list[dict[str, Any]]:
    wanted, roles = set(classes), set(roles)
    return [r for r in rows if r.get("source") not in (SOURCE_REAL, None) and r.get("role") in roles
            and r.get("status") in (None, "ok") and r.get("split") in (None, "train")
            and r.get("label") in wanted]


def allocate(n: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``n`` over keys proportionally to ``weights`` (largest remainder; ties by name)."""
    total = sum(weights.values())
    if total == 0:
        raise ConfigError("mix: cannot split over classes: every class weight is zero")
    exact = {k: n * w / total for k, w in weights.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    left = n - sum(out.values())
    for k in sorted(weights, key=lambda k: (-(exact[k] - out[k]), k))[:left]:
        out[k] += 1
    return out


def select_training_rows(rows: Sequence[dict[str, Any]], mix: MixConfig, seed: int,
                         classes: Sequence[str] | None = None) -> Selection:
    """Choose the training rows for ``mix`` (see the module docstring). ``classes`` defaults to
    the labels of the real train rows."""
    if classes is None:
        classes = sorted({r["label"] for r in rows if r.get("split") == "train"
                          and r.get("source") == SOURCE_REAL})
    real = real_train_rows(rows, classes)
    if mix.real_subset is not None:
        real = _nested_subset(real, mix.real_subset, seed)
    syn = synthetic_rows(rows, classes, mix.synthetic_roles)
    real_by = _by_label(real)
    syn_by = _by_label(syn)
    if mix.class_balance == "equal" or not real:
        weights = {c: 1 for c in classes}
    else:
        weights = {c: len(real_by.get(c, [])) for c in classes}

    n_real_all = len(real)
    if mix.kind == "real_only":
        want_real, want_syn = {c: len(real_by.get(c, [])) for c in classes}, dict.fromkeys(classes, 0)
    elif mix.kind == "per_real":
        return _per_real(real, syn, mix, seed, classes)
    else:
        total = mix.total if mix.total is not None else n_real_all
        if total == 0:
            raise ConfigError("mix: no real train images to size the mix by; set mix.total")
        frac = 0.0 if mix.kind == "synthetic_only" else float(mix.real_fraction)
        n_real = math.floor(frac * total + 0.5)
        want_real = allocate(n_real, weights) if n_real else dict.fromkeys(classes, 0)
        want_syn = allocate(total - n_real, weights) if total - n_real else dict.fromkeys(classes, 0)

    _check_enough("real", want_real, real_by, mix, "real train rows (split=train, source=real)")
    _check_enough("synthetic", want_syn, syn_by, mix,
                  f"synthetic rows with role in {mix.synthetic_roles} and status ok")
    chosen: list[dict[str, Any]] = []
    for part, want, pool in (("real", want_real, real_by), ("synthetic", want_syn, syn_by)):
        for c in classes:
            ids = sorted(pool.get(c, []), key=lambda r: r["id"])
            rng = random.Random(derive_seed(seed, part, c))
            chosen += rng.sample(ids, want[c]) if want[c] < len(ids) else ids[:want[c]]

    sel_real = sum(1 for r in chosen if r.get("source") == SOURCE_REAL)
    sel_syn = len(chosen) - sel_real
    counts = {"real": {c: 0 for c in classes}, "synthetic": {c: 0 for c in classes}}
    for r in chosen:
        counts["real" if r.get("source") == SOURCE_REAL else "synthetic"][r["label"]] += 1
    # The audit the fruit study lacked: what was realised is exactly what was asked for.
    if counts["real"] != want_real or counts["synthetic"] != want_syn:
        raise SynthmixError(f"mix {mix.label()}: realised counts {counts} differ from the requested "
                            f"real {want_real}, synthetic {want_syn}")
    if mix.kind == "ratio":
        expected = math.floor(float(mix.real_fraction) * (sel_real + sel_syn) + 0.5)
        if sel_real != expected:
            raise SynthmixError(f"mix {mix.label()}: {sel_real} real of {sel_real + sel_syn} images, "
                                f"expected {expected}")
    if not chosen:
        raise ConfigError(f"mix {mix.label()}: the selection is empty (classes {list(classes)})")
    requested = {**mix.model_dump(mode="json"), "seed": seed, "classes": list(classes),
                 "want_real": want_real, "want_synthetic": want_syn}
    return Selection(rows=chosen, counts=counts, n_real=sel_real, n_synthetic=sel_syn, requested=requested)


def _nested_subset(real: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The first ceil(fraction * n_c) rows of each class in a permutation seeded by ``seed`` only."""
    out = []
    for c, rows in sorted(_by_label(real).items()):
        order = sorted(rows, key=lambda r: r["id"])
        random.Random(derive_seed("subset", seed, c)).shuffle(order)
        out += order[:math.ceil(fraction * len(order))]
    return out


def _per_real(real: list[dict[str, Any]], syn: list[dict[str, Any]], mix: MixConfig, seed: int,
              classes: Sequence[str]) -> Selection:
    """Every real row + up to k of its own children (seeded choice among them)."""
    children: dict[str, list[dict[str, Any]]] = {}
    for r in syn:
        if r.get("parent_id") is not None:
            children.setdefault(r["parent_id"], []).append(r)
    chosen: list[dict[str, Any]] = []
    short = 0
    for parent in sorted(real, key=lambda r: r["id"]):
        own = sorted((r for r in children.get(parent["id"], []) if r["label"] == parent["label"]),
                     key=lambda r: r["id"])
        pick = random.Random(derive_seed(seed, "children", parent["id"])).sample(own, mix.k) if len(own) > mix.k else own
        short += len(pick) < mix.k
        chosen += [parent, *pick]
    n_real = len(real)
    n_syn = len(chosen) - n_real
    if n_syn == 0:
        raise ConfigError(f"mix {mix.label()} (per_real): none of the {n_real} real train images has a "
                          f"synthetic child with role in {mix.synthetic_roles} ({len(syn)} synthetic rows "
                          "of those roles, none with a real train parent of its class)")
    counts = {"real": {c: 0 for c in classes}, "synthetic": {c: 0 for c in classes}}
    for r in chosen:
        counts["real" if r.get("source") == SOURCE_REAL else "synthetic"][r["label"]] += 1
    requested = {**mix.model_dump(mode="json"), "seed": seed, "classes": list(classes),
                 "short_parents": short, "realised_k": n_syn / max(1, n_real)}
    return Selection(rows=chosen, counts=counts, n_real=n_real, n_synthetic=n_syn, requested=requested)


def write_selection(selection: Selection, out_dir: str | Path) -> None:
    """``out_dir/selection.jsonl`` (one line per row) and ``out_dir/selection.json`` (counts)."""
    out_dir = Path(out_dir)
    # parent_label + soft_label: a translated row (role translation) trains on {label, parent_label} weights
    keys = ("id", "source", "label", "role", "split", "parent_id", "parent_label", "soft_label", "path")
    write_jsonl(out_dir / "selection.jsonl", ({k: r.get(k) for k in keys} for r in selection.rows))
    atomic_write_json(out_dir / "selection.json", selection.summary())


def _by_label(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r)
    return out


def _check_enough(part: str, want: dict[str, int], pool: dict[str, list], mix: MixConfig, what: str) -> None:
    short = {c: (n, len(pool.get(c, []))) for c, n in want.items() if n > len(pool.get(c, []))}
    if short:
        detail = ", ".join(f"{c}: need {n}, have {have}" for c, (n, have) in sorted(short.items()))
        raise ConfigError(f"mix {mix.label()} ({mix.kind}): not enough {part} images: {detail} "
                          f"(counting {what})")
