"""Stage ``evaluate``: a trained cell's flat ``metrics.json`` and ``scores.npz``.

- classification metrics of the run's test (and val) split and of every extra ID folder;
- OOD (OpenOOD v1.5 protocol): detectors fitted on the REAL TRAIN features of the cell's own
  model only, ID = the real test split, OOD sets = the near-OOD class photos, the offline far-OOD
  set and every ``evaluation.extra`` folder with ``ood: true``; per set and detector AUROC,
  AUPR-in/out and FPR@95, and per group (near / far) their mean;
- with ``evaluation.full_spectrum``, the same OOD metrics with every extra ID folder (same classes,
  another source: covariate shift) pooled with the test split as ID (``ood_fs/...``,
  ``ood_fs_group/...``): a detector that flags shifted images of known classes loses here;
- ``scores.npz``: per-image arrays the verdict's bootstrap resamples (test labels and predictions,
  every detector's score on test and on each OOD set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.io import atomic_path, atomic_write_json, read_json
from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import StageContext
from synthmix.experiments.grid import Cell
from synthmix.experiments.stages.common import dep_path

# Keys of evaluation.evaluate metrics -> names in the study's tables.
METRIC_KEYS = {"accuracy": "accuracy", "f1_macro": "macro_f1", "roc_auc_ovr": "roc_auc",
               "precision_macro": "macro_precision", "recall_macro": "macro_recall", "ece": "ece"}


def config(cfg: StudyConfig, cell: Cell) -> dict[str, Any]:
    from synthmix.experiments.stages.scan import fingerprint

    ev = cfg.evaluation
    return {"near_ood_class": cfg.near_ood_class if ev.near_ood else None,
            "detectors": list(ev.detectors), "gradcam": ev.gradcam, "corruptions": ev.corruptions,
            "figures": cell.seed == cfg.seeds[0],
            "full_spectrum": ev.full_spectrum,  # OOD histograms: the first seed's (as the train stage)
            "extra": [{**e.model_dump(), "fingerprint": fingerprint(Path(e.path))} for e in ev.extra]}


def ood_groups(c: dict[str, Any], sets: list[str]) -> dict[str, list[str]]:
    """near: the near-OOD class + extra folders of group near; far: the far-OOD set + group far."""
    groups: dict[str, list[str]] = {"near": [], "far": []}
    for s in sets:
        if s == "near_ood":
            groups["near"].append(s)
        elif s == "far_ood":
            groups["far"].append(s)
    for e in c["extra"]:
        if e["ood"] and e["name"] in sets and e.get("group"):
            groups[e["group"]].append(e["name"])
    return {g: v for g, v in groups.items() if v}


def _flat(prefix: str, m: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{new}": float(m[old]) for old, new in METRIC_KEYS.items()
            if isinstance(m.get(old), (int, float))}


def _image_rows(folder: Path) -> list[dict[str, Any]]:
    """Rows (absolute paths) of every image under ``folder``: an OOD folder has no classes to match."""
    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.data.images import is_image_file
    from synthmix.data.manifest import new_row

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))
    return [new_row(id=short_id(sha256_file(p)), path=str(p.resolve()), label=None, split="ood", source="real")
            for p in files]


def run(ctx: StageContext) -> dict[str, Any]:
    import numpy as np

    from synthmix.data.manifest import read_manifest
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.evaluate import evaluate_model
    from synthmix.evaluation.ood.detectors import FittedDetectors
    from synthmix.evaluation.ood.histograms import plot_score_histograms
    from synthmix.evaluation.ood.metrics import group_metrics, ood_metrics
    from synthmix.evaluation.ood.posthoc import LinearHead
    from synthmix.training.rundir import load_run_model

    c = ctx.config
    train_dir = dep_path(ctx, "train", "run")
    model, tcfg, classes = load_run_model(train_dir)
    size, norm, dev = tcfg.train.input_size, tcfg.train.normalization, ctx.runtime.concrete_device()
    cache = ctx.run_dir / "cache"
    out = ctx.out_dir / "eval"
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        p = train_dir / "eval" / split / "metrics.json"
        if p.exists():
            metrics.update(_flat(split, read_json(p)))

    def outputs(rows, manifest, name):
        # Unlabelled (y=None): features + logits are cached, no plots (these sets are not classified).
        x = load_tensor(rows, manifest, size, preprocess=tcfg.preprocess, cache_dir=cache)
        evaluate_model(model, x, None, classes, out, name=name, ids=[r["id"] for r in rows], gradcam=False,
                       normalization=norm, device=dev)
        return np.load(out / name / "features.npy"), np.load(out / name / "logits.npy")

    scan = dep_path(ctx, "scan")
    rows = read_manifest(scan)
    ood_sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if c["near_ood_class"]:
        near = [r for r in rows if r["label"] == c["near_ood_class"]]
        if near:
            ood_sets["near_ood"] = outputs(near, scan, "near_ood")
    if "far_ood" in ctx.deps:
        far = dep_path(ctx, "far_ood")
        ood_sets["far_ood"] = outputs(read_manifest(far), far, "far_ood")
    shifted_id: list[str] = []  # extra ID folders: pooled with the test split for full-spectrum OOD
    for e in c["extra"]:
        if e["ood"]:
            ood_sets[e["name"]] = outputs(_image_rows(Path(e["path"])), None, e["name"])
        else:
            shifted_id.append(e["name"])
            from synthmix.evaluation.crossdata import evaluate_folder

            m = evaluate_folder(model, e["path"], classes, out, name=e["name"], input_size=size,
                                normalization=norm, preprocess=tcfg.preprocess, gradcam=c["gradcam"],
                                figures=c["figures"],
                                device=dev)
            metrics.update(_flat(e["name"], m))

    test_dir = train_dir / "eval" / "test"
    labels = np.load(test_dir / "labels.npy")
    test_logits = np.load(test_dir / "logits.npy")
    arrays: dict[str, np.ndarray] = {"test/labels": labels, "test/pred": test_logits.argmax(1)}
    if ood_sets:
        train_rows = [r for r in rows if r.get("split") == "train" and r.get("source") == "real"
                      and r["label"] in set(classes)]
        tr_feat, _ = outputs(train_rows, scan, "train")
        tr_lab = label_tensor(train_rows, classes).numpy()
        head = LinearHead.from_model(model) if {"vim", "react"} & set(c["detectors"]) else None
        detectors = FittedDetectors.fit(tr_feat, tr_lab, head=head)  # TRAIN features only
        id_scores = detectors.score(np.load(test_dir / "features.npy"), test_logits, c["detectors"])
        hist: dict[str, dict[str, np.ndarray]] = {d: {"test (ID)": id_scores[d]} for d in c["detectors"]}
        per_set: dict[str, dict[str, dict[str, float]]] = {d: {} for d in c["detectors"]}
        for d in c["detectors"]:
            arrays[f"test/{d}"] = id_scores[d]
        for name, (feat, logits) in ood_sets.items():
            scores = detectors.score(feat, logits, c["detectors"])
            for d in c["detectors"]:
                per_set[d][name] = ood_metrics(id_scores[d], scores[d])
                metrics.update({f"ood/{name}/{d}/{k}": v for k, v in per_set[d][name].items()})
                hist[d][name] = scores[d]
                arrays[f"{name}/{d}"] = scores[d]
        groups = ood_groups(c, list(ood_sets))
        for d in c["detectors"]:
            for g, m in group_metrics(per_set[d], groups).items():
                metrics.update({f"ood_group/{g}/{d}/{k}": v for k, v in m.items() if k != "n_sets"})
        if c.get("full_spectrum") and shifted_id:
            metrics.update(_full_spectrum(detectors, c, id_scores, hist, groups, out, shifted_id))
        if c["figures"]:
            plot_score_histograms(hist, ctx.out_dir / "ood_hist.png", title="OOD scores")
    if c["corruptions"]:
        metrics.update(_corruptions(model, rows, scan, test_dir, classes, tcfg, cache, dev, arrays))
    with atomic_path(ctx.out_dir / "scores.npz", suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    atomic_write_json(ctx.out_dir / "metrics.json", metrics)
    return {"n_metrics": len(metrics), "scores": "scores.npz"}


def _full_spectrum(detectors, c, id_scores, ood_scores, groups, out: Path, shifted: list[str]) -> dict[str, float]:
    """OOD metrics with the test split and the extra ID folders ``shifted`` (their features and
    logits cached in ``out/<name>/``) pooled as ID; ``ood_scores[d][set]``: each OOD set's scores."""
    import numpy as np

    from synthmix.evaluation.ood.metrics import full_spectrum_metrics, group_metrics

    extra = {d: [] for d in c["detectors"]}
    for name in shifted:
        s = detectors.score(np.load(out / name / "features.npy"), np.load(out / name / "logits.npy"), c["detectors"])
        for d in c["detectors"]:
            extra[d].append(s[d])
    metrics: dict[str, float] = {}
    for d in c["detectors"]:
        per_set = {name: full_spectrum_metrics([id_scores[d], *extra[d]], ood_scores[d][name])
                   for name in ood_scores[d] if name != "test (ID)"}
        for name, m in per_set.items():
            metrics.update({f"ood_fs/{name}/{d}/{k}": v for k, v in m.items()})
        for g, m in group_metrics(per_set, groups).items():
            metrics.update({f"ood_fs_group/{g}/{d}/{k}": v for k, v in m.items() if k != "n_sets"})
    return metrics


