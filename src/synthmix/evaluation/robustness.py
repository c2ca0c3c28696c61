"""Corruption robustness: accuracy under each corruption and severity, and the mean corruption
error (mCE) relative to a reference setup (Hendrycks & Dietterich, ICLR 2019).

- ``evaluate_corruptions(model, x_uint8 [N,3,H,W], y [N], ...) -> {corruption: {severity: accuracy}}``
- ``corruption_errors(acc) -> {corruption: {severity: error}}`` (error = 1 - accuracy)
- ``ce_by_corruption(errors_by_setup, reference_setup) -> {setup: {corruption: CE}}`` with
  CE_c^f = sum_s E_{s,c}^f / sum_s E_{s,c}^ref
- ``mce(errors_by_setup, reference_setup) -> {setup: mCE}`` = mean over corruptions of CE_c^f
  (the reference scores 1.0, i.e. 100 %; lower is more robust)
- ``relative_mce(errors_by_setup, clean_error_by_setup, reference_setup)``: the paper's relative
  mCE, sum_s (E_{s,c}^f - E_clean^f) / sum_s (E_{s,c}^ref - E_clean^ref), averaged over c
- ``summarize_corruptions(acc, clean_accuracy)``: the scalar metrics a results file stores.

A corruption on which the reference makes no error at any severity has no CE (division by
zero): it is left out of every setup's mCE and listed under ``skipped`` by :func:`mce_report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from synthmix.evaluation.corruptions import CORRUPTIONS, SEVERITIES, corrupt

Table = Mapping[str, Mapping[int, float]]


def evaluate_corruptions(model, x, y, *, corruptions: Sequence[str] | None = None,
                         severities: Sequence[int] = SEVERITIES, normalization: str = "imagenet",
                         batch_size: int = 256, device: str = "cpu", seed: int = 0) -> dict[str, dict[int, float]]:
    """Accuracy of ``model`` on the corrupted copies of ``x`` (uint8 [N,3,H,W], already at the
    model's input size) with labels ``y`` (int [N]): ``{corruption: {severity: accuracy}}``.

    Corruptions are applied to the uint8 images (as in ImageNet-C, before normalisation) with
    :func:`synthmix.evaluation.corruptions.corrupt` and ``seed``: every model of a study sees the
    same corrupted images. ``corruptions`` defaults to all of ``CORRUPTIONS``."""
    import torch

    names = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"evaluation.corruptions: unknown {unknown}; choose from {', '.join(CORRUPTIONS)}")
    y = torch.as_tensor(y).long().cpu()
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"evaluate_corruptions: {x.shape[0]} images but {y.shape[0]} labels")
    out: dict[str, dict[int, float]] = {}
    for name in names:
        out[name] = {}
        for s in severities:
            xc = corrupt(x, name, int(s), seed)
            pred = predict(model, xc, normalization, batch_size, device)
            out[name][int(s)] = float((pred == y).double().mean())
    return out


def predict(model, x_uint8, normalization: str = "imagenet", batch_size: int = 256,
            device: str = "cpu"):
    """Predicted class [N] (cpu int64) of uint8 images [N,3,H,W]; eval mode, no grad."""
    import torch

    from synthmix.data.augment import normalize, to_float
    from synthmix.evaluation.features import conv_layout

    was = model.training
    model.eval()
    preds = []
    try:
        with torch.no_grad(), conv_layout(model) as layout:
            for i in range(0, x_uint8.shape[0], batch_size):
                xb = normalize(to_float(x_uint8[i:i + batch_size].to(device)), normalization)
                preds.append(model(xb.contiguous(memory_format=layout)).argmax(1).cpu())
    finally:
        model.train(was)
    return torch.cat(preds)


def corruption_errors(acc: Table) -> dict[str, dict[int, float]]:
    """{corruption: {severity: 1 - accuracy}}."""
    return {c: {int(s): 1.0 - float(a) for s, a in sev.items()} for c, sev in acc.items()}


def _int_keys(errors_by_setup: Mapping[str, Table]) -> dict[str, dict[str, dict[int, float]]]:
    """Severity keys as ints (tables read back from JSON have string keys)."""
    return {k: {c: {int(s): float(v) for s, v in sev.items()} for c, sev in t.items()}
            for k, t in errors_by_setup.items()}


def _check_same_grid(errors_by_setup: Mapping[str, Table], reference_setup: str) -> None:
    if reference_setup not in errors_by_setup:
        raise KeyError(f"reference setup {reference_setup!r} not among {sorted(errors_by_setup)}")
    ref = errors_by_setup[reference_setup]
    for setup, table in errors_by_setup.items():
        for c in ref:
            if c not in table or {int(s) for s in table[c]} != {int(s) for s in ref[c]}:
                raise ValueError(f"setup {setup!r}: corruption {c!r} does not have the reference's severities "
                                 f"{sorted(int(s) for s in ref[c])}")


def ce_by_corruption(errors_by_setup: Mapping[str, Table], reference_setup: str) -> dict[str, dict[str, float]]:
    """CE_c^f = sum_s E_{s,c}^f / sum_s E_{s,c}^ref for every setup f and corruption c of the
    reference (NaN when the reference makes no error on c)."""
    errors_by_setup = _int_keys(errors_by_setup)
    _check_same_grid(errors_by_setup, reference_setup)
    ref = errors_by_setup[reference_setup]
    out: dict[str, dict[str, float]] = {}
    for setup, table in errors_by_setup.items():
        out[setup] = {}
        for c, sev in ref.items():
            den = sum(float(v) for v in sev.values())
            num = sum(float(table[c][s]) for s in sev)
            out[setup][c] = num / den if den > 0 else math.nan
    return out


def mce(errors_by_setup: Mapping[str, Table], reference_setup: str) -> dict[str, float]:
    """Mean corruption error of every setup relative to ``reference_setup`` (which scores 1.0):
    the mean over corruptions of :func:`ce_by_corruption`, corruptions with an undefined CE left
    out. ``errors_by_setup``: {setup: {corruption: {severity: error in [0, 1]}}}."""
    ce = ce_by_corruption(errors_by_setup, reference_setup)
    out = {}
    for setup, per in ce.items():
        vals = [v for v in per.values() if not math.isnan(v)]
        out[setup] = sum(vals) / len(vals) if vals else math.nan
    return out


def relative_mce(errors_by_setup: Mapping[str, Table], clean_error_by_setup: Mapping[str, float],
                 reference_setup: str) -> dict[str, float]:
    """Relative mCE: mean over c of sum_s (E_{s,c}^f - E_clean^f) / sum_s (E_{s,c}^ref - E_clean^ref)
    (how much accuracy a setup *loses* under corruption, relative to the reference's loss).
    Corruptions where the reference loses nothing (denominator <= 0) are left out."""
    errors_by_setup = _int_keys(errors_by_setup)
    _check_same_grid(errors_by_setup, reference_setup)
    ref = errors_by_setup[reference_setup]
    ref_clean = float(clean_error_by_setup[reference_setup])
    out = {}
    for setup, table in errors_by_setup.items():
        clean = float(clean_error_by_setup[setup])
        vals = []
        for c, sev in ref.items():
            den = sum(float(v) - ref_clean for v in sev.values())
            if den > 0:
                vals.append(sum(float(table[c][s]) - clean for s in sev) / den)
        out[setup] = sum(vals) / len(vals) if vals else math.nan
    return out


def mce_report(errors_by_setup: Mapping[str, Table], reference_setup: str,
               clean_error_by_setup: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Everything a report table needs: ``{"reference", "mce": {setup: float}, "ce": {setup:
    {corruption: float}}, "relative_mce": {setup: float} (when clean errors are given),
    "skipped": [corruptions without a defined CE]}``."""
    ce = ce_by_corruption(errors_by_setup, reference_setup)
    out: dict[str, Any] = {"reference": reference_setup, "mce": mce(errors_by_setup, reference_setup),
                           "ce": ce, "skipped": sorted(c for c, v in ce[reference_setup].items() if math.isnan(v))}
    if clean_error_by_setup is not None:
        out["relative_mce"] = relative_mce(errors_by_setup, clean_error_by_setup, reference_setup)
    return out


def summarize_corruptions(acc: Table, clean_accuracy: float | None = None) -> dict[str, Any]:
    """Scalar summary of one model's table: ``{"corruption_accuracy": mean over corruptions and
    severities, "accuracy_by_corruption": {c: mean over severities}, "accuracy_by_category":
    {noise|blur|weather|digital: mean}, "accuracy_by_severity": {s: mean over corruptions},
    "clean_accuracy", "corruption_drop": clean - corruption_accuracy}`` (JSON-ready; severities as
    strings)."""
    by_c = {c: sum(sev.values()) / len(sev) for c, sev in acc.items()}
    cats: dict[str, list[float]] = {}
    for c, v in by_c.items():
        cats.setdefault(CORRUPTIONS[c][1] if c in CORRUPTIONS else "other", []).append(v)
    sevs: dict[str, list[float]] = {}
    for sev in acc.values():
        for s, a in sev.items():
            sevs.setdefault(str(int(s)), []).append(float(a))
    mean_all = sum(by_c.values()) / len(by_c) if by_c else math.nan
    return {"corruption_accuracy": mean_all, "accuracy_by_corruption": by_c,
            "accuracy_by_category": {k: sum(v) / len(v) for k, v in cats.items()},
            "accuracy_by_severity": {k: sum(v) / len(v) for k, v in sevs.items()},
            "clean_accuracy": clean_accuracy,
            "corruption_drop": None if clean_accuracy is None else clean_accuracy - mean_all}
