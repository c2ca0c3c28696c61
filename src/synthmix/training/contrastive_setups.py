"""The thesis's three setups × seeds from one config: accuracy and OOD detection, mean ± CI.

Setups (``ThesisConfig.setups``):

- ``real_only``: SupCon on real train images;
- ``in_dist``: + synthetic rows of role ``in_dist`` (extra positives of their class, and
  probe-training rows);
- ``in_dist_near_ood``: + synthetic rows of role ``near_ood`` as negatives only (never anchors,
  never positives; hard negatives of their parent class);
- ``ce``: (when ``ce_baseline`` is set) the cross-entropy loop (``training.loop.fit``) with the
  same backbone on real train images.

Evaluation per run (never on data the model trained on): accuracy on the real TEST split;
OOD detectors (MSP, energy, kNN, Mahalanobis) fit on REAL TRAIN features, ID = real test
images, OOD sets = the real ``mixed`` photos (never trained on), held-out synthetic near-OOD
images (whole parent families held out of every setup's training), and far-OOD crops of
scikit-image's sample images. Each run directory has the layout of ``training.train``
(config.yaml, classes.json, checkpoints/final.pt, eval/<set>/...), so ``evaluate_run`` and
``synthmix curate --model`` work on it. Finished runs (results.json) are skipped; a killed run
resumes from its checkpoint.

Run: ``python -m synthmix.training.contrastive_setups CONFIG.yaml --out DIR``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from synthmix.core.config import StrictModel
from synthmix.data.preprocess import PreprocessConfig
from synthmix.training.config import TrainConfig
from synthmix.training.contrastive import ContrastiveConfig

Setup = Literal["real_only", "in_dist", "in_dist_near_ood", "ce"]
DETECTORS = ("msp", "energy", "knn", "mahalanobis")


class ThesisConfig(StrictModel):
    """Everything the thesis comparison needs (YAML: configs/thesis-contrastive.yaml)."""

    manifest: Path = Field(description="real manifest with train/val/test splits (and the OOD class)")
    synthetic_manifests: list[Path] = Field(default_factory=list, description="rows with role in_dist / near_ood")
    far_ood_manifest: Path | None = Field(None, description="None: crops of skimage sample images are built")
    ood_label: str = Field("mixed", description="real rows of this label form the real near-OOD set")
    setups: list[Setup] = Field(default_factory=lambda: ["real_only", "in_dist", "in_dist_near_ood"])
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    holdout_fraction: float = Field(0.3, ge=0, lt=1, description="near-OOD parent families held out for evaluation")
    contrastive: ContrastiveConfig = Field(default_factory=ContrastiveConfig)
    ce_baseline: TrainConfig | None = Field(None, description="settings of the CE run (setup 'ce')")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    cache_dir: Path | None = None
    knn_k: int = Field(10, ge=1)
    headline_detector: Literal["msp", "energy", "knn", "mahalanobis"] = "knn"
    num_threads: int | None = Field(None, ge=1)
    plots: bool = Field(True, description="test-set curves and OOD score histograms (PNG)")


def _split_rows(cfg: ThesisConfig) -> dict[str, Any]:
    """Real and synthetic rows of every role the runs need, with absolute paths."""
    from synthmix.core.errors import DataError
    from synthmix.data.manifest import read_manifest, resolve_path

    def load(mp: Path) -> list[dict[str, Any]]:
        return [{**r, "path": str(resolve_path(mp, r["path"]))} for r in read_manifest(mp)]

    real = [r for r in load(cfg.manifest) if r.get("source") == "real"]
    classes = sorted({r["label"] for r in real if r.get("split") == "train" and r["label"] != cfg.ood_label})
    if len(classes) < 2:
        raise DataError(cfg.manifest, f"need >= 2 classes in split train besides {cfg.ood_label!r}, got {classes}")
    by = {s: [r for r in real if r.get("split") == s and r["label"] in classes] for s in ("train", "val", "test")}
    if not by["test"]:
        raise DataError(cfg.manifest, "no real test rows: accuracy and OOD need a test split")
    ood_real = [r for r in real if r["label"] == cfg.ood_label]
    train_ids = {r["id"] for r in by["train"]}
    syn: list[dict[str, Any]] = []
    for mp in cfg.synthetic_manifests:
        syn += [r for r in load(mp) if r.get("source") != "real" and r.get("status") in (None, "ok")]
    skipped = [r for r in syn if r.get("parent_id") is not None and r["parent_id"] not in train_ids]
    if skipped:  # a child of a val/test image would leak evaluation images into training
        raise DataError(skipped[0]["path"], f"synthetic row's parent {skipped[0]['parent_id']} is not a real "
                        f"train image ({len(skipped)} such rows): generate only from train images")
    in_dist = [r for r in syn if r.get("role") == "in_dist" and r.get("label") in classes]
    near = [r for r in syn if r.get("role") == "near_ood" and (r.get("parent_label") or r.get("label")) in classes]
    parents = sorted({r.get("parent_id") or r["id"] for r in near})
    held = set(random.Random("near-ood-holdout").sample(parents, round(len(parents) * cfg.holdout_fraction)))
    near_train = [r for r in near if (r.get("parent_id") or r["id"]) not in held]
    near_held = [r for r in near if (r.get("parent_id") or r["id"]) in held]
    return {"classes": classes, **by, "ood_real": ood_real, "in_dist": in_dist,
            "near_train": near_train, "near_held": near_held}


def _tensor(rows, cfg: ThesisConfig):
    import torch

    from synthmix.data.tensors import load_tensor

    size = cfg.contrastive.input_size
    if not rows:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    pre = cfg.preprocess.model_copy(update={"size": size})
    return load_tensor(rows, None, size, preprocess=pre, cache_dir=cfg.cache_dir)


def _evaluate(model, sets: dict[str, Any], classes: list[str], run_dir: Path, cfg: ThesisConfig) -> dict[str, Any]:
    """Accuracy on test, OOD metrics of every detector on every OOD set, histograms."""
    import numpy as np

    from synthmix.evaluation.evaluate import evaluate_model
    from synthmix.evaluation.features import extract
    from synthmix.evaluation.ood.detectors import FittedDetectors
    from synthmix.evaluation.ood.histograms import plot_score_histograms
    from synthmix.evaluation.ood.metrics import ood_metrics

    norm = cfg.contrastive.normalization
    x_tr, y_tr = sets["train"]
    f_tr, _ = extract(model, x_tr, norm)
    det = FittedDetectors.fit(f_tr, y_tr.numpy(), k=cfg.knn_k)  # TRAIN features only
    x_te, y_te = sets["test"]
    out_dir = run_dir / "eval"
    if cfg.plots:
        test = evaluate_model(model, x_te, y_te.numpy(), classes, out_dir, name="test", gradcam=False,
                              normalization=norm)
    else:  # cache features/logits only (no ROC/PR/confusion PNGs): accuracy from the logits
        evaluate_model(model, x_te, None, classes, out_dir, name="test", gradcam=False, normalization=norm)
    te = np.load(out_dir / "test" / "features.npy"), np.load(out_dir / "test" / "logits.npy")
    if not cfg.plots:
        test = {"accuracy": float((te[1].argmax(1) == y_te.numpy()).mean()), "n": len(y_te)}
    id_scores = det.score(*te)
    ood: dict[str, Any] = {}
    hist: dict[str, dict[str, Any]] = {d: {"test (ID)": id_scores[d]} for d in DETECTORS}
    for name in ("mixed", "syn_near_ood", "far_ood"):
        x = sets[name]
        if len(x) == 0:
            continue
        evaluate_model(model, x, None, classes, out_dir, name=name, gradcam=False, normalization=norm)
        s = det.score(np.load(out_dir / name / "features.npy"), np.load(out_dir / name / "logits.npy"))
        ood[name] = {"n": len(x), **{d: ood_metrics(id_scores[d], s[d]) for d in DETECTORS}}
        for d in DETECTORS:
            hist[d][name] = s[d]
    if cfg.plots:
        plot_score_histograms(hist, run_dir / "ood_scores.png", title=run_dir.parent.name + "/" + run_dir.name)
    return {"accuracy": test["accuracy"], "n_test": test["n"], "ood": ood}


def _write_run_layout(run_dir: Path, model, classes: list[str], cfg: ThesisConfig, train: TrainConfig) -> None:
    """config.yaml / classes.json / checkpoints/final.pt as ``training.train`` writes them."""
    from synthmix.core.io import atomic_write_json
    from synthmix.training.checkpoint import save_weights
    from synthmix.training.train import TrainRunConfig, save_run_config

    run_cfg = TrainRunConfig(manifest=cfg.manifest, synthetic_manifests=cfg.synthetic_manifests,
                             exclude_classes=[cfg.ood_label], train=train, preprocess=cfg.preprocess,
                             eval_splits=["test"], gradcam=False).resolved()
    save_run_config(run_cfg, run_dir)
    atomic_write_json(run_dir / "classes.json", classes)
    save_weights(run_dir / "checkpoints" / "final.pt", model)


def run_one(setup: str, seed: int, cfg: ThesisConfig, rows: dict[str, Any], sets: dict[str, Any],
            run_dir: Path) -> dict[str, Any]:
    """Train and evaluate one (setup, seed); returns (and writes) results.json."""
    import time

    import torch

    from synthmix.core.config import dump_yaml
    from synthmix.core.io import atomic_write_json, read_json
    from synthmix.data.tensors import label_tensor
    from synthmix.training.contrastive import ContrastiveData, train_contrastive

    if (run_dir / "results.json").exists():
        return read_json(run_dir / "results.json")
    run_dir.mkdir(parents=True, exist_ok=True)
    classes = rows["classes"]
    t0 = time.perf_counter()
    c = cfg.contrastive.model_copy(update={"seed": seed})
    if setup == "ce":
        from synthmix.models import create_model
        from synthmix.training.loop import fit

        tcfg = (cfg.ce_baseline or TrainConfig()).model_copy(update={
            "model": c.model, "model_kwargs": c.model_kwargs, "input_size": c.input_size,
            "normalization": c.normalization, "seed": seed})
        torch.manual_seed(seed)
        model = create_model(tcfg.model, len(classes), **tcfg.model_args())
        val = sets["val"] if len(sets["val"][0]) else None
        res = fit(model, sets["train"], val, tcfg, run_dir, progress=False)
        history = res.history
        counts = {"real": len(rows["train"])}
    else:
        use_in = setup in ("in_dist", "in_dist_near_ood")
        use_neg = setup == "in_dist_near_ood"
        train_rows = rows["train"] + (rows["in_dist"] if use_in else []) + (rows["near_train"] if use_neg else [])
        x = torch.cat([sets["train"][0]] + ([sets["in_dist"]] if use_in else [])
                      + ([sets["near_train"]] if use_neg else []))
        lab = [r["label"] if r.get("role") != "near_ood" else (r.get("parent_label") or r["label"])
               for r in train_rows]
        y = label_tensor([{"label": v} for v in lab], classes)
        neg = torch.tensor([r.get("role") == "near_ood" for r in train_rows])
        fam = [r.get("parent_id") or r["id"] for r in train_rows]
        n_probe = len(rows["train"]) + (len(rows["in_dist"]) if use_in else 0)
        data = ContrastiveData(x, y, neg, y.clone(), family=fam)
        res = train_contrastive(data, x[:n_probe], y[:n_probe], len(classes), c,
                                checkpoint=run_dir / "checkpoints" / "contrastive_last.pt")
        model, history = res.model, res.history
        tcfg = TrainConfig(model=c.model, model_kwargs=c.model_kwargs, input_size=c.input_size,
                           normalization=c.normalization, seed=seed, epochs=max(1, c.epochs))
        dump_yaml(c, run_dir / "contrastive.yaml")
        counts = {"real": len(rows["train"]), "in_dist": len(rows["in_dist"]) if use_in else 0,
                  "near_ood_negatives": len(rows["near_train"]) if use_neg else 0}
    train_seconds = time.perf_counter() - t0
    _write_run_layout(run_dir, model, classes, cfg, tcfg)
    ev = _evaluate(model, sets, classes, run_dir, cfg)
    result = {"setup": setup, "seed": seed, "counts": counts, "train_seconds": train_seconds,
              "history": history, **ev}
    atomic_write_json(run_dir / "results.json", result)
    return result


def summarize(results: list[dict[str, Any]], headline: str = "knn") -> dict[str, Any]:
    """Per setup: mean ± 95 % t-interval over seeds of accuracy and every OOD metric."""
    from synthmix.evaluation.stats import mean_ci

    out: dict[str, Any] = {}
    for setup in dict.fromkeys(r["setup"] for r in results):
        rs = [r for r in results if r["setup"] == setup]
        s: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "accuracy": mean_ci([r["accuracy"] for r in rs]),
                             "ood": {}}
        for name in rs[0]["ood"]:
            s["ood"][name] = {d: {m: mean_ci([r["ood"][name][d][m] for r in rs]) for m in ("auroc", "fpr95", "aupr_in")}
                              for d in DETECTORS}
        out[setup] = s
    return {"headline_detector": headline, "setups": out}


def summary_markdown(summary: dict[str, Any], detector: str | None = None) -> str:
    """A table: accuracy and ``detector`` (default: the headline one) AUROC / FPR@95 per OOD set,
    mean ± 95 % CI half-width over seeds."""
    def f(ci: dict[str, Any]) -> str:
        if ci["lo"] is None:
            return f"{ci['mean']:.3f}"
        return f"{ci['mean']:.3f} ± {(ci['hi'] - ci['lo']) / 2:.3f}"

    d = detector or summary["headline_detector"]
    setups = summary["setups"]
    sets = list(dict.fromkeys(n for s in setups.values() for n in s["ood"]))
    head = ["setup", "n", "accuracy"] + [f"{n} AUROC" for n in sets] + [f"{n} FPR@95" for n in sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in setups.items():
        cells = [name, str(len(s["seeds"])), f(s["accuracy"])]
        cells += [f(s["ood"][n][d]["auroc"]) if n in s["ood"] else "-" for n in sets]
        cells += [f(s["ood"][n][d]["fpr95"]) if n in s["ood"] else "-" for n in sets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_setups(cfg: ThesisConfig, out_dir: str | Path) -> dict[str, Any]:
    """Every setup × seed into ``out_dir/<setup>/seed-<s>/``; writes summary.json and summary.md."""
    import torch

    from synthmix.core.config import dump_yaml
    from synthmix.core.io import atomic_write_json, atomic_write_text
    from synthmix.data.manifest import read_manifest, resolve_path
    from synthmix.data.tensors import label_tensor
    from synthmix.evaluation.far_ood import build_far_ood

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dump_yaml(cfg, out_dir / "config.yaml")
    rows = _split_rows(cfg)
    if cfg.far_ood_manifest is None:
        far_dir = out_dir / "far_ood"
        if not (far_dir / "manifest.jsonl").exists():
            build_far_ood(far_dir, size=max(64, cfg.contrastive.input_size))
        far_manifest = far_dir / "manifest.jsonl"
    else:
        far_manifest = cfg.far_ood_manifest
    far = [{**r, "path": str(resolve_path(far_manifest, r["path"]))} for r in read_manifest(far_manifest)]
    classes = rows["classes"]
    sets = {s: (_tensor(rows[s], cfg), label_tensor(rows[s], classes)) for s in ("train", "val", "test")}
    sets.update(mixed=_tensor(rows["ood_real"], cfg), syn_near_ood=_tensor(rows["near_held"], cfg),
                far_ood=_tensor(far, cfg), in_dist=_tensor(rows["in_dist"], cfg),
                near_train=_tensor(rows["near_train"], cfg))
    results = []
    for setup in cfg.setups:
        for seed in cfg.seeds:
            results.append(run_one(setup, seed, cfg, rows, sets, out_dir / setup / f"seed-{seed}"))
    summary = summarize(results, cfg.headline_detector)
    summary["counts"] = {k: len(v) for k, v in rows.items() if k != "classes"} | {"far_ood": len(far)}
    summary["classes"] = classes
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "summary.md", summary_markdown(summary))
    return summary


def main(argv: list[str] | None = None) -> None:
    import argparse

    from synthmix.core.config import load_config

    p = argparse.ArgumentParser(description="Run the thesis setups (contrastive + OOD) from one config.")
    p.add_argument("config")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    summary = run_setups(load_config(ThesisConfig, a.config), a.out)
    for d in DETECTORS:
        print(f"detector: {d}\n{summary_markdown(summary, d)}")


if __name__ == "__main__":
    main()
