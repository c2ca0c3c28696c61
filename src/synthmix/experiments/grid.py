"""Grid expansion: a study's cells are setups x models x seeds (a setup may restrict its models)."""

from __future__ import annotations

from dataclasses import dataclass

from synthmix.experiments.config import ModelSection, SetupSection, StudyConfig


@dataclass(frozen=True)
class Cell:
    """One training + evaluation run of the grid."""

    setup: SetupSection
    model: ModelSection
    seed: int

    @property
    def id(self) -> str:
        """``setup/model/s<seed>``: stable across runs, used in status lines and tables."""
        return f"{self.setup.name}/{self.model.id}/s{self.seed}"


def expand(cfg: StudyConfig) -> list[Cell]:
    """Every cell, in config order (setup-major, then model, then seed)."""
    cells = []
    for setup in cfg.setups:
        models = [m for m in cfg.models if setup.models is None or m.id in setup.models]
        for model in models:
            for seed in cfg.seeds:
                cells.append(Cell(setup, model, seed))
    return cells
