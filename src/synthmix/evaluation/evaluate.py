"""Evaluate a model on a set of images: metrics, plots, Grad-CAM, cached features and logits.

``evaluate_model(model, x_uint8 [N,3,S,S], y [N] | None, classes, out_dir, *, name, ids=None,
gradcam=True, normalization="imagenet", device="cpu") -> dict`` writes into ``out_dir/name/``:

    metrics.json      accuracy, macro precision/recall/F1, ROC-AUC (ovr), ECE, confusion,
                      per-class report (labelled sets only; see evaluation.metrics)
    logits.npy        float32 [N, C]
    features.npy      float32 [N, D]  (forward_features: OOD detectors read this, no re-run)
    labels.npy        int64 [N] (-1 where the label is unknown / not a run class)
    ids.json          the N manifest ids (or indices), in the order of the arrays
    roc.png pr.png confusion.png calibration.png gradcam.png

``y=None`` (or all -1) caches features/logits only, e.g. for an OOD set.

``evaluate_splits(model, rows, classes, out_dir, splits, tensors)`` runs it on each manifest split.
Loading a run directory (``load_run_model``, ``evaluate_run``) lives in
``synthmix.training.rundir``: evaluation never imports training.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthmix.core.io import atomic_path, atomic_write_json, atomic_write_text


def evaluate_model(model, x_uint8, y, classes: Sequence[str], out_dir: str | Path, *, name: str,
                   ids: Sequence[str] | None = None, gradcam: bool = True,
                   normalization: str = "imagenet", batch_size: int = 256, device: str = "cpu",
                   gradcam_per_class: int = 2, seed: int = 0, figures: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` on ``x_uint8`` (labels ``y``); write ``out_dir/name/*``; return the metrics.
    ``figures=False`` writes the arrays and metrics only (no ROC / PR / confusion / calibration /
    Grad-CAM figures: about a second of matplotlib per set, which a study's later seeds skip)."""
    from synthmix.core.paths import safe_join
    from synthmix.evaluation.calibration import plot_reliability
    from synthmix.evaluation.curves import plot_confusion, plot_pr, plot_roc
    from synthmix.evaluation.features import extract
    from synthmix.evaluation.metrics import classification_metrics, softmax

    d = safe_join(out_dir, name)  # a set name like "../x" must not write outside the run
    d.mkdir(parents=True, exist_ok=True)
    n = int(x_uint8.shape[0])
    labels = np.full(n, -1, dtype=np.int64) if y is None else np.asarray(y, dtype=np.int64).copy()
    if labels.shape != (n,):
        raise ValueError(f"{name}: {n} images but labels of shape {labels.shape}")
    ids = [str(i) for i in (ids if ids is not None else range(n))]
    feats, logits = extract(model, x_uint8, normalization, batch_size, device)
    for fname, arr in (("features.npy", feats), ("logits.npy", logits), ("labels.npy", labels)):
        with atomic_path(d / fname, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)
    atomic_write_text(d / "ids.json", json.dumps(ids) + "\n")

    known = labels >= 0
    result: dict[str, Any] = {"name": name, "n": n, "n_labelled": int(known.sum()), "classes": list(classes)}
    if known.any():
        probs = softmax(logits)[known]
        t = labels[known]
        result.update(classification_metrics(probs, t, classes))
        result["n"] = n
    if known.any() and figures:
        plot_roc(probs, t, classes, d / "roc.png", title=name)
        plot_pr(probs, t, classes, d / "pr.png", title=name)
        plot_confusion(result["confusion"], classes, d / "confusion.png", title=name)
        plot_reliability(probs, t, d / "calibration.png", title=name)
        if gradcam:
            from synthmix.evaluation.gradcam import gradcam_figure

            sel = np.flatnonzero(known)
            result["gradcam"] = gradcam_figure(model, x_uint8[sel], t, probs.argmax(1), classes,
                                               d / "gradcam.png", normalization=normalization,
                                               per_class=gradcam_per_class, seed=seed, device=device)
            for p in result["gradcam"]:  # panel index -> manifest id, for the audit trail
                p["id"] = ids[int(sel[p["index"]])]
    atomic_write_json(d / "metrics.json", result)
    return result


def evaluate_splits(model, rows: Sequence[dict[str, Any]], classes: Sequence[str], out_dir: str | Path,
                    splits: Sequence[str], tensors: Callable[[list[dict[str, Any]]], tuple[Any, Any]], *,
                    gradcam: bool = True, normalization: str = "imagenet", device: str = "cpu",
                    seed: int = 0, figure_splits: Sequence[str] | None = None) -> dict[str, dict[str, Any] | None]:
    """:func:`evaluate_model` on the rows of each split in ``splits`` whose label is a class
    (``out_dir/<split>/``); ``tensors(rows) -> (x uint8 [N,3,S,S], y int64 [N])``. Returns
    ``{split: headline metrics}``, None for a split without rows. ``figure_splits``: the splits
    whose figures are drawn (None: every split)."""
    out: dict[str, dict[str, Any] | None] = {}
    wanted = set(classes)
    for split in splits:
        ev_rows = [r for r in rows if r.get("split") == split and r.get("label") in wanted]
        if not ev_rows:
            out[split] = None
            continue
        x, y = tensors(ev_rows)
        m = evaluate_model(model, x, y.numpy(), classes, out_dir, name=split, ids=[r["id"] for r in ev_rows],
                           gradcam=gradcam, normalization=normalization, device=device, seed=seed,
                           figures=figure_splits is None or split in figure_splits)
        out[split] = headline(m)
    return out


HEADLINE = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_ovr", "ece")


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics of an evaluation (for results.json and summary tables)."""
    return {k: metrics.get(k) for k in ("n", *HEADLINE)}