def _corruptions(model, rows, scan, test_dir, classes, tcfg, cache, dev, arrays) -> dict[str, float]:
    """Test accuracy under every ImageNet-C-style corruption at 5 severities (the same corrupted
    images for every cell: fixed seed); per-image mean correctness goes to ``arrays`` so the
    verdict can bootstrap it like clean accuracy."""
    import json

    import numpy as np

    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.corruptions import CORRUPTIONS, SEVERITIES
    from synthmix.evaluation.robustness import predict

    by_id = {r["id"]: r for r in rows}
    test_rows = [by_id[i] for i in json.loads((test_dir / "ids.json").read_text())]
    x = load_tensor(test_rows, scan, tcfg.train.input_size, preprocess=tcfg.preprocess, cache_dir=cache)
    y = label_tensor(test_rows, classes).numpy()
    combos = [(name, sev) for name in CORRUPTIONS for sev in SEVERITIES]
    xc = _corrupted_test_set(x, combos, cache)  # the same images for every cell: made once per run
    ok_all = predict(model, xc, tcfg.train.normalization, device=dev).numpy().reshape(len(combos), -1) == y
    out: dict[str, float] = {}
    correct = ok_all.sum(0).astype(float)
    for name in CORRUPTIONS:
        accs = []
        for sev in SEVERITIES:
            accs.append(float(ok_all[combos.index((name, sev))].mean()))
            out[f"corruption/{name}/s{sev}/accuracy"] = accs[-1]
        out[f"corruption/{name}/accuracy"] = float(np.mean(accs))
    correct /= len(CORRUPTIONS) * len(SEVERITIES)
    arrays["corruption/correct"] = correct
    out["corruption/accuracy"] = float(correct.mean())
    return out


def _corrupted_test_set(x, combos: list[tuple[str, int]], cache: Path):
    """uint8 [len(combos) * N, 3, S, S]: ``x`` under each (corruption, severity) in turn, seed 0.
    Every cell of a study scores the same corrupted images, so they are made once and kept in the
    run's cache, keyed by the test images' bytes and the combinations (written atomically: two
    workers racing write the same file)."""
    import hashlib

    import torch

    from synthmix.evaluation.corruptions import corrupt

    key = hashlib.sha256(x.contiguous().numpy().tobytes() + repr(combos).encode()).hexdigest()[:16]
    path = cache / f"corrupted-test-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    xc = torch.cat([corrupt(x, name, sev, seed=0) for name, sev in combos])
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(xc, tmp)
    return xc
