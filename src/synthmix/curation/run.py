"""The curation step over a manifest: score every synthetic row, sort it, write the result.

``curate_manifest(manifest, run_dir, out_dir, cfg) -> summary`` loads the classifier of a
finished run (``training.rundir.load_run_model``: a CE run or a contrastive run), then

1. features of the REAL TRAIN rows -> class centroids;
2. REAL VALIDATION rows -> calibrated thresholds (percentiles of their confidences and
   centroid distances);
3. every synthetic row -> image statistics, confidence for its intended class, centroid and
   parent distances -> role ``in_dist`` / ``near_ood`` / ``reject`` with a reason;
4. writes ``out_dir/manifest.jsonl`` (all rows; synthetic rows get ``role``, ``scores`` and
   ``curation_reason``) atomically, ``thresholds.json``, ``rejected.txt`` (kept on disk, listed,
   never deleted) and ``grid_<role>.png`` per role.

Real rows come from ``manifest``; when it holds none (a generator's own manifest), from the
real manifest recorded in the run's config. A synthetic row's intended class is its ``label`` (for a near-OOD candidate that names no
label, its ``parent_label``). A file that cannot be decoded is rejected with the decoder's message.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from synthmix.core.config import StrictModel
from synthmix.core.errors import CurationError
from synthmix.curation.sort import SortConfig


class CurationConfig(StrictModel):
    """Settings of ``synthmix curate``."""

    sort: SortConfig = Field(default_factory=SortConfig)
    batch_size: int = Field(128, ge=1)
    grid_images: int = Field(64, ge=1, description="images per role grid")
    device: str = "cpu"
    max_reject_fraction: float = Field(0.9, ge=0, le=1, description="stop with an error when more than "
                                       "this share of the synthetic images is rejected")
    warn_reject_fraction: float = Field(0.5, ge=0, le=1, description="warn (in the summary and the "
                                        "report) above this reject share")


def run_real_rows(rows: list[dict[str, Any]], manifest: Path, run_cfg,
                  classes: list[str]) -> tuple[list[dict[str, Any]], Path]:
    """(real rows of the run's classes, the manifest they come from): those of ``manifest``, or for a
    manifest of generated rows only, those of the run's own manifest (paths made absolute)."""
    from synthmix.data.manifest import read_manifest, resolve_path

    wanted = set(classes)
    real = [r for r in rows if r.get("source") == "real" and r.get("label") in wanted]
    if real or run_cfg.manifest is None:
        return real, manifest
    rm = Path(run_cfg.manifest)
    return ([{**r, "path": str(resolve_path(rm, r["path"]).resolve())} for r in read_manifest(rm)
             if r.get("source") == "real" and r.get("label") in wanted], rm)


def scoring_setup(manifest: Path, run_dir: str | Path):
    """What scoring a manifest's rows with a finished run's classifier needs (curation and
    diagnostics): (rows, model, run config, classes, input size, normalisation, preprocessing at that
    size, {class: index}, real rows of the run's classes, the manifest they come from)."""
    from synthmix.data.manifest import read_manifest
    from synthmix.training.rundir import load_run_model

    rows = read_manifest(manifest)
    model, run_cfg, classes = load_run_model(run_dir)
    size, norm = run_cfg.train.input_size, run_cfg.train.normalization
    pre = run_cfg.preprocess.model_copy(update={"size": size})
    index = {c: i for i, c in enumerate(classes)}
    real, real_manifest = run_real_rows(rows, manifest, run_cfg, classes)
    return rows, model, run_cfg, classes, size, norm, pre, index, real, real_manifest


def _load_images(rows, manifest: Path, size: int, preprocess):
    """uint8 [N,3,S,S] of rows that decode, plus {index: error} of those that do not."""
    import numpy as np
    import torch

    from synthmix.core.errors import DataError
    from synthmix.data.preprocess import preprocess_row

    arrs, bad = [], {}
    for i, r in enumerate(rows):
        try:
            arrs.append(preprocess_row(r, manifest, preprocess))
        except DataError as err:
            bad[i] = err.problem
            arrs.append(np.zeros((size, size, 3), np.uint8))
    if not arrs:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8), bad
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous(), bad


