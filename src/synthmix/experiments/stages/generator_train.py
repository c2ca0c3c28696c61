"""Stage ``generator``: train the embedded diffusion generator on the real train images."""

from __future__ import annotations

from typing import Any

from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import StageContext
from synthmix.experiments.stages.common import dep_path


def config(cfg: StudyConfig, name: str) -> dict[str, Any]:
    g = cfg.generators[name]
    exclude = [cfg.near_ood_class] if cfg.near_ood_class else []
    return {"type": g.type, "train": {"exclude_classes": exclude, **(g.train or {})}}


def run(ctx: StageContext) -> dict[str, Any]:
    from synthmix.core.config import parse_config
    from synthmix.core.paths import portable_path
    from synthmix.generation.embedded.config import TrainConfig as GenTrainConfig
    from synthmix.generation.embedded.train import train_generator

    settings = {**ctx.config["train"], "manifest": str(dep_path(ctx, "scan")),
                "out_dir": str(ctx.out_dir / "model"), "device": ctx.runtime.device}
    if ctx.runtime.threads and "threads" not in ctx.config["train"]:
        settings["threads"] = ctx.runtime.threads
    ckpt = train_generator(parse_config(GenTrainConfig, settings, source="generator.train"))
    return {"checkpoint": portable_path(ckpt, ctx.out_dir)}
