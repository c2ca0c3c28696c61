"""Grid expansion: a study's cells are (setups + automatic controls) x models x seeds."""

from __future__ import annotations

from dataclasses import dataclass

from synthmix.experiments.config import ModelSection, SetupSection, StudyConfig
from synthmix.experiments.controls import control_setups


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


def all_setups(cfg: StudyConfig) -> list[SetupSection]:
    """The study's setups followed by its automatic controls."""
    return [*cfg.setups, *control_setups(cfg)]


def expand(cfg: StudyConfig) -> list[Cell]:
    """Every cell, in order (setup-major, then model, then seed); controls last."""
    cells = []
    for setup in all_setups(cfg):
        models = [m for m in cfg.models if setup.models is None or m.id in setup.models]
        for model in models:
            for seed in cfg.seeds:
                cells.append(Cell(setup, model, seed))
    return cells
