"""Thin adapters from the study config to each stage owner's public API.

For every stage: ``<kind>_config(cfg, ...) -> dict`` (the resolved settings its key hashes)
and ``run_<kind>(ctx) -> summary dict`` (calls the owner's function with ``ctx.out_dir``).
Runtime-only settings (device) are not part of keys: they come from the environment
variable ``SYNTHMIX_DEVICE`` set by the runner, so a study resumed on another machine reuses
its results.

``NESTED_CHECKS`` validate the nested settings of a study with the owners' config classes
before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from synthmix.core.config import parse_config
from synthmix.core.errors import ConfigError, SynthmixError
from synthmix.core.hashing import config_hash
from synthmix.core.io import atomic_write_json, read_json
from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import DONE, StageContext
from synthmix.experiments.grid import Cell, expand

MANIFEST = "manifest.jsonl"


def device() -> str:
    return os.environ.get("SYNTHMIX_DEVICE", "auto")


def dep_summary(ctx: StageContext, name: str) -> dict[str, Any]:
    """The ``summary`` a dependency returned (from its done marker)."""
    return read_json(ctx.deps[name] / DONE)["summary"]


def dep_manifest(ctx: StageContext, name: str) -> Path:
    return ctx.deps[name] / dep_summary(ctx, name)["manifest"]


# ---------------------------------------------------------------- scan

def dataset_root(cfg: StudyConfig) -> Path:
    if cfg.dataset.path is None:
        from synthmix.data.bundled import fruits_path

        return fruits_path()
    return Path(cfg.dataset.path)


def fingerprint(root: Path) -> str:
    """Hash of every file's relative path and size: new, removed or resized images change the key
    (mtimes are left out so a fresh clone of the same data reuses results)."""
    if not root.is_dir():
        raise ConfigError(f"dataset.path: not a directory: {root}")
    files = sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*") if p.is_file())
    return config_hash(files, n=16)


def scan_config(cfg: StudyConfig) -> dict[str, Any]:
    root = dataset_root(cfg)
    return {"root": str(root), "fingerprint": fingerprint(root), "val_fraction": cfg.dataset.val_fraction,
            "test_fraction": cfg.dataset.test_fraction, "seed": cfg.dataset.seed,
            "on_error": cfg.dataset.on_error}


def run_scan(ctx: StageContext) -> dict[str, Any]:
    from synthmix.data.scan import scan_dataset

    c = ctx.config
    report = scan_dataset(c["root"], ctx.out_dir, on_error=c["on_error"], val_fraction=c["val_fraction"],
                          test_fraction=c["test_fraction"], seed=c["seed"])
    manifest = Path(report.manifest_path)
    return {"manifest": os.path.relpath(manifest, ctx.out_dir), **_report_counts(report)}


def _report_counts(report: Any) -> dict[str, Any]:
    j = report.to_json()
    return {"n_images": j["n_images"], "classes": j["classes"], "counts": j["counts"],
            "n_skipped": len(j["skipped"]), "n_problems": len(j["problems"]), "fix_counts": j["fix_counts"]}


# ---------------------------------------------------------------- generator training (embedded)

def generator_train_config(cfg: StudyConfig, name: str) -> dict[str, Any]:
    g = cfg.generators[name]
    exclude = [cfg.dataset.near_ood_class] if cfg.dataset.near_ood_class else []
    return {"type": g.type, "train": {"exclude_classes": exclude, **(g.train or {})}}


def run_generator_train(ctx: StageContext) -> dict[str, Any]:
    from synthmix.generation.embedded.config import TrainConfig as GenTrainConfig
    from synthmix.generation.embedded.train import train_generator

    gcfg = parse_config(GenTrainConfig, {**ctx.config["train"], "manifest": str(dep_manifest(ctx, "scan")),
                                         "out_dir": str(ctx.out_dir / "model"), "device": device()},
                        source="generator.train")
    ckpt = train_generator(gcfg)
    return {"checkpoint": os.path.relpath(ckpt, ctx.out_dir)}


# ---------------------------------------------------------------- generation

def generate_config(cfg: StudyConfig, name: str) -> dict[str, Any]:
    g = cfg.generators[name]
    return {"type": g.type, "generate": g.generate, "batch_size": g.batch_size,
            "exclude_classes": [cfg.dataset.near_ood_class] if cfg.dataset.near_ood_class else []}


def _generator_settings(ctx: StageContext) -> dict[str, Any]:
    settings = {"type": ctx.config["type"], **ctx.config["generate"]}
    if "generator" in ctx.deps:
        settings["checkpoint"] = str(ctx.deps["generator"] / dep_summary(ctx, "generator")["checkpoint"])
        settings.pop("train", None)
    fields = _config_fields(ctx.config["type"])
    if "device" in fields:
        settings["device"] = device()
    if "split" in fields:
        # Generated rows are training material: the mix selector takes synthetic rows of split train.
        settings.setdefault("split", "train")
    return settings


def _config_fields(gen_type: str) -> set[str]:
    from synthmix.generation.registry import get_backend

    return set(get_backend(gen_type).config_cls.model_fields)


def run_generate_stage(ctx: StageContext) -> dict[str, Any]:
    """``synthmix.generation.jobs.run_generate`` into ``out_dir`` (resumable per image)."""
    from synthmix.generation.jobs import GenerateConfig, run_generate

    gcfg = GenerateConfig(manifest=dep_manifest(ctx, "scan"), out_dir=ctx.out_dir,
                          generator=_generator_settings(ctx), batch_size=ctx.config["batch_size"])
    counts = run_generate(gcfg)
    if counts["ok"] + counts["skipped"] == 0:
        raise SynthmixError(f"generation made no usable image ({counts})")
    return {"manifest": MANIFEST, **counts}


# ---------------------------------------------------------------- curation

def curation_cell(cfg: StudyConfig) -> Cell:
    """The classifier that scores synthetic images: a real-only CE cell (by default the reference
    setup's first model and seed, so its training stage is shared with that cell)."""
    from synthmix.experiments.config import SetupSection

    name = cfg.curation.classifier_setup or cfg.reference_setup
    setup = next((s for s in cfg.setups if s.name == name and s.generator is None), None) \
        or SetupSection(name="curation-classifier")
    return Cell(setup, cfg.models[0], cfg.seeds[0])


def curate_config(cfg: StudyConfig, name: str) -> dict[str, Any]:
    return {"settings": cfg.curation.settings}


def run_curate(ctx: StageContext) -> dict[str, Any]:
    """``synthmix.curation.run.curate_manifest`` over real + generated rows; the training stages get
    ``synthetic.jsonl`` (the sorted synthetic rows only, absolute paths)."""
    from synthmix.curation.run import CurationConfig, curate_manifest
    from synthmix.data.manifest import read_manifest, resolve_path, write_manifest

    scan, generated = dep_manifest(ctx, "scan"), dep_manifest(ctx, "generated")
    rows = [{**r, "path": str(resolve_path(m, r["path"]))} for m in (scan, generated)
            for r in read_manifest(m) if r.get("path")]
    combined = ctx.out_dir / "input" / MANIFEST
    write_manifest(combined, rows)
    ccfg = parse_config(CurationConfig, {**ctx.config["settings"], "device": _concrete_device()},
                        source="curation.settings")
    classifier = ctx.deps["classifier"] / dep_summary(ctx, "classifier")["run"]
    summary = curate_manifest(combined, classifier, ctx.out_dir / "curated", ccfg)
    curated = read_manifest(ctx.out_dir / "curated" / MANIFEST)
    write_manifest(ctx.out_dir / "synthetic.jsonl", [r for r in curated if r.get("source") != "real"])
    info = {k: v for k, v in summary.items() if k in ("counts", "n_synthetic", "thresholds")}
    return {**info, "manifest": "synthetic.jsonl"}


def _concrete_device() -> str:
    from synthmix.core.device import pick_device

    return pick_device(device())


# ---------------------------------------------------------------- far-OOD set

def far_ood_config(cfg: StudyConfig) -> dict[str, Any]:
    return {"settings": cfg.evaluation.far_ood_settings, "size": max(64, cfg.preprocessing.image_size)}


def run_far_ood(ctx: StageContext) -> dict[str, Any]:
    from synthmix.evaluation.far_ood import build_far_ood

    rows = build_far_ood(ctx.out_dir, **{"size": ctx.config["size"], **ctx.config["settings"]})
    return {"manifest": MANIFEST, "n": len(rows)}


# ---------------------------------------------------------------- training

def train_settings(cfg: StudyConfig, cell: Cell, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The TrainConfig mapping of a cell: study training + setup overrides + model + size + seed."""
    merged = {**cfg.training, **cell.setup.training, **(overrides or {})}
    if cfg.preprocessing.augment and "augment" not in merged:
        merged["augment"] = cfg.preprocessing.augment
    merged.update(model=cell.model.name, model_kwargs=cell.model.args,
                  input_size=cfg.preprocessing.image_size, seed=cell.seed)
    return merged


def train_config(cfg: StudyConfig, cell: Cell) -> dict[str, Any]:
    s = cell.setup
    out = {"setup": s.name, "mix": s.mix, "schedule": s.schedule, "loss": s.loss,
           "near_ood_negatives": s.near_ood_negatives, "train": train_settings(cfg, cell),
           "exclude_classes": [cfg.dataset.near_ood_class] if cfg.dataset.near_ood_class else [],
           "preprocess": cfg.preprocessing.preprocess, "gradcam": cfg.evaluation.gradcam}
    if s.schedule == "pretrain_finetune":
        out["pretrain"] = {"mix": s.pretrain_mix, "train": train_settings(cfg, cell, s.pretrain_training)}
    if s.loss == "supcon":
        out["contrastive"] = {**cfg.contrastive, **s.contrastive}
    return out


def run_train(ctx: StageContext) -> dict[str, Any]:
    """A CE run (``synthmix.training.train.train_run``) or a SupCon run, into ``out_dir/run``."""
    c = ctx.config
    if c["loss"] == "supcon":
        return run_train_supcon(ctx)
    from synthmix.training.train import TrainRunConfig, train_run

    data: dict[str, Any] = {
        "manifest": str(dep_manifest(ctx, "scan")),
        "synthetic_manifests": [str(dep_manifest(ctx, "synthetic"))] if "synthetic" in ctx.deps else [],
        "exclude_classes": c["exclude_classes"], "mix": c["mix"],
        "train": {**c["train"], "device": device()}, "preprocess": c["preprocess"],
        "cache_dir": str(ctx.run_dir / "cache"), "eval_splits": ["test"], "gradcam": c["gradcam"]}
    if "pretrain" in c:
        data["pretrain"] = {"mix": c["pretrain"]["mix"], "train": {**c["pretrain"]["train"], "device": device()}}
    cfg = parse_config(TrainRunConfig, data, source=f"setup {c['setup']}")
    results = train_run(cfg, ctx.out_dir / "run", progress=True)
    return {"run": "run", "eval": results.get("eval", {}), "selection": results.get("selection", {}).get("n_total")}


def run_train_supcon(ctx: StageContext) -> dict[str, Any]:
    """One (setup, seed) of ``synthmix.training.contrastive_setups.run_setups``: SupCon on real
    images, + in-distribution positives, + near-OOD negatives; the run dir has train_run's layout."""
    from synthmix.training.contrastive_setups import ThesisConfig, run_setups

    c = ctx.config
    setup = ("in_dist_near_ood" if c["near_ood_negatives"] else
             "in_dist" if "synthetic" in ctx.deps else "real_only")
    t = c["train"]
    contrastive = {**c["contrastive"], "model": t["model"],
                   "model_kwargs": {**t["model_kwargs"], **c["contrastive"].get("model_kwargs", {})},
                   "input_size": t["input_size"], "seed": t["seed"], "device": _concrete_device()}
    tcfg = parse_config(ThesisConfig, {
        "manifest": str(dep_manifest(ctx, "scan")),
        "synthetic_manifests": [str(dep_manifest(ctx, "synthetic"))] if "synthetic" in ctx.deps else [],
        "ood_label": c["exclude_classes"][0] if c["exclude_classes"] else "mixed",
        "setups": [setup], "seeds": [t["seed"]], "contrastive": contrastive, "preprocess": c["preprocess"],
        "cache_dir": str(ctx.run_dir / "cache")}, source=f"setup {c['setup']}")
    run_setups(tcfg, ctx.out_dir / "supcon")
    return {"run": f"supcon/{setup}/seed-{t['seed']}", "thesis_setup": setup}


# ---------------------------------------------------------------- evaluation (incl. OOD)

def evaluate_config(cfg: StudyConfig, cell: Cell) -> dict[str, Any]:
    ev = cfg.evaluation
    return {"near_ood_class": cfg.dataset.near_ood_class if ev.near_ood else None,
            "detectors": list(ev.detectors), "gradcam": ev.gradcam,
            "extra": [{**e.model_dump(), "fingerprint": fingerprint(Path(e.path))} for e in ev.extra]}


def _image_rows(folder: Path) -> list[dict[str, Any]]:
    """Rows (absolute paths) of every image under ``folder``: an OOD folder has no classes to match."""
    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.data.images import is_image_file
    from synthmix.data.manifest import new_row

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))
    return [new_row(id=short_id(sha256_file(p)), path=str(p), label=None, split="ood", source="real")
            for p in files]


