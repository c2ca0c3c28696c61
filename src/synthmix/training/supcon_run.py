"""A SupCon training run: manifests -> rows by role -> contrastive pretraining + probe -> evaluation.

The contrastive counterpart of :func:`synthmix.training.train.train_run`, with the same run
directory layout, so :func:`synthmix.training.rundir.load_run_model`, ``synthmix evaluate``,
``synthmix curate --model`` and the study's evaluate stage read it unchanged::

    config.yaml              a TrainRunConfig (model, input size, normalisation, manifests; portable paths)
    supcon.yaml              this run's SupConRunConfig (portable paths): a different one is refused
    classes.json             class names, index order of the logits
    selection.jsonl/.json    the training rows (real, synthetic positives, near-OOD negatives) + counts
    checkpoints/contrastive_last.pt   training state after every epoch (resume)
    checkpoints/final.pt     the trained classifier's weights
    eval/<split>/            metrics.json, logits.npy, features.npy, ... (evaluation.evaluate)
    results.json             fit (steps, images seen, seconds, history), selection counts, metrics

Rows (``SupConRunConfig``): the real train rows; synthetic rows of the ``positives`` roles
(default ``in_dist``) are extra anchors/positives of their class and probe-training rows;
with ``near_ood_negatives`` synthetic rows of role ``near_ood`` are negatives of their parent
class only (never anchors, never positives, never probe rows). **Fail loudly**: with
``require_synthetic`` (the default) a run that asks for a synthetic role and finds no usable
row of it raises :class:`DataError` with the rows found per role, instead of training on real
images alone.

**Budget**: the number of optimizer steps does not depend on how many synthetic rows join.
``contrastive.batches_per_epoch`` (pretraining) and ``contrastive.probe_batches_per_epoch``
(probe) default to what the REAL train rows alone give (anchors // (m_per_class x classes per
batch), and ceil(real rows / probe_batch_size)); results.json records the steps taken.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from synthmix.core.config import StrictModel, dump_yaml, load_config
from synthmix.core.errors import ConfigError, DataError
from synthmix.core.io import atomic_write_json, read_json
from synthmix.core.paths import mark_run_root, portable_path, run_root
from synthmix.data.manifest import SOURCE_REAL
from synthmix.data.preprocess import PreprocessConfig
from synthmix.training.config import TrainConfig
from synthmix.training.contrastive import ContrastiveConfig
from synthmix.training.outliers import OutlierConfig
from synthmix.training.train import TrainRunConfig, load_rows, save_run_config

NEAR_OOD = "near_ood"


class SupConRunConfig(StrictModel):
    """One SupCon run (see the module docstring)."""

    manifest: Path = Field(description="real manifest with train/val/test splits")
    synthetic_manifests: list[Path] = Field(default_factory=list, description="generated / curated rows")
    exclude_classes: list[str] = Field(
        default_factory=TrainRunConfig.model_fields["exclude_classes"].default_factory,
        description="labels that are never classes (the near-OOD photos)")
    positives: list[str] = Field(default_factory=lambda: ["in_dist"],
                                 description="roles of synthetic rows used as extra positives of their class")
    near_ood_negatives: bool = Field(False, description="synthetic near_ood rows as hard negatives")
    contrastive: ContrastiveConfig = Field(default_factory=ContrastiveConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    cache_dir: Path | None = None
    eval_splits: list[str] = Field(default_factory=lambda: ["val", "test"])
    figure_splits: list[str] | None = Field(None, description="evaluated splits whose figures are drawn "
                                            "(ROC, PR, confusion, calibration, Grad-CAM); null: all")
    gradcam: bool = True
    require_synthetic: bool = Field(True, description="a requested role with zero usable rows is an error")
    outliers: OutlierConfig | None = Field(None, description="outlier images (train_run's outliers: section): "
                                           "contrastive negatives only, and an OE / energy term on the probe")

    @model_validator(mode="after")
    def _roles(self) -> SupConRunConfig:
        if NEAR_OOD in self.positives:
            raise ValueError("positives: near_ood rows are negatives only (set near_ood_negatives: true)")
        if self.near_ood_negatives and not self.synthetic_manifests:
            raise ValueError("near_ood_negatives: needs synthetic_manifests holding near_ood rows")
        return self

    def requested_roles(self) -> list[str]:
        """The synthetic roles this run trains on (none without synthetic manifests)."""
        if not self.synthetic_manifests:
            return []
        return [*self.positives, *([NEAR_OOD] if self.near_ood_negatives else [])]

    def train_run_config(self) -> TrainRunConfig:
        """The ``config.yaml`` of the run: what ``load_run_model`` needs to rebuild the classifier."""
        c = self.contrastive
        train = TrainConfig(model=c.model, model_kwargs=c.model_kwargs, input_size=c.input_size,
                            normalization=c.normalization, seed=c.seed, device=c.device,
                            epochs=max(1, c.epochs))
        return TrainRunConfig(manifest=self.manifest, synthetic_manifests=self.synthetic_manifests,
                              exclude_classes=self.exclude_classes, train=train, preprocess=self.preprocess,
                              cache_dir=self.cache_dir, eval_splits=self.eval_splits, gradcam=self.gradcam,
                              figure_splits=self.figure_splits)


def select_supcon_rows(rows: list[dict[str, Any]], cfg: SupConRunConfig,
                       classes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``{"real", "positives", "negatives"}`` rows of a run. Raises DataError when a synthetic
    row's parent is not a real train image (evaluation images would leak into training) and,
    with ``require_synthetic``, when a requested role has no usable row (counts per role)."""
    from synthmix.training.mixes import real_train_rows, synthetic_rows

    real = real_train_rows(rows, classes)
    wanted = set(classes)
    syn = [r for r in rows if r.get("source") not in (SOURCE_REAL, None)]
    train_ids = {r["id"] for r in real}
    leak = [r for r in syn if r.get("parent_id") is not None and r["parent_id"] not in train_ids
            and r.get("status") in (None, "ok")]
    if leak:
        raise DataError(leak[0]["path"], f"synthetic row's parent {leak[0]['parent_id']} is not a real train "
                        f"image ({len(leak)} such rows): generate only from train images")
    positives = synthetic_rows(rows, classes, cfg.positives) if cfg.synthetic_manifests else []
    negatives = [r for r in syn if cfg.near_ood_negatives and r.get("role") == NEAR_OOD
                 and r.get("status") in (None, "ok") and r.get("split") in (None, "train")
                 and (r.get("parent_label") or r.get("label")) in wanted]
    if cfg.require_synthetic:
        usable = {NEAR_OOD: len(negatives)} | {role: sum(r.get("role") == role for r in positives)
                                               for role in cfg.positives}
        empty = [role for role in cfg.requested_roles() if usable.get(role, 0) == 0]
        if empty:
            found: dict[str, int] = {}
            for r in syn:
                key = f"{r.get('role')}" + ("" if r.get("status") in (None, "ok") else f" ({r.get('status')})")
                found[key] = found.get(key, 0) + 1
            listed = ", ".join(f"{k}: {v}" for k, v in sorted(found.items())) or "none"
            raise DataError(cfg.synthetic_manifests[0],
                            f"the run asks for synthetic rows of role {', '.join(map(repr, empty))} but none "
                            f"is usable (status ok, split train, a class of {classes}); synthetic rows by role: "
                            f"{listed}. Refusing to train on real images alone (require_synthetic)")
    return {"real": real, "positives": positives, "negatives": negatives}


