"""Stage ``curate``: sort generated images into in_dist / near_ood / reject with a real-only
classifier (``synthmix.curation.run.curate_manifest``); the training stages read ``synthetic.jsonl``.

Fails loudly: an unreadable generated image, too many rejects (curation's own limits), or an empty
role that a setup of the study needs, are errors with counts by reason — never a silent result."""

from __future__ import annotations

from typing import Any

from synthmix.core.errors import CurationError
from synthmix.experiments.config import StudyConfig
from synthmix.experiments.executor import StageContext
from synthmix.experiments.stages.common import MANIFEST, dep_path

SYNTHETIC = "synthetic.jsonl"


def needed_roles(cfg: StudyConfig, name: str) -> list[str]:
    """Roles of generator ``name``'s images that some setup of the study trains on."""
    roles: set[str] = set()
    for s in cfg.setups:
        if s.generator != name:
            continue
        if s.loss == "supcon":
            roles.add("in_dist")
            if s.near_ood_negatives:
                roles.add("near_ood")
        else:
            if s.mix.kind != "real_only":
                roles.update(s.mix.synthetic_roles)
            if s.schedule == "pretrain_finetune":
                roles.update(s.pretrain_mix.synthetic_roles)
            if s.outliers is not None and s.outliers.source == "synthetic_role":
                roles.update(s.outliers.roles)
    return sorted(roles & {"in_dist", "near_ood", "translation"})


def config(cfg: StudyConfig, name: str) -> dict[str, Any]:
    return {"settings": cfg.curation.settings, "needed_roles": needed_roles(cfg, name)}


def run(ctx: StageContext) -> dict[str, Any]:
    from synthmix.core.config import parse_config
    from synthmix.curation.run import CurationConfig, curate_manifest
    from synthmix.data.manifest import read_manifest, rebase_rows, write_manifest

    combined = ctx.out_dir / "input" / MANIFEST
    rows = []
    for dep in ("scan", "generated"):
        m = dep_path(ctx, dep)
        rows += rebase_rows([r for r in read_manifest(m) if r.get("path")], m, combined)
    write_manifest(combined, rows)
    ccfg = parse_config(CurationConfig, {**ctx.config["settings"], "device": ctx.runtime.concrete_device()},
                        source="curation.settings")
    classifier = dep_path(ctx, "classifier", "run")
    summary = curate_manifest(combined, classifier, ctx.out_dir / "curated", ccfg)
    curated_path = ctx.out_dir / "curated" / MANIFEST
    synthetic = [r for r in read_manifest(curated_path) if r.get("source") != "real"]
    write_manifest(ctx.out_dir / SYNTHETIC, rebase_rows(synthetic, curated_path, ctx.out_dir / SYNTHETIC))
    counts = summary["counts"]
    empty = [r for r in ctx.config["needed_roles"] if not counts.get(r)]
    if empty:
        reasons = ", ".join(f"{n} x {k}" for k, n in summary.get("reject_reasons", {}).items()) or "none"
        raise CurationError(f"curation left role(s) {empty} empty, but setups of the study train on them: "
                            f"{summary['n_synthetic']} synthetic images -> {counts}; reject reasons: {reasons}; "
                            f"see {ctx.out_dir / 'curated' / 'rejected.txt'}")
    info = {k: summary[k] for k in ("counts", "reject_reasons", "n_synthetic", "thresholds", "warnings")}
    return {**info, "manifest": SYNTHETIC}
