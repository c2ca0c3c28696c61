"""Stage ``train``: one cell's classifier — cross-entropy (``synthmix.training.train.train_run``:
mixes, pretrain -> fine-tune, outliers) or SupCon (``synthmix.training.supcon_run``) — into
``out_dir/run`` with the run-directory layout every reader expects.

Equal compute (``budget.mode: steps``, the default): every CE cell takes the same number of
optimizer steps, ``epochs_over_real`` passes over the *full* real training set at the study's
batch size, whatever its own training set holds; a pretrain -> fine-tune cell splits that one
budget between its two stages. The summary records steps, images seen and seconds."""

from __future__ import annotations

import math
from typing import Any

from synthmix.core.errors import ConfigError, SynthmixError
from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import StageContext
from synthmix.experiments.grid import Cell
from synthmix.experiments.stages.common import dep_path
from synthmix.training.config import TrainConfig


def budget_epochs(cfg: StudyConfig) -> float:
    """The step budget in epochs over the full real training set."""
    from synthmix.core.config import overrides

    return cfg.budget.epochs_over_real or overrides(cfg.training).get("epochs") or TrainConfig().epochs


def config(cfg: StudyConfig, cell: Cell) -> dict[str, Any]:
    s = cell.setup
    out: dict[str, Any] = {
        "setup": s.name, "control": s.control, "loss": s.loss, "schedule": s.schedule,
        "mix": s.mix.model_dump(mode="json"), "near_ood_negatives": s.near_ood_negatives,
        "outliers": s.outliers.model_dump(mode="json") if s.outliers else None,
        "train": cfg.train_settings(s, cell.model, cell.seed),
        "budget": ({"mode": "steps", "epochs_over_real": budget_epochs(cfg),
                    "pretrain_fraction": cfg.budget.pretrain_fraction} if cfg.budget.mode == "steps"
                   else {"mode": "epochs"}),
        "exclude_classes": [cfg.near_ood_class] if cfg.near_ood_class else [],
        "preprocess": cfg.preprocessing.preprocess.model_dump(mode="json") if cfg.preprocessing.preprocess else {},
        "gradcam": cfg.evaluation.gradcam,
        # figures (ROC, PR, confusion, calibration, Grad-CAM) of the test split, first seed only: the
        # report shows one seed's figures per setup, and drawing them costs about a second per split
        "figure_splits": ["test"] if cell.seed == cfg.seeds[0] else []}
    if s.schedule == "pretrain_finetune":
        out["pretrain"] = {"mix": s.pretrain_mix.model_dump(mode="json"),
                           "train": cfg.train_settings(s, cell.model, cell.seed, s.pretrain_training)}
    if s.loss == "supcon":
        out["contrastive"] = cfg.contrastive_settings(s, cell.model, cell.seed)
    return out