def resolve_budget(cfg: ContrastiveConfig, n_real: int, n_classes: int) -> ContrastiveConfig:
    """``cfg`` with ``batches_per_epoch`` and ``probe_batches_per_epoch`` set: what the real train
    rows alone give where unset (so synthetic rows never add optimizer steps)."""
    k = min(cfg.classes_per_batch or n_classes, n_classes)
    return cfg.model_copy(update={
        "batches_per_epoch": cfg.batches_per_epoch or max(1, n_real // (cfg.m_per_class * k)),
        "probe_batches_per_epoch": cfg.probe_batches_per_epoch or max(1, math.ceil(n_real / cfg.probe_batch_size))})


def _portable(cfg: SupConRunConfig, base: Path) -> SupConRunConfig:
    def one(p: Path | None) -> Path | None:
        return None if p is None else Path(portable_path(p, base))

    return cfg.model_copy(update={"manifest": one(cfg.manifest), "cache_dir": one(cfg.cache_dir),
                                  "synthetic_manifests": [one(p) for p in cfg.synthetic_manifests]})


def _resolved(cfg: SupConRunConfig) -> SupConRunConfig:
    def one(p: Path | None) -> Path | None:
        return None if p is None else Path(p).expanduser().resolve()

    return cfg.model_copy(update={"manifest": one(cfg.manifest), "cache_dir": one(cfg.cache_dir),
                                  "synthetic_manifests": [one(p) for p in cfg.synthetic_manifests],
                                  "outliers": cfg.outliers.resolved() if cfg.outliers else None})


def supcon_run(cfg: SupConRunConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train (SupCon pretraining + probe) and evaluate one run into ``run_dir``; returns results.json.

    Resumable: a finished run (results.json) is returned as is; an interrupted one continues
    from ``checkpoints/contrastive_last.pt``; a run directory holding another config is refused."""
    import torch

    from synthmix.core.device import pick_device
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.evaluate import evaluate_splits
    from synthmix.training.checkpoint import save_weights
    from synthmix.training.contrastive import ContrastiveData, train_contrastive
    from synthmix.training.mixes import Selection, write_selection

    run_dir = Path(run_dir)
    if run_root(run_dir) is None:  # a stand-alone run is its own run tree (synthmix.core.paths)
        mark_run_root(run_dir)
    cfg = _resolved(cfg)
    stored = _portable(cfg, run_dir)
    guard = run_dir / "supcon.yaml"
    if guard.exists():
        if load_config(SupConRunConfig, guard).model_dump(mode="json", exclude={"cache_dir"}) != \
                stored.model_dump(mode="json", exclude={"cache_dir"}):
            raise ConfigError(f"{guard}: this run directory holds a different config; "
                              "choose another run directory or delete it")
    else:
        dump_yaml(stored, guard)
    if (run_dir / "results.json").exists():
        return read_json(run_dir / "results.json")

    run_cfg = cfg.train_run_config()
    rows = load_rows(run_cfg)
    classes = sorted({r["label"] for r in rows if r.get("split") == "train" and r.get("source") == SOURCE_REAL})
    if len(classes) < 2:
        raise DataError(cfg.manifest, f"need at least 2 classes in the real train split, found {classes}")
    sel = select_supcon_rows(rows, cfg, classes)
    real, pos, neg = sel["real"], sel["positives"], sel["negatives"]
    c = resolve_budget(cfg.contrastive, len(real), len(classes))
    save_run_config(run_cfg, run_dir)
    atomic_write_json(run_dir / "classes.json", classes)

    size = c.input_size

    def tensors(rs: list[dict[str, Any]]):
        x = load_tensor(rs, None, size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir)
        return x, label_tensor(rs, classes)

    train_rows = real + pos + neg
    x = load_tensor(train_rows, None, size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir)
    # a negative is batched with (and is the hard negative of) its parent class
    y = label_tensor(real + pos + [{"label": r.get("parent_label") or r["label"]} for r in neg], classes)
    is_neg = torch.tensor([False] * (len(real) + len(pos)) + [True] * len(neg))
    family = [r.get("parent_id") or r["id"] for r in train_rows]
    n_probe = len(real) + len(pos)  # near-OOD rows never train the classifier head
    extra: dict[str, Any] = {}
    if cfg.outliers is not None:  # negatives only (spread over the classes in turn) + the probe's OE term
        from synthmix.training.outliers import build_outliers

        x_out, out_summary = build_outliers(
            cfg.outliers, rows, classes, c.seed,
            load=lambda r: load_tensor(r, None, size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir),
            real_train=tensors(real) if cfg.outliers.source == "corrupted" else None)
        atomic_write_json(run_dir / "outliers.json", out_summary)
        m = int(x_out.shape[0])
        x = torch.cat([x, x_out])
        y = torch.cat([y, torch.arange(m) % len(classes)])
        is_neg = torch.cat([is_neg, torch.ones(m, dtype=torch.bool)])
        family = family + [f"outlier-{j}" for j in range(m)]
        extra = {"outliers": x_out, "outlier_loss": cfg.outliers.loss_config()}
    t0 = time.perf_counter()
    res = train_contrastive(ContrastiveData(x, y, is_neg, y.clone(), family=family), x[:n_probe], y[:n_probe],
                            len(classes), c, checkpoint=run_dir / "checkpoints" / "contrastive_last.pt", **extra)
    seconds = time.perf_counter() - t0
    save_weights(run_dir / "checkpoints" / "final.pt", res.model)

    def counts(labels) -> dict[str, int]:
        return dict(sorted(Counter(labels).items()))

    selection = Selection(rows=train_rows, n_real=len(real), n_synthetic=len(pos) + len(neg),
                          counts={"real": counts(r["label"] for r in real),
                                  "synthetic": counts(r["label"] for r in pos),
                                  "near_ood_negatives": counts(r.get("parent_label") or r["label"] for r in neg)},
                          requested={"positives": cfg.positives, "near_ood_negatives": cfg.near_ood_negatives})
    write_selection(selection, run_dir)
    per_stage = {s: sum(h.get("steps", 0) for h in res.history if h["stage"] == s) for s in ("pretrain", "probe")}
    fit = {"steps": sum(per_stage.values()), "pretrain_steps": per_stage["pretrain"],
           "probe_steps": per_stage["probe"], "images_seen": sum(h.get("images", 0) for h in res.history),
           "batches_per_epoch": c.batches_per_epoch, "probe_batches_per_epoch": c.probe_batches_per_epoch,
           "train_seconds": seconds, "history": res.history}
    results: dict[str, Any] = {
        "classes": classes, "seed": c.seed, "loss": c.loss, "fit": fit,
        "selection": {**selection.summary(), "n_synthetic_positives": len(pos), "n_near_ood_negatives": len(neg)},
        "n_real_train_available": len(real)}
    if extra:
        results["outliers"] = {k: v for k, v in out_summary.items() if k != "ids"}
    results["eval"] = evaluate_splits(res.model, rows, classes, run_dir / "eval", cfg.eval_splits, tensors,
                                      gradcam=cfg.gradcam, normalization=c.normalization,
                                      device=pick_device(c.device), seed=c.seed, figure_splits=cfg.figure_splits)
    atomic_write_json(run_dir / "results.json", results)
    return results
