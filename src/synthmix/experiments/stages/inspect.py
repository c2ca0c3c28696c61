"""Stage ``inspect``: know your synthetic data — fidelity, diversity, memorisation and label
diagnostics of one generator's curated images against the real training images
(``synthmix.diagnostics.inspect.inspect_manifest``), in the curation classifier's feature space."""

from __future__ import annotations

from typing import Any

from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import StageContext
from synthmix.experiments.stages.common import dep_path

OUT = "diagnostics"


def config(cfg: StudyConfig, name: str) -> dict[str, Any]:
    return {"generator": name, "settings": cfg.evaluation.diagnostics_settings}


def run(ctx: StageContext) -> dict[str, Any]:
    from synthmix.core.config import parse_config
    from synthmix.diagnostics.inspect import InspectConfig, inspect_manifest

    icfg = parse_config(InspectConfig, {**ctx.config["settings"], "device": ctx.runtime.concrete_device()},
                        source="evaluation.diagnostics_settings")
    diag = inspect_manifest(dep_path(ctx, "synthetic"), dep_path(ctx, "classifier", "run"), ctx.out_dir / OUT, icfg)
    return {"diagnostics": f"{OUT}/diagnostics.json", "groups": sorted(diag.get("groups", {})),
            "feature_space": diag.get("feature_space", {}).get("name")}
