"""Stage ``generate``: a generation job (``synthmix.generation.jobs.run_generate``), resumable per image.

The study's near-OOD class is excluded from the real rows handed to the backend, whatever the
backend: it is never a generation class nor a parent."""

from __future__ import annotations

from typing import Any

from synthmix.core.errors import SynthmixError
from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import StageContext
from synthmix.experiments.stages.common import MANIFEST, dep_path


def config(cfg: StudyConfig, name: str) -> dict[str, Any]:
    g = cfg.generators[name]
    return {"type": g.type, "generate": g.generate, "batch_size": g.batch_size,
            "exclude_classes": [cfg.near_ood_class] if cfg.near_ood_class else []}


def _settings(ctx: StageContext) -> dict[str, Any]:
    from synthmix.generation.registry import get_backend

    settings = {"type": ctx.config["type"], **ctx.config["generate"]}
    if "generator" in ctx.deps:
        settings["checkpoint"] = str(dep_path(ctx, "generator", "checkpoint"))
    fields = set(get_backend(ctx.config["type"]).config_cls.model_fields)
    if "device" in fields:
        settings["device"] = ctx.runtime.device
    if "split" in fields:
        # Generated rows are training material: the mix selector takes synthetic rows of split train.
        settings["split"] = "train"
    return settings


def run(ctx: StageContext) -> dict[str, Any]:
    from synthmix.generation.jobs import GenerateConfig, run_generate

    gcfg = GenerateConfig(manifest=dep_path(ctx, "scan"), out_dir=ctx.out_dir, generator=_settings(ctx),
                          batch_size=ctx.config["batch_size"], exclude_classes=ctx.config["exclude_classes"])
    counts = run_generate(gcfg)
    if counts["ok"] + counts["skipped"] == 0:
        raise SynthmixError(f"generation made no usable image ({counts})")
    return {"manifest": MANIFEST, **counts}