# Keys of evaluation.evaluate metrics -> names in the study's tables.
METRIC_KEYS = {"accuracy": "accuracy", "f1_macro": "macro_f1", "roc_auc_ovr": "roc_auc",
               "precision_macro": "macro_precision", "recall_macro": "macro_recall", "ece": "ece"}


def _flat(prefix: str, m: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{new}": float(m[old]) for old, new in METRIC_KEYS.items()
            if isinstance(m.get(old), (int, float))}


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    """Flat ``metrics.json`` of a trained cell: test (and val) classification metrics, extra
    folders, and OOD AUROC / FPR@95 of each detector on the near-OOD, far-OOD and extra OOD sets."""
    import numpy as np

    from synthmix.data.manifest import read_manifest
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.evaluate import evaluate_model, load_run_model
    from synthmix.evaluation.ood.detectors import FittedDetectors
    from synthmix.evaluation.ood.histograms import plot_score_histograms
    from synthmix.evaluation.ood.metrics import ood_metrics

    c = ctx.config
    train_dir = ctx.deps["train"] / dep_summary(ctx, "train")["run"]
    model, tcfg, classes = load_run_model(train_dir)
    size, norm, dev = tcfg.train.input_size, tcfg.train.normalization, device()
    if dev == "auto":
        from synthmix.core.device import pick_device

        dev = pick_device("auto")
    out = ctx.out_dir / "eval"
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        p = train_dir / "eval" / split / "metrics.json"
        if p.exists():
            metrics.update(_flat(split, read_json(p)))

    def outputs(rows, manifest, name):
        # Unlabelled (y=None): features + logits are cached, no plots (these sets are not classified).
        x = load_tensor(rows, manifest, size, preprocess=tcfg.preprocess, cache_dir=tcfg.cache_dir)
        evaluate_model(model, x, None, classes, out, name=name, ids=[r["id"] for r in rows], gradcam=False,
                       normalization=norm, device=dev)
        return np.load(out / name / "features.npy"), np.load(out / name / "logits.npy")

    scan_manifest = dep_manifest(ctx, "scan")
    rows = read_manifest(scan_manifest)
    ood_sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if c["near_ood_class"]:
        near = [r for r in rows if r["label"] == c["near_ood_class"]]
        if near:
            ood_sets["near_ood"] = outputs(near, scan_manifest, "near_ood")
    if "far_ood" in ctx.deps:
        far_manifest = dep_manifest(ctx, "far_ood")
        ood_sets["far_ood"] = outputs(read_manifest(far_manifest), far_manifest, "far_ood")
    for e in c["extra"]:
        if e["ood"]:
            ood_sets[e["name"]] = outputs(_image_rows(Path(e["path"])), None, e["name"])
        else:
            from synthmix.evaluation.crossdata import evaluate_folder

            m = evaluate_folder(model, e["path"], classes, out, name=e["name"], input_size=size,
                                normalization=norm, preprocess=tcfg.preprocess, gradcam=c["gradcam"],
                                device=dev)
            metrics.update(_flat(e["name"], m))

    if ood_sets:
        train_rows = [r for r in rows if r.get("split") == "train" and r["label"] in set(classes)]
        tr_feat, _ = outputs(train_rows, scan_manifest, "train")
        tr_lab = label_tensor(train_rows, classes).numpy()
        detectors = FittedDetectors.fit(tr_feat, tr_lab)
        id_scores = detectors.score(np.load(train_dir / "eval" / "test" / "features.npy"),
                                    np.load(train_dir / "eval" / "test" / "logits.npy"))
        hist: dict[str, dict[str, np.ndarray]] = {d: {"test (ID)": id_scores[d]} for d in c["detectors"]}
        for name, (feat, logits) in ood_sets.items():
            scores = detectors.score(feat, logits)
            for d in c["detectors"]:
                for k, v in ood_metrics(id_scores[d], scores[d]).items():
                    metrics[f"ood/{name}/{d}/{k}"] = v
                hist[d][name] = scores[d]
        plot_score_histograms(hist, ctx.out_dir / "ood_hist.png", title="OOD scores")
    atomic_write_json(ctx.out_dir / "metrics.json", metrics)
    return {"n_metrics": len(metrics)}