def curate_manifest(manifest: str | Path, run_dir: str | Path, out_dir: str | Path,
                    cfg: CurationConfig | None = None) -> dict[str, Any]:
    """Sort the synthetic rows of ``manifest`` (see the module docstring); returns a summary."""
    import numpy as np

    from synthmix.core.errors import DataError
    from synthmix.core.io import atomic_write_json, atomic_write_text
    from synthmix.curation.grid import save_grid
    from synthmix.curation.scorers import class_centroids, degenerate_reason, image_stats, model_scores
    from synthmix.curation.sort import assign_role, calibrate, translation_role
    from synthmix.data.manifest import (
        ROLE_TRANSLATION,
        rebase_rows,
        resolve_path,
        write_manifest,
    )
    from synthmix.evaluation.features import extract

    cfg = cfg or CurationConfig()
    manifest, out_dir = Path(manifest), Path(out_dir)
    rows, model, run_cfg, classes, size, norm, pre, index, real, real_manifest = scoring_setup(manifest, run_dir)
    train = [r for r in real if r.get("split") == "train"]
    val = [r for r in real if r.get("split") == "val"]
    if not train or not val:
        raise DataError(real_manifest, f"curation needs real train and real val rows of the run's classes "
                        f"{classes} (found {len(train)} train, {len(val)} val): thresholds are "
                        "calibrated on real validation images")
    syn_idx = [i for i, r in enumerate(rows) if r.get("source") != "real"]
    syn = [rows[i] for i in syn_idx]

    def intended(r: dict[str, Any]) -> str | None:
        return r.get("label") if r.get("label") in index else r.get("parent_label")

    unknown = [r for r in syn if intended(r) not in index]
    if unknown:
        raise DataError(manifest, f"synthetic row {unknown[0]['id']} has label {unknown[0].get('label')!r} "
                        f"/ parent_label {unknown[0].get('parent_label')!r}, not a class of the run {classes}")

    if not syn:
        raise CurationError(f"{manifest}: no synthetic rows to curate (the generation stage made no image)")

    def feats(rs, what):
        x, bad = _load_images(rs, manifest, size, pre)
        if bad:
            # Every file here was written by an earlier stage (or the scan validated it): one that
            # cannot be read is that stage's error, never a curation verdict.
            i = next(iter(bad))
            raise DataError(resolve_path(manifest, rs[i]["path"]),
                            f"{len(bad)} of {len(rs)} {what} images listed in {manifest} cannot be read "
                            f"(first: {bad[i]}); curation stops instead of rejecting them")
        f, lg = extract(model, x, norm, cfg.batch_size, cfg.device)
        return x, f, lg

    _, f_tr, _ = feats(train, "real train")
    y_tr = np.array([index[r["label"]] for r in train])
    cent = class_centroids(f_tr, y_tr, len(classes))
    _, f_va, lg_va = feats(val, "real validation")
    va = model_scores(f_va, lg_va, np.array([index[r["label"]] for r in val]), cent)
    th = calibrate(va["confidence"], va["centroid_dist"], cfg.sort)

    x_syn, f_syn, lg_syn = feats(syn, "synthetic")
    stats = image_stats(x_syn)
    y_syn = np.array([index[intended(r)] for r in syn], dtype=np.int64)
    by_id = {r["id"]: i for i, r in enumerate(train)}
    pf = np.full_like(f_syn, np.nan, dtype=np.float64) if len(syn) else None
    for j, r in enumerate(syn):
        if r.get("parent_id") in by_id:
            pf[j] = f_tr[by_id[r["parent_id"]]]
    sc = model_scores(f_syn, lg_syn, y_syn, cent, pf) if len(syn) else {}

    out_rows = rebase_rows(rows, manifest, out_dir / "manifest.jsonl")
    roles: list[str] = []
    for j, i in enumerate(syn_idx):
        problem = degenerate_reason(stats, j, cfg.sort.min_std, cfg.sort.max_dark, cfg.sort.max_bright)
        role, reason = assign_role(float(sc["confidence"][j]), float(sc["centroid_dist"][j]),
                                   int(sc["predicted"][j]), int(y_syn[j]), problem, th, cfg.sort,
                                   planned=rows[i].get("role"))
        if rows[i].get("role") == ROLE_TRANSLATION:  # translations keep their own role (or are rejected)
            role, reason = translation_role(role, reason)
        scores = {k: (None if not np.isfinite(v[j]) else float(v[j])) for k, v in sc.items() if k != "predicted"}
        scores.update({f"img_{k}": float(v[j]) for k, v in stats.items()},
                      predicted=classes[int(sc["predicted"][j])])
        out_rows[i].update(role=role, curation_reason=reason,
                           scores={**(out_rows[i].get("scores") or {}), **scores})
        roles.append(role)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir / "manifest.jsonl", out_rows)
    atomic_write_json(out_dir / "thresholds.json", {**th.to_dict(), "config": cfg.sort.model_dump()})
    rejected = [out_rows[i]["path"] + "\t" + out_rows[i]["curation_reason"]
                for j, i in enumerate(syn_idx) if roles[j] == "reject"]
    atomic_write_text(out_dir / "rejected.txt", "".join(line + "\n" for line in rejected))
    grids = {}
    for role in ("in_dist", "near_ood", "reject"):
        sel = [j for j, rr in enumerate(roles) if rr == role]
        p = save_grid(x_syn[sel], out_dir / f"grid_{role}.png", max_images=cfg.grid_images) if sel else None
        grids[role] = str(p) if p else None
    reasons = reason_counts([out_rows[i]["curation_reason"] for j, i in enumerate(syn_idx) if roles[j] == "reject"])
    summary = {"manifest": "manifest.jsonl", "counts": dict(Counter(roles)), "reject_reasons": reasons,
               "n_synthetic": len(syn), "thresholds": th.to_dict(),
               "grids": {k: (Path(v).name if v else None) for k, v in grids.items()}, "warnings": []}
    share = roles.count("reject") / len(roles)
    if share > cfg.max_reject_fraction:
        atomic_write_json(out_dir / "curation.json", summary)
        raise CurationError(f"curation rejected {roles.count('reject')} of {len(roles)} synthetic images "
                            f"({share:.0%} > max_reject_fraction {cfg.max_reject_fraction:.0%}); "
                            f"reasons: {_fmt_counts(reasons)}; see {out_dir / 'rejected.txt'}")
    if share > cfg.warn_reject_fraction:
        summary["warnings"].append(f"{share:.0%} of the synthetic images were rejected "
                                   f"({_fmt_counts(reasons)})")
    atomic_write_json(out_dir / "curation.json", summary)
    return summary


def reason_counts(reasons: list[str]) -> dict[str, int]:
    """Reasons grouped by kind (numbers dropped): ``{"centroid distance # > #": 12, ...}``."""
    import re

    return dict(Counter(re.sub(r"-?\d+(\.\d+)?%?", "#", r) for r in reasons).most_common())


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} x {k}" for k, n in counts.items()) or "none"
