"""Looking at the generator: a comparison grid (real vs generated, per strength) and a fidelity table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def comparison_grid(checkpoint: str | Path, manifest: str | Path, out: str | Path, n: int = 8,
                    strengths: Sequence[float] = (0.3, 0.5, 0.7, 0.9), interp_weight: float = 0.5,
                    guidance: float = 2.0, steps: int = 25, sampler: str = "ddim", seed: int = 0) -> Path:
    """Rows per class: n real train images; n samples; img2img of those real images at each
    strength; n class-interpolated samples (only with two classes or more). Saved as one PNG (rows in
    that order, classes stacked)."""
    from synthmix.data.manifest import read_manifest, train_rows
    from synthmix.data.tensors import load_tensor
    from synthmix.generation.embedded.backend import EmbeddedGenerator, plan_rows
    from synthmix.generation.embedded.checkpoint import load_generator
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig
    from synthmix.generation.embedded.fidelity import render_all
    from synthmix.generation.embedded.grid import save_image_grid

    loaded = load_generator(checkpoint)
    train = train_rows(read_manifest(manifest))
    rows_out: list[torch.Tensor] = []
    for c in loaded.classes:
        parents = sorted([r for r in train if r["label"] == c], key=lambda r: r["id"])[:n]
        gen = EmbeddedGenerator(loaded, sampler, {r["id"]: r for r in parents}, manifest)
        cfg = EmbeddedGenerateConfig(checkpoint=str(checkpoint), per_class=n, guidance=guidance, steps=steps,
                                     sampler=sampler, seed=seed, img2img_per_parent=1,
                                     in_dist_strengths=list(strengths), near_ood_strengths=[],
                                     interp_per_class=n if len(loaded.classes) > 1 else 0,
                                     interp_weight=interp_weight)
        planned = [r for r in plan_rows(cfg, loaded, parents) if r["label"] == c]
        rows_out.append(load_tensor(parents, manifest, loaded.resolution).float() / 255)
        groups = [[r for r in planned if r["method"] == "sample"]]
        groups += [[r for r in planned if r["method"] == "img2img" and r["strength"] == s] for s in strengths]
        groups.append([r for r in planned if r["method"] == "interp"])
        for g in filter(None, groups):
            rows_out.append(render_all(gen, g).float() / 255)
    return save_image_grid(rows_out, out)


def print_report(rep: dict[str, Any]) -> None:
    """The fidelity report as rich tables on stderr."""
    from rich.table import Table

    from synthmix.core.log import console

    classes = rep["classes"]
    t = Table(title=f"embedded generator {rep['checkpoint_sha']} ({rep['generator_steps_trained']} steps, "
                    f"{rep['resolution']} px, {rep['sampler']} {rep['sampling_steps']} steps, "
                    f"guidance {rep['guidance']})")
    t.add_column("measure")
    t.add_column("all")
    for c in classes:
        t.add_column(c)
    for name, key in (("real clf on real test", "real_test"), ("real clf on samples (fidelity)", "fidelity"),
                      ("synthetic-only clf on real train (selection)", "synthetic_only_real_train"),
                      ("synthetic-only clf on real test", "synthetic_only_real_test")):
        if key not in rep:
            continue
        r = rep[key]
        t.add_row(name, f"{r['accuracy']:.3f}", *[f"{r['per_class'].get(c, float('nan')):.3f}" for c in classes])
    if "img2img_only_real_test" in rep:
        r = rep["img2img_only_real_test"]
        t.add_row(f"img2img-only (s={r['strength']}) clf on real test", f"{r['accuracy']:.3f}",
                  *[f"{r['per_class'].get(c, float('nan')):.3f}" for c in classes])
    console().print(t)
    s = Table(title="img2img strength sweep (parents: real train images)")
    for col in ("strength", "fidelity", *classes, "mean |change|", "feature cosine"):
        s.add_column(col)
    for r in rep["strength_sweep"]:
        s.add_row(f"{r['strength']:.2f}", f"{r['accuracy']:.3f}",
                  *[f"{r['per_class'].get(c, float('nan')):.3f}" for c in classes],
                  f"{r['mean_abs_change']:.3f}", f"{r['feature_cosine']:.3f}")
    console().print(s)
    if "chosen_strengths" in rep:
        console().print(f"chosen strengths: {rep['chosen_strengths']}")
    console().print(f"sampling {rep['sampling_img_per_s']} img/s; total {rep['total_s']} s")
