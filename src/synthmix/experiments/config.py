"""The study YAML: dataset, preprocessing, generators, curation, training setups, seeds, evaluation.

Every section is a :class:`StrictModel`, so a typo or a bad value is an error naming the field
(``setups.2.real_fraction: ...``). Settings that belong to another stage (the embedded
generator's training budget, the classifier's optimiser, curation thresholds) are kept as
mappings here and validated with *that* stage's own config class by :func:`validate_study`,
before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from synthmix.core.config import StrictModel, load_yaml, parse_config
from synthmix.core.errors import ConfigError


class DatasetSection(StrictModel):
    """The real images: an ImageFolder with ``train/`` and ``test/`` (or one folder, split by the scan)."""

    path: str | None = Field(None, description="ImageFolder root (relative to the YAML file); "
                             "null = the bundled compact fruits copy")
    val_fraction: float = Field(0.15, ge=0, lt=1, description="share of train held out as validation "
                                "(early stopping / best epoch)")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share held out as test when the folder "
                                 "has no train/test split")
    seed: int = Field(0, description="seed of the train/val split")
    on_error: Literal["skip", "fail"] = Field("skip", description="unreadable image: skip it (and "
                                              "report it) or stop")
    near_ood_class: str | None = Field("mixed", description="class folder that is not a class but the "
                                       "near-OOD evaluation set (null: none)")


class PreprocessingSection(StrictModel):
    image_size: int = Field(32, ge=8, le=512, description="square side the classifier sees")
    augment: dict[str, Any] = Field(default_factory=dict, description="AugmentConfig fields for "
                                    "classifier training (synthmix.data.augment)")
    preprocess: dict[str, Any] = Field(default_factory=dict, description="PreprocessConfig fields "
                                       "(synthmix.data.preprocess): resize mode, background, boxes")


class GeneratorSection(StrictModel):
    """One generator: a registered backend (``embedded``, ``text2img``, ``dafusion``) and its settings."""

    type: str = Field(..., description="backend name in synthmix.generation.registry")
    train: dict[str, Any] | None = Field(None, description="training settings for backends that learn "
                                         "from the user's images (embedded): budget, resolution, model")
    generate: dict[str, Any] = Field(default_factory=dict, description="the backend's generation "
                                     "settings: steps, guidance, strengths, images per class / image")
    batch_size: int = Field(8, ge=1, description="rows per render call (synthmix.generation.jobs)")


class CurationSection(StrictModel):
    """Sort generated images into in_dist / near_ood / reject with a real-only classifier."""

    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict, description="synthmix.curation.run.CurationConfig "
                                     "fields (sort thresholds, batch size)")
    classifier_setup: str | None = Field(None, description="real-only setup whose first model and seed "
                                         "scores the images (default: the reference setup)")


class SetupSection(StrictModel):
    """One training setup of the grid (crossed with ``models`` and ``seeds``)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    generator: str | None = Field(None, description="key of ``generators``; null = real images only")
    mix: dict[str, Any] = Field(default_factory=dict, description="synthmix.training.mixes.MixConfig: "
                                "kind real_only | ratio (real_fraction 0.5 = 50/50, 0.3 = 30/70) | "
                                "per_real (k synthetic per real image) | synthetic_only")
    schedule: Literal["joint", "pretrain_finetune"] = Field(
        "joint", description="joint: train on the mix; pretrain_finetune: train on the synthetic "
        "images, then fine-tune on the real ones")
    pretrain_mix: dict[str, Any] = Field(default_factory=lambda: {"kind": "synthetic_only"},
                                         description="pretrain_finetune: MixConfig of the first stage")
    pretrain_training: dict[str, Any] = Field(default_factory=dict, description="pretrain_finetune: "
                                              "TrainConfig overrides of the first stage")
    near_ood_negatives: bool = Field(False, description="SupCon: near-OOD synthetic images as negatives")
    contrastive: dict[str, Any] = Field(default_factory=dict, description="SupCon: overrides of "
                                        "``contrastive``")
    loss: Literal["ce", "supcon"] = "ce"
    models: list[str] | None = Field(None, description="names from ``models`` (default: all)")
    training: dict[str, Any] = Field(default_factory=dict, description="overrides of ``training``")

    @model_validator(mode="after")
    def _check(self) -> SetupSection:
        synthetic = self.mix.get("kind", "real_only") != "real_only" or self.schedule != "joint" \
            or self.near_ood_negatives
        if synthetic and self.generator is None:
            raise ValueError("uses synthetic images but names no generator")
        if self.near_ood_negatives and self.loss != "supcon":
            raise ValueError("near_ood_negatives needs loss: supcon (CE has no negatives)")
        if self.loss == "supcon" and (self.mix.get("kind", "real_only") != "real_only" or self.schedule != "joint"):
            # contrastive_setups takes real rows + every in-dist row (+ near-OOD negatives): a mix or
            # a schedule here would be silently ignored, so it is refused
            raise ValueError("loss: supcon uses the real images plus every curated in-distribution image "
                             "of its generator; leave mix and schedule at their defaults")
        return self


