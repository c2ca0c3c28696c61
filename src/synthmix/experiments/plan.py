"""From a study config to a DAG of stages: scan -> generator -> generate -> curate -> train -> evaluate.

Shared stages (one scan, one generator per generator config, ...) are built once and
referenced by every cell that needs them; the executor runs each key once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmix.experiments import stages
from synthmix.experiments.config import StudyConfig
from synthmix.experiments.controls import CLASSICAL
from synthmix.experiments.executor import Stage, topo_order
from synthmix.experiments.grid import Cell, all_setups, expand


@dataclass
class CellPlan:
    cell: Cell
    train: Stage
    evaluate: Stage

    def as_dict(self) -> dict[str, Any]:
        s = self.cell.setup
        return {"id": self.cell.id, "setup": s.name, "model": self.cell.model.id, "seed": self.cell.seed,
                "control": s.control, "synthetic": s.uses_synthetic, "loss": s.loss,
                "generator": s.generator, "mix": s.mix.label(), "real_fraction": s.mix.real_subset,
                "outliers": s.outliers.source if s.outliers else None,
                "train": self.train.key, "evaluate": self.evaluate.key}


@dataclass
class Plan:
    config: StudyConfig
    cells: list[CellPlan] = field(default_factory=list)
    shared: dict[str, Stage] = field(default_factory=dict)  # name -> stage (scan, generator:x, ...)

    @property
    def leaves(self) -> list[Stage]:
        return [c.evaluate for c in self.cells] + [s for n, s in self.shared.items() if n.startswith("inspect:")]

    def stages(self) -> list[Stage]:
        return topo_order(self.leaves)

    def as_dict(self) -> dict[str, Any]:
        """What ``plan.json`` holds: cells with their stage keys, every stage with its deps."""
        return {"study": self.config.name,
                "reference": self.config.reference_setup,
                "cells": [c.as_dict() for c in self.cells],
                "shared": {n: s.key for n, s in self.shared.items()},
                "stages": [{"key": s.key, "kind": s.kind, "label": s.label,
                            "deps": {n: d.key for n, d in s.deps.items()}} for s in self.stages()]}


def build_plan(cfg: StudyConfig) -> Plan:
    """Every stage of the study, keyed by the hash of its resolved config and its inputs."""
    plan = Plan(cfg)
    scan = Stage("scan", "scan dataset", stages.scan.config(cfg), stages.scan.run)
    plan.shared["scan"] = scan

    synthetic: dict[str, Stage] = {}
    classifier: Stage | None = None
    cells = expand(cfg)
    used = [g for g in cfg.generators if any(c.setup.generator == g for c in cells)]
    for name in used:
        gen_cfg = cfg.generators[name]
        deps: dict[str, Stage] = {"scan": scan}
        if gen_cfg.train is not None:
            trained = Stage("generator", f"train generator {name}", stages.generator_train.config(cfg, name),
                            stages.generator_train.run, {"scan": scan})
            plan.shared[f"generator:{name}"] = trained
            deps["generator"] = trained
        generated = Stage("generate", f"generate {name}", stages.generate.config(cfg, name),
                          stages.generate.run, deps)
        plan.shared[f"generate:{name}"] = generated
        synthetic[name] = generated
        if cfg.curation.enabled:
            if classifier is None:
                cc = curation_cell(cfg)
                classifier = Stage("train", f"train {cc.id}", stages.train.config(cfg, cc), stages.train.run,
                                   {"scan": scan})
                plan.shared["curation_classifier"] = classifier
            curated = Stage("curate", f"curate {name}", stages.curate.config(cfg, name), stages.curate.run,
                            {"scan": scan, "generated": generated, "classifier": classifier})
            plan.shared[f"curate:{name}"] = curated
            synthetic[name] = curated
            if cfg.evaluation.diagnostics:
                plan.shared[f"inspect:{name}"] = Stage(
                    "inspect", f"inspect {name}", stages.inspect.config(cfg, name), stages.inspect.run,
                    {"synthetic": curated, "classifier": classifier})
    for k in sorted({c.setup.mix.k for c in cells if c.setup.generator == CLASSICAL}):
        st = Stage("classical", f"classical augmentation x{k}", stages.classical.config(cfg, k),
                   stages.classical.run, {"scan": scan})
        plan.shared[f"classical:{k}"] = st

    eval_deps: dict[str, Stage] = {"scan": scan}
    if cfg.evaluation.far_ood:
        far = Stage("far_ood", "far-OOD set", stages.far_ood.config(cfg), stages.far_ood.run)
        plan.shared["far_ood"] = far
        eval_deps["far_ood"] = far
    for cell in cells:
        deps = {"scan": scan}
        if cell.setup.generator == CLASSICAL:
            deps["synthetic"] = plan.shared[f"classical:{cell.setup.mix.k}"]
        elif cell.setup.generator is not None:
            deps["synthetic"] = synthetic[cell.setup.generator]
        train = Stage("train", f"train {cell.id}", stages.train.config(cfg, cell), stages.train.run, deps)
        ev = Stage("evaluate", f"evaluate {cell.id}", stages.evaluate.config(cfg, cell), stages.evaluate.run,
                   {**eval_deps, "train": train})
        plan.cells.append(CellPlan(cell, train, ev))
    return plan


def curation_cell(cfg: StudyConfig) -> Cell:
    """The classifier that scores synthetic images: a real-only CE cell (by default the reference
    setup's first model and seed, so its training stage is shared with that cell)."""
    setup = next(s for s in all_setups(cfg) if s.name == (cfg.curation.classifier_setup or cfg.reference_setup))
    return Cell(setup, cfg.models[0], cfg.seeds[0])


def plan_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "plan.json"
