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

``evaluate_run(run_dir, *, split="test" | folder=Path, name=None) -> dict`` loads a run made
by ``synthmix.training.train.train_run`` (config.yaml, classes.json,
checkpoints/final.pt) and evaluates it on a manifest split or on another ImageFolder
(classes matched by name, see ``evaluation.crossdata``), writing to ``run_dir/eval/<name>/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthmix.core.errors import DataError
from synthmix.core.io import atomic_path, atomic_write_json, atomic_write_text, read_json


def evaluate_model(model, x_uint8, y, classes: Sequence[str], out_dir: str | Path, *, name: str,
                   ids: Sequence[str] | None = None, gradcam: bool = True,
                   normalization: str = "imagenet", batch_size: int = 256, device: str = "cpu",
                   gradcam_per_class: int = 2, seed: int = 0) -> dict[str, Any]:
    """Evaluate ``model`` on ``x_uint8`` (labels ``y``); write ``out_dir/name/*``; return the metrics."""
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


def load_run_model(run_dir: str | Path):
    """(model with final weights, TrainRunConfig, classes) of a finished run."""
    from synthmix.models import create_model
    from synthmix.training.checkpoint import load_weights
    from synthmix.training.train import load_run_config

    run_dir = Path(run_dir)
    for f in ("config.yaml", "classes.json", "checkpoints/final.pt"):
        if not (run_dir / f).exists():
            raise DataError(run_dir / f, "missing: not a finished training run directory")
    cfg = load_run_config(run_dir)
    classes = read_json(run_dir / "classes.json")
    model = create_model(cfg.train.model, len(classes), **cfg.train.model_args())
    load_weights(run_dir / "checkpoints" / "final.pt", model)
    model.eval()
    return model, cfg, classes


def evaluate_run(run_dir: str | Path, *, split: str = "test", folder: str | Path | None = None,
                 name: str | None = None, gradcam: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a finished run on ``split`` of its manifest, or on the ImageFolder ``folder``."""
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.training.train import load_rows

    run_dir = Path(run_dir)
    model, cfg, classes = load_run_model(run_dir)
    size, norm = cfg.train.input_size, cfg.train.normalization
    if folder is not None:
        from synthmix.evaluation.crossdata import evaluate_folder

        return evaluate_folder(model, folder, classes, run_dir / "eval", name=name, input_size=size,
                               normalization=norm, preprocess=cfg.preprocess, gradcam=gradcam,
                               device=device)
    rows = [r for r in load_rows(cfg) if r.get("split") == split and r.get("label") in set(classes)]
    if not rows:
        raise DataError(cfg.manifest or run_dir, f"no rows of split {split!r} with a class of the run "
                        f"({', '.join(classes)})")
    x = load_tensor(rows, cfg.manifest, size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir)
    y = label_tensor(rows, classes)
    return evaluate_model(model, x, y.numpy(), classes, run_dir / "eval", name=name or split,
                          ids=[r["id"] for r in rows], gradcam=gradcam, normalization=norm, device=device)


HEADLINE = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_ovr", "ece")


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics of an evaluation (for results.json and summary tables)."""
    return {k: metrics.get(k) for k in ("n", *HEADLINE)}
