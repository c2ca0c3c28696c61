"""A training run: manifests -> selection -> tensors -> fit -> evaluation -> results.json.

``TrainRunConfig`` (YAML)::

    manifest: runs/fruits-data/manifest.jsonl   # real manifest (splits train/val/test), or
    folder: path/to/imagefolder                 # ...an ImageFolder scanned into <run>/data
    val_fraction: 0.15                          # (folder only) val carved from train, split_seed
    split_seed: 0
    synthetic_manifests: []                     # manifests of generated rows
    exclude_classes: [mixed]                    # never classes (mixed photos: a near-OOD set)
    mix: {kind: real_only}                      # synthmix.training.mixes.MixConfig
    train: {...}                                # synthmix.training.config.TrainConfig
    pretrain: null                              # {mix: {kind: synthetic_only}, train: {...}}:
                                                #   stage 1 on synthetic, then fine-tune (train)
    preprocess: {resize: pad}                   # synthmix.data.preprocess.PreprocessConfig
    cache_dir: null                             # decoded-image cache (shared by seeds)
    eval_splits: [val, test]
    figure_splits: null                         # splits whose figures are drawn (null: all)
    gradcam: true
    outliers: null                              # {source: synthetic_role | corrupted | folder,
                                                #   loss: oe | energy, ...}: Outlier Exposure /
                                                #   energy margin (synthmix.training.outliers)

Relative paths are relative to the working directory; the run's ``config.yaml`` stores
them by the rule of ``synthmix.core.paths`` (relative inside the run tree, else absolute), so a
run can be evaluated from anywhere and its directory moved.

Run directory layout (``train_run(cfg, run_dir)``)::

    config.yaml              the resolved TrainRunConfig
    classes.json             class names, index order of the logits
    selection.jsonl/.json    the training rows (id, source, label, role, path) + counts
    checkpoints/last.pt      training state, written atomically every epoch (resume)
    checkpoints/final.pt     final (best-on-val) weights used by evaluation
    tb/                      TensorBoard scalars
    pretrain/                (two-stage only) the same for the synthetic pretraining stage
    eval/<set>/              metrics.json, logits.npy, features.npy, labels.npy, ids.json,
                             roc.png, pr.png, confusion.png, calibration.png, gradcam.png
    results.json             fit summary + history, selection counts, headline metrics per set
    outliers.json            (with outliers) source, count by role / kind, loss settings, row ids

``train_seeds(cfg, out_dir, seeds)`` runs independent seeds in ``out_dir/seed-<s>/`` and writes
``out_dir/summary.json`` (per split and metric: mean, 95 % t-interval, per-seed values).
A run is resumable: re-running the same command continues from ``checkpoints/last.pt``
and skips finished runs (``results.json`` present); a different config in an existing
run directory is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from synthmix.core.config import StrictModel, dump_yaml, load_config
from synthmix.core.errors import ConfigError, DataError
from synthmix.core.io import atomic_write_json, read_json
from synthmix.core.paths import mark_run_root, portable_path, resolve_stored, run_root
from synthmix.data.preprocess import PreprocessConfig
from synthmix.training.config import TrainConfig
from synthmix.training.mixes import MixConfig
from synthmix.training.outliers import OutlierConfig


class StageConfig(StrictModel):
    """The optional first stage (e.g. pretraining on synthetic images)."""

    mix: MixConfig = Field(default_factory=lambda: MixConfig(kind="synthetic_only"))
    train: TrainConfig = Field(default_factory=TrainConfig)


class TrainRunConfig(StrictModel):
    """One training run (see the module docstring for the YAML form)."""

    manifest: Path | None = None
    folder: Path | None = None
    val_fraction: float = Field(0.15, ge=0, lt=1)
    split_seed: int = 0
    synthetic_manifests: list[Path] = Field(default_factory=list)
    exclude_classes: list[str] = Field(default_factory=lambda: ["mixed"])
    mix: MixConfig = Field(default_factory=MixConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    pretrain: StageConfig | None = None
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    cache_dir: Path | None = None
    eval_splits: list[str] = Field(default_factory=lambda: ["val", "test"])
    figure_splits: list[str] | None = Field(None, description="evaluated splits whose figures are drawn "
                                            "(ROC, PR, confusion, calibration, Grad-CAM); null: all")
    gradcam: bool = True
    outliers: OutlierConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TrainRunConfig:
        if (self.manifest is None) == (self.folder is None):
            raise ValueError("give exactly one of manifest (a scanned dataset) or folder (an ImageFolder)")
        return self

    def _map_paths(self, fn) -> TrainRunConfig:
        def one(p: Path | None) -> Path | None:
            return None if p is None else Path(fn(p))

        return self.model_copy(update={"manifest": one(self.manifest), "folder": one(self.folder),
                                       "cache_dir": one(self.cache_dir),
                                       "synthetic_manifests": [one(p) for p in self.synthetic_manifests],
                                       "outliers": self.outliers if self.outliers is None or self.outliers.path
                                       is None else self.outliers.model_copy(update={"path": one(self.outliers.path)})})

    def resolved(self) -> TrainRunConfig:
        """Paths made absolute (relative ones are relative to the working directory)."""
        return self._map_paths(lambda p: Path(p).expanduser().resolve())

    def portable(self, base: str | Path) -> TrainRunConfig:
        """Paths as a file in ``base`` stores them (synthmix.core.paths rule): what config.yaml holds."""
        return self._map_paths(lambda p: portable_path(p, base))

    def anchored(self, base: str | Path) -> TrainRunConfig:
        """Stored paths (relative to ``base``) made absolute again."""
        return self._map_paths(lambda p: resolve_stored(p, base).resolve())

    def with_seed(self, seed: int) -> TrainRunConfig:
        update: dict[str, Any] = {"train": self.train.model_copy(update={"seed": seed})}
        if self.pretrain is not None:
            update["pretrain"] = self.pretrain.model_copy(
                update={"train": self.pretrain.train.model_copy(update={"seed": seed})})
        return self.model_copy(update=update)


def prepare_data(cfg: TrainRunConfig, data_dir: Path) -> TrainRunConfig:
    """With ``folder``: scan it once into ``data_dir`` (manifest with train/val/test) and
    return the config pointing at that manifest; with ``manifest``: unchanged."""
    if cfg.manifest is not None:
        return cfg
    from synthmix.data.scan import MANIFEST_NAME, scan_dataset

    manifest = Path(data_dir) / MANIFEST_NAME
    if not manifest.exists():
        scan_dataset(cfg.folder, data_dir, val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    return cfg.model_copy(update={"manifest": manifest.resolve(), "folder": None})


def load_rows(cfg: TrainRunConfig) -> list[dict[str, Any]]:
    """Rows of the real manifest and every synthetic manifest, paths made absolute, with
    ``exclude_classes`` removed. Duplicate ids across manifests are an error."""
    from synthmix.data.manifest import read_manifest, resolve_path

    if cfg.manifest is None:
        raise ConfigError("manifest: not set (scan the folder first: prepare_data)")
    rows, seen = [], {}
    for mp in [cfg.manifest, *cfg.synthetic_manifests]:
        for r in read_manifest(mp):
            if r.get("label") in set(cfg.exclude_classes) or not r.get("path"):
                continue  # not a class / a failed generation (no file): never training material
            if r["id"] in seen:
                raise DataError(mp, f"row id {r['id']} is also in {seen[r['id']]}")
            seen[r["id"]] = mp
            rows.append({**r, "path": str(resolve_path(mp, r["path"]))})
    return rows


def save_run_config(cfg: TrainRunConfig, run_dir: str | Path) -> None:
    """``run_dir/config.yaml`` with portable paths (a moved run directory still resolves them)."""
    dump_yaml(cfg.portable(run_dir), Path(run_dir) / "config.yaml")


def load_run_config(run_dir: str | Path) -> TrainRunConfig:
    """The config of a run directory, paths absolute again (wherever the directory now is)."""
    return load_config(TrainRunConfig, Path(run_dir) / "config.yaml").anchored(run_dir)


def _config_guard(cfg: TrainRunConfig, run_dir: Path) -> None:
    """Refuse to continue a run directory that holds a different config."""
    path = run_dir / "config.yaml"
    if path.exists():
        old = load_config(TrainRunConfig, path)
        if old.model_dump(mode="json", exclude={"cache_dir"}) != cfg.portable(run_dir).model_dump(
                mode="json", exclude={"cache_dir"}):
            raise ConfigError(f"{path}: this run directory holds a different config; "
                              "choose another --out or delete it")
    else:
        save_run_config(cfg, run_dir)


def train_run(cfg: TrainRunConfig, run_dir: str | Path, *, progress: bool = True, dist=None) -> dict[str, Any]:
    """Train and evaluate one run into ``run_dir`` (layout in the module docstring).

    ``dist``: data-parallel hook (use :func:`synthmix.training.ddp.train_run_ddp`); ranks
    other than 0 only train and return ``{"rank", "fit"}``; rank 0 saves and evaluates."""
    import torch

    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.evaluate import evaluate_splits
    from synthmix.models import create_model
    from synthmix.training.checkpoint import save_weights
    from synthmix.training.loop import fit
    from synthmix.training.mixes import real_train_rows, select_training_rows, write_selection

    run_dir = Path(run_dir)
    if run_root(run_dir) is None:  # a stand-alone run is its own run tree (synthmix.core.paths)
        mark_run_root(run_dir)
    cfg = prepare_data(cfg.resolved(), run_dir / "data")
    _config_guard(cfg, run_dir)
    if (run_dir / "results.json").exists():
        return read_json(run_dir / "results.json")

    rows = load_rows(cfg)
    classes = sorted({r["label"] for r in rows if r.get("split") == "train" and r.get("source") == "real"})
    if len(classes) < 2:
        raise DataError(cfg.manifest, f"need at least 2 classes in the real train split, found {classes}")
    atomic_write_json(run_dir / "classes.json", classes)
    size, seed = cfg.train.input_size, cfg.train.seed

    def tensors(sel_rows):
        x = load_tensor(sel_rows, cfg.manifest, size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir)
        return x, label_tensor(sel_rows, classes)

    def train_tensors(sel_rows):
        # rows with a soft_label (inter-class translations) train on probability targets
        from synthmix.training.soft_labels import soft_target_tensor

        x, y = tensors(sel_rows)
        soft = soft_target_tensor(sel_rows, classes)
        return (x, y) if soft is None else (x, y, soft)

    val_rows = [r for r in rows if r.get("split") == "val" and r.get("source") == "real"]
    val = tensors(val_rows) if val_rows else None
    torch.manual_seed(seed)  # model initialisation
    model = create_model(cfg.train.model, len(classes), **cfg.train.model_args())
    results: dict[str, Any] = {"classes": classes, "seed": seed, "mix": cfg.mix.label()}

    if cfg.pretrain is not None:
        if cfg.pretrain.train.input_size != size or cfg.pretrain.train.model != cfg.train.model:
            raise ConfigError("pretrain.train: model and input_size must equal train's (same network)")
        pre_dir = run_dir / "pretrain"
        pre_sel = select_training_rows(rows, cfg.pretrain.mix, cfg.pretrain.train.seed, classes)
        write_selection(pre_sel, pre_dir)
        pre_fit = fit(model, train_tensors(pre_sel.rows), val, cfg.pretrain.train, pre_dir, progress=progress,
                      dist=dist)
        results["pretrain"] = {"fit": pre_fit.to_dict(), "selection": pre_sel.summary()}

    sel = select_training_rows(rows, cfg.mix, seed, classes)
    write_selection(sel, run_dir)
    x_out, out_summary = None, None
    if cfg.outliers is not None:  # Outlier Exposure / energy margin (synthmix.training.outliers)
        from synthmix.training.outliers import build_outliers

        x_out, out_summary = build_outliers(
            cfg.outliers, rows, classes, seed,
            load=lambda r: load_tensor(r, cfg.manifest, size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir),
            real_train=tensors(real_train_rows(rows, classes)) if cfg.outliers.source == "corrupted" else None)
        atomic_write_json(run_dir / "outliers.json", out_summary)
    result = fit(model, train_tensors(sel.rows), val, cfg.train, run_dir, progress=progress, dist=dist,
                 outliers=x_out, outlier_loss=cfg.outliers.loss_config() if cfg.outliers else None)
    if dist is not None and not dist.is_main:
        return {"rank": dist.rank, "fit": result.to_dict()}
    save_weights(run_dir / "checkpoints" / "final.pt", model)
    results.update(fit=result.to_dict(), selection=sel.summary(),
                   n_real_train_available=len(real_train_rows(rows, classes)), eval={})
    if out_summary is not None:
        results["outliers"] = {k: v for k, v in out_summary.items() if k != "ids"}

    from synthmix.core.device import pick_device

    results["eval"] = evaluate_splits(model, rows, classes, run_dir / "eval", cfg.eval_splits, tensors,
                                      gradcam=cfg.gradcam, normalization=cfg.train.normalization,
                                      device=pick_device(cfg.train.device), seed=seed,
                                      figure_splits=cfg.figure_splits)
    atomic_write_json(run_dir / "results.json", results)
    return results


def train_seeds(cfg: TrainRunConfig, out_dir: str | Path, seeds: Sequence[int], *,
                progress: bool = True) -> dict[str, Any]:
    """Independent runs per seed in ``out_dir/seed-<s>``; ``out_dir/summary.json`` holds, per
    evaluated split and headline metric, :func:`~synthmix.evaluation.stats.mean_ci`."""
    from synthmix.evaluation.evaluate import HEADLINE
    from synthmix.evaluation.stats import mean_ci

    out_dir = mark_run_root(out_dir) if run_root(out_dir) is None else Path(out_dir)
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    # One scan (one train/val split) and one image cache shared by every seed: seeds vary the
    # training randomness, not the data split.
    cfg = prepare_data(cfg.resolved(), out_dir / "data")
    if cfg.cache_dir is None:
        cfg = cfg.model_copy(update={"cache_dir": (out_dir / "cache").resolve()})
    per_seed = {}
    for s in seeds:
        per_seed[s] = train_run(cfg.with_seed(s), out_dir / f"seed-{s}", progress=progress)
    summary: dict[str, Any] = {"seeds": list(seeds), "mix": cfg.mix.label(), "model": cfg.train.model,
                               "input_size": cfg.train.input_size, "splits": {}}
    for split in cfg.eval_splits:
        evals = [per_seed[s]["eval"].get(split) for s in seeds]
        if any(e is None for e in evals):
            continue
        summary["splits"][split] = {
            m: mean_ci([e[m] for e in evals]) for m in HEADLINE if all(e.get(m) is not None for e in evals)}
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