# ---------------------------------------------------------------- validation before any work

def check_models(cfg: StudyConfig) -> None:
    from synthmix.models import available_models

    names = available_models()
    for i, m in enumerate(cfg.models):
        if m.name not in names:
            raise ConfigError(f"models.{i}.name: unknown model {m.name!r}; available: {', '.join(names)}")


def check_training(cfg: StudyConfig) -> None:
    from synthmix.training.train import TrainRunConfig

    for cell in expand(cfg):
        i = next(i for i, s in enumerate(cfg.setups) if s.name == cell.setup.name)
        c = train_config(cfg, cell)
        data = {"manifest": "(scanned by the study)", "exclude_classes": c["exclude_classes"], "mix": c["mix"],
                "train": c["train"], "preprocess": c["preprocess"]}
        if "pretrain" in c:
            data["pretrain"] = c["pretrain"]
        parse_config(TrainRunConfig, data, source=f"setups.{i} ({cell.setup.name})")
        if cell.setup.loss == "supcon":
            _check_contrastive(c, f"setups.{i}.contrastive")


def _check_contrastive(c: dict[str, Any], source: str) -> None:
    from synthmix.training.contrastive import ContrastiveConfig

    parse_config(ContrastiveConfig, c["contrastive"], source=source)


def check_generators(cfg: StudyConfig) -> None:
    from synthmix.generation.registry import get_backend

    for name, g in cfg.generators.items():
        backend = get_backend(g.type)
        if g.train is not None:
            if g.type != "embedded":
                raise ConfigError(f"generators.{name}.train: only the embedded generator is trained "
                                  f"by the study (type is {g.type!r})")
            from synthmix.generation.embedded.config import TrainConfig as GenTrainConfig

            parse_config(GenTrainConfig, {**g.train, "manifest": "-", "out_dir": "-"},
                         source=f"generators.{name}.train")
        settings = dict(g.generate)
        if g.train is not None:
            settings["checkpoint"] = "(trained by the study)"
        parse_config(backend.config_cls, settings, source=f"generators.{name}.generate")


def check_dataset(cfg: StudyConfig) -> None:
    root = dataset_root(cfg)
    if not root.is_dir():
        raise ConfigError(f"dataset.path: not a directory: {root}")
    for i, e in enumerate(cfg.evaluation.extra):
        if not Path(e.path).is_dir():
            raise ConfigError(f"evaluation.extra.{i}.path: not a directory: {e.path}")


NESTED_CHECKS = [check_dataset, check_models, check_training, check_generators]
