"""Loading a study: parse the YAML into :class:`~synthmix.experiments.config.StudyConfig`, make its
paths absolute, then the checks that need the registries or the disk — all before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.config import load_yaml, overrides, parse_config
from synthmix.core.errors import ConfigError
from synthmix.experiments.config import StudyConfig, dataset_root
from synthmix.experiments.grid import expand
from synthmix.training.config import TrainConfig
from synthmix.training.contrastive import ContrastiveConfig


def parse_study(data: Any, source: str = "study", base_dir: str | Path | None = None) -> StudyConfig:
    """Validate a mapping as a study; a relative ``dataset.path`` is made absolute from ``base_dir``."""
    cfg = parse_config(StudyConfig, data, source=source)
    if base_dir is not None:
        cfg = _absolute_paths(cfg, Path(base_dir))
    try:
        check_study(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_study(path: str | Path) -> StudyConfig:
    """Load and fully validate a study YAML (every nested stage config included)."""
    path = Path(path)
    return parse_study(load_yaml(path), source=str(path), base_dir=path.resolve().parent)


def _absolute_paths(cfg: StudyConfig, base: Path) -> StudyConfig:
    def absolute(p: str) -> str:
        return str(p if Path(p).is_absolute() else (base / p).resolve())

    ds = cfg.dataset.model_copy(update={"path": absolute(cfg.dataset.path)}) if cfg.dataset.path else cfg.dataset
    extra = [e.model_copy(update={"path": absolute(e.path)}) for e in cfg.evaluation.extra]
    return cfg.model_copy(update={"dataset": ds,
                                  "evaluation": cfg.evaluation.model_copy(update={"extra": extra})})


def check_study(cfg: StudyConfig) -> None:
    """What the section models cannot check alone (needs the registries or the disk), before any
    work: the dataset folders exist, model names are registered, every cell's merged training
    settings are valid, generators' settings are valid for their backend."""
    from synthmix.models import available_models
    from synthmix.models.registry import TIMM_PREFIX

    root = dataset_root(cfg)
    if not root.is_dir():
        raise ConfigError(f"dataset.path: not a directory: {root}")
    for i, e in enumerate(cfg.evaluation.extra):
        if not Path(e.path).is_dir():
            raise ConfigError(f"evaluation.extra.{i}.path: not a directory: {e.path}")
    names = available_models()
    for i, m in enumerate(cfg.models):
        if m.name.startswith(TIMM_PREFIX):
            _check_timm(m.name, i)
        elif m.name not in names:
            raise ConfigError(f"models.{i}.name: unknown model {m.name!r}; available: {', '.join(names)}, "
                              f"or {TIMM_PREFIX}<architecture>")
    for name, g in cfg.generators.items():
        g.check(name)
        if g.type == "embedded" and g.generate.get("interp_per_class"):
            _check_interp(cfg, name, root)
    if cfg.budget.mode == "steps":
        for i, s in enumerate(cfg.setups):
            for block in ("training", "pretrain_training"):
                fixed = {"epochs", "steps"} & set(overrides(getattr(s, block)))
                if fixed:
                    raise ConfigError(f"setups.{i}.{block}: {sorted(fixed)} — with budget.mode: steps every CE "
                                      "cell gets the same optimizer steps (budget.epochs_over_real); remove "
                                      "it, or set budget.mode: epochs (compute then differs between setups)")
    for cell in expand(cfg):
        i = next((i for i, s in enumerate(cfg.setups) if s.name == cell.setup.name), None)
        where = f"setups.{i} ({cell.setup.name})" if i is not None else f"control {cell.setup.name}"
        parse_config(TrainConfig, cfg.train_settings(cell.setup, cell.model, cell.seed), source=where)
        if cell.setup.schedule == "pretrain_finetune":
            parse_config(TrainConfig, cfg.train_settings(cell.setup, cell.model, cell.seed,
                                                         cell.setup.pretrain_training),
                         source=f"{where}.pretrain_training")
        if cell.setup.loss == "supcon":
            parse_config(ContrastiveConfig, cfg.contrastive_settings(cell.setup, cell.model, cell.seed),
                         source=f"{where}.contrastive")


def _check_interp(cfg: StudyConfig, name: str, root) -> None:
    """Class-interpolated near-OOD images need two generator classes: refused before any training."""
    from synthmix.generation.embedded.backend import check_interp_classes
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig

    top = root / "train" if (root / "train").is_dir() else root
    classes = sorted(p.name for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and p.name != cfg.near_ood_class)
    gen = cfg.generators[name].generate
    try:
        check_interp_classes(EmbeddedGenerateConfig(**{**gen, "checkpoint": "-"}), classes)
    except ConfigError as err:
        raise ConfigError(f"generators.{name}.generate.{str(err).split('.', 1)[-1]}") from None


def _check_timm(name: str, i: int) -> None:
    """A ``timm:<architecture>`` model must exist in the installed timm (checked before any work)."""
    try:
        import timm
    except ImportError:
        raise ConfigError(f"models.{i}.name: {name} needs timm (pip install 'synthmix[timm]')") from None
    arch = name.split(":", 1)[1].split(".")[0]
    if not timm.is_model(arch):
        raise ConfigError(f"models.{i}.name: timm has no architecture {arch!r}")