class ModelSection(StrictModel):
    name: str = Field(..., description="a registered model (synthmix.models.available_models())")
    label: str | None = Field(None, description="short name in tables (default: name)")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model")

    @property
    def id(self) -> str:
        return self.label or self.name


class ExtraSet(StrictModel):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: str = Field(..., description="ImageFolder of the same classes (cross-dataset test)")
    ood: bool = Field(False, description="true: the folder is out-of-distribution (scored, not classified)")


class EvaluationSection(StrictModel):
    near_ood: bool = Field(True, description="score the dataset's near_ood_class as OOD")
    far_ood: bool = Field(True, description="score the offline far-OOD set (synthmix.evaluation.far_ood)")
    far_ood_settings: dict[str, Any] = Field(default_factory=dict)
    extra: list[ExtraSet] = Field(default_factory=list)
    detectors: list[Literal["msp", "energy", "knn", "mahalanobis"]] = ["msp", "energy", "knn", "mahalanobis"]
    primary_detector: Literal["msp", "energy", "knn", "mahalanobis"] = "energy"
    gradcam: bool = True

    @model_validator(mode="after")
    def _primary(self) -> EvaluationSection:
        if self.primary_detector not in self.detectors:
            raise ValueError(f"primary_detector {self.primary_detector!r} is not in detectors")
        return self


class StudyConfig(StrictModel):
    """A whole study. ``synthmix run`` expands it into cells = setups x models x seeds."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    preprocessing: PreprocessingSection = Field(default_factory=PreprocessingSection)
    generators: dict[str, GeneratorSection] = Field(default_factory=dict)
    curation: CurationSection = Field(default_factory=CurationSection)
    training: dict[str, Any] = Field(default_factory=dict, description="synthmix.training TrainConfig fields")
    contrastive: dict[str, Any] = Field(default_factory=dict, description="synthmix.training.contrastive "
                                        "ContrastiveConfig fields for loss: supcon setups")
    models: list[ModelSection] = Field(..., min_length=1)
    setups: list[SetupSection] = Field(..., min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    reference: str | None = Field(None, description="setup the others are compared to (default: the "
                                  "first real-only setup)")
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    device: str = Field("auto", description="auto / cpu / cuda / cuda:1 ... (runtime: not part of any key)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (runtime: not part of any key); "
                                "1 is much faster than 2 on a CPU shared with other jobs")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds repeat")
        return v

    @model_validator(mode="after")
    def _refs(self) -> StudyConfig:
        names = [s.name for s in self.setups]
        if len(set(names)) != len(names):
            raise ValueError(f"setups: names repeat: {sorted({n for n in names if names.count(n) > 1})}")
        model_ids = [m.id for m in self.models]
        if len(set(model_ids)) != len(model_ids):
            raise ValueError("models: two models have the same label; give one a `label`")
        for i, s in enumerate(self.setups):
            if s.generator is not None and s.generator not in self.generators:
                raise ValueError(f"setups.{i}.generator: {s.generator!r} is not a key of generators "
                                 f"({', '.join(self.generators) or 'none defined'})")
            for m in s.models or []:
                if m not in model_ids:
                    raise ValueError(f"setups.{i}.models: {m!r} is not one of {model_ids}")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference: {self.reference!r} is not a setup name")
        cs = self.curation.classifier_setup
        if cs is not None:
            if cs not in names:
                raise ValueError(f"curation.classifier_setup: {cs!r} is not a setup name")
            if next(s for s in self.setups if s.name == cs).generator is not None:
                raise ValueError(f"curation.classifier_setup: {cs!r} uses synthetic images; name a real-only setup")
        if self.curation.enabled and self.generators and self.dataset.val_fraction == 0:
            raise ValueError("dataset.val_fraction: curation calibrates its thresholds on real validation "
                             "images; set val_fraction > 0 or curation.enabled: false")
        return self

    @property
    def reference_setup(self) -> str | None:
        if self.reference:
            return self.reference
        real = [s.name for s in self.setups if s.generator is None]
        return real[0] if real else None


def parse_study(data: Any, source: str = "study", base_dir: str | Path | None = None) -> StudyConfig:
    """Validate a mapping as a study; a relative ``dataset.path`` is made absolute from ``base_dir``."""
    cfg = parse_config(StudyConfig, data, source=source)
    if base_dir is not None:
        cfg = _absolute_paths(cfg, Path(base_dir))
    validate_study(cfg, source)
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


def validate_study(cfg: StudyConfig, source: str = "study") -> None:
    """Check the nested settings with their owners' config classes; raise ConfigError naming the field."""
    from synthmix.experiments import stages

    for check in stages.NESTED_CHECKS:
        try:
            check(cfg)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