def step_budget(c: dict[str, Any], n_real: int) -> tuple[int, int | None]:
    """(steps of the main stage, steps of the pretraining stage or None) for ``n_real`` real train images."""
    b = c["budget"]
    total = math.ceil(b["epochs_over_real"] * math.ceil(n_real / c["train"].get("batch_size", 32)))
    if "pretrain" not in c:
        return total, None
    pre = max(1, round(b["pretrain_fraction"] * total))
    if total - pre < 1:
        raise ConfigError(f"setup {c['setup']}: a budget of {total} steps cannot be split into pretraining "
                          "and fine-tuning")
    return total - pre, pre


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.config
    if c["loss"] == "supcon":
        return _run_supcon(ctx)
    from synthmix.core.config import parse_config
    from synthmix.data.manifest import read_manifest
    from synthmix.training.train import TrainRunConfig, train_run

    scan = dep_path(ctx, "scan")
    train = {**c["train"], "device": ctx.runtime.device}
    pretrain = {**c["pretrain"]["train"], "device": ctx.runtime.device} if "pretrain" in c else None
    budget: dict[str, Any] = {"mode": c["budget"]["mode"]}
    if c["budget"]["mode"] == "steps":
        n_real = sum(1 for r in read_manifest(scan) if r.get("split") == "train" and r.get("source") == "real"
                     and r.get("label") not in set(c["exclude_classes"]))
        train["steps"], pre_steps = step_budget(c, n_real)
        budget.update(steps=train["steps"] + (pre_steps or 0), n_real_full=n_real)
        if pretrain is not None:
            pretrain["steps"] = pre_steps
    data: dict[str, Any] = {
        "manifest": str(scan),
        "synthetic_manifests": [str(dep_path(ctx, "synthetic"))] if "synthetic" in ctx.deps else [],
        "exclude_classes": c["exclude_classes"], "mix": c["mix"], "train": train,
        "preprocess": c["preprocess"], "cache_dir": str(ctx.run_dir / "cache"), "eval_splits": ["val", "test"],
        "figure_splits": c["figure_splits"], "gradcam": c["gradcam"]}
    if pretrain is not None:
        data["pretrain"] = {"mix": c["pretrain"]["mix"], "train": pretrain}
    if c["outliers"]:
        data["outliers"] = c["outliers"]
    rcfg = parse_config(TrainRunConfig, data, source=f"setup {c['setup']}")
    results = train_run(rcfg, ctx.out_dir / "run", progress=True)
    fits = [results["fit"]] + ([results["pretrain"]["fit"]] if "pretrain" in results else [])
    n_syn = results["selection"]["n_synthetic"] + (results["pretrain"]["selection"]["n_synthetic"]
                                                    if "pretrain" in results else 0)
    wants_synthetic = c["mix"]["kind"] != "real_only" or "pretrain" in c
    if wants_synthetic and n_syn == 0:  # the selection guards this already; a setup never silently equals real
        raise SynthmixError(f"setup {c['setup']} asks for synthetic images but trained on none")
    return {"run": "run", "budget": budget, "steps": sum(f["steps"] for f in fits),
            "images_seen": sum(f["images_seen"] for f in fits),
            "train_seconds": round(sum(f["train_seconds"] for f in fits), 3),
            "n_real": results["selection"]["n_real"], "n_synthetic": n_syn,
            "outliers": (results.get("outliers") or {}).get("n"),
            "still_improving": still_improving(results["fit"]),
            "eval": results.get("eval", {})}


def still_improving(fit: dict[str, Any]) -> bool | None:
    """True when validation loss was still falling at the end (best at the last validation and
    below the mean of the previous three): a sign the budget was too short for this cell."""
    vals = [h["val_loss"] for h in fit.get("history", []) if h.get("val_loss") is not None]
    if len(vals) < 4:
        return None
    return vals[-1] <= min(vals) and vals[-1] < sum(vals[-4:-1]) / 3


def _run_supcon(ctx: StageContext) -> dict[str, Any]:
    """SupCon on real images (+ in-distribution synthetic positives, + near-OOD negatives)."""
    from synthmix.core.config import parse_config
    from synthmix.training.supcon_run import SupConRunConfig, supcon_run

    c = ctx.config
    has_syn = "synthetic" in ctx.deps
    rcfg = parse_config(SupConRunConfig, {
        "manifest": str(dep_path(ctx, "scan")),
        "synthetic_manifests": [str(dep_path(ctx, "synthetic"))] if has_syn else [],
        "exclude_classes": c["exclude_classes"], "near_ood_negatives": c["near_ood_negatives"],
        "require_synthetic": has_syn,
        "contrastive": {**c["contrastive"], "device": ctx.runtime.concrete_device()},
        "preprocess": c["preprocess"], "cache_dir": str(ctx.run_dir / "cache"), "eval_splits": ["val", "test"],
        "figure_splits": c["figure_splits"], "gradcam": c["gradcam"],
        **({"outliers": c["outliers"]} if c["outliers"] else {})}, source=f"setup {c['setup']}")
    results = supcon_run(rcfg, ctx.out_dir / "run")
    fit = results.get("fit", {})
    sel = results.get("selection", {})
    return {"run": "run", "budget": {"mode": "contrastive"}, "steps": fit.get("steps"),
            "images_seen": fit.get("images_seen"), "train_seconds": fit.get("train_seconds"),
            "n_real": sel.get("n_real"), "n_synthetic": sel.get("n_synthetic"), "still_improving": None,
            "outliers": (results.get("outliers") or {}).get("n"),
            "eval": results.get("eval", {})}
