"""Benchmark helper: the bundled fruits' OOD sets and the OpenOOD-style scoring of a trained model,
shared by benchmarks/ood_training.py (CE with outliers) and benchmarks/supcon_outliers.py (SupCon).

ID = the bundled test split; near-OOD = every `mixed` photo (never trained on); far-OOD = the
offline scikit-image crops; every detector of ``FittedDetectors`` is fitted on the real train
images only."""

from __future__ import annotations

from pathlib import Path


def ood_sets(base, out: Path, size: int):
    """``base``: a prepared TrainRunConfig (manifest, preprocess, cache_dir). Returns (rows, x_of,
    near_x, far_x): the manifest rows, ``x_of(rows, manifest) -> uint8 [N,3,S,S]``, and the near- /
    far-OOD images."""
    from synthmix.data.manifest import read_manifest
    from synthmix.data.tensors import load_tensor
    from synthmix.evaluation.far_ood import build_far_ood

    rows = read_manifest(base.manifest)
    far_rows = build_far_ood(out / "far_ood", size=size)

    def x_of(rs, manifest):
        return load_tensor(rs, manifest, size, preprocess=base.preprocess, cache_dir=base.cache_dir)

    near_x = x_of([r for r in rows if r["label"] == "mixed"], base.manifest)
    far_x = x_of(far_rows, out / "far_ood" / "manifest.jsonl")
    return rows, x_of, near_x, far_x


def score_model(model, classes, rows, x_of, manifest, near_x, far_x) -> dict:
    """{"accuracy", "energy_test_median", "near" / "far": {detector: ood_metrics}} of ``model``."""
    import numpy as np

    from synthmix.data.tensors import label_tensor
    from synthmix.evaluation.features import extract
    from synthmix.evaluation.ood.detectors import FittedDetectors
    from synthmix.evaluation.ood.metrics import ood_metrics
    from synthmix.evaluation.ood.posthoc import LinearHead

    tr = [r for r in rows if r["split"] == "train" and r["source"] == "real" and r["label"] in classes]
    te = [r for r in rows if r["split"] == "test" and r["label"] in classes]
    f_tr, _ = extract(model, x_of(tr, manifest))
    det = FittedDetectors.fit(f_tr, label_tensor(tr, classes).numpy(), head=LinearHead.from_model(model))
    f_te, z_te = extract(model, x_of(te, manifest))
    s_id = det.score(f_te, z_te)
    entry = {"accuracy": float((z_te.argmax(1) == label_tensor(te, classes).numpy()).mean()),
             "energy_test_median": float(np.median(-np.log(np.exp(z_te).sum(1))))}
    for name, xs in (("near", near_x), ("far", far_x)):
        f, z = extract(model, xs)
        s = det.score(f, z)
        entry[name] = {d: ood_metrics(s_id[d], s[d]) for d in det.names}
    return entry
