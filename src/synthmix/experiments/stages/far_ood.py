"""Stage ``far_ood``: the offline far-OOD set (crops of scikit-image's sample images)."""

from __future__ import annotations

from typing import Any

from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import StageContext
from synthmix.experiments.stages.common import MANIFEST


def config(cfg: StudyConfig) -> dict[str, Any]:
    return {"settings": cfg.evaluation.far_ood_settings, "size": max(64, cfg.preprocessing.image_size)}


def run(ctx: StageContext) -> dict[str, Any]:
    from synthmix.evaluation.far_ood import build_far_ood

    rows = build_far_ood(ctx.out_dir, **{"size": ctx.config["size"], **ctx.config["settings"]})
    return {"manifest": MANIFEST, "n": len(rows)}
