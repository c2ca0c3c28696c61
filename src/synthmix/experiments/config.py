"""The study YAML, typed: dataset, preprocessing, generators, curation, budget, controls,
training setups, seeds, evaluation, verdict.

Every section is a pydantic model, so a typo or a bad value anywhere, nested blocks included,
is an error naming the YAML field (``setups.2.training.lrr: Extra inputs are not permitted``)
before any work starts. Blocks that *override* another stage's settings (``training``,
``contrastive``, a setup's ``training``) are :func:`~synthmix.core.config.partial_model`\\ s of
that stage's own config class; a generator's ``train`` / ``generate`` blocks are validated by
its backend's config class (the backend registry is the extension point, so a new backend
needs no change here).

One name, one default: the near-OOD class is ``dataset.near_ood_class`` (default ``mixed``),
read everywhere through :attr:`StudyConfig.near_ood_class`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from synthmix.core.config import StrictModel, overrides, parse_config, partial_model
from synthmix.core.errors import ConfigError
from synthmix.data.augment import AugmentConfig
from synthmix.data.preprocess import PreprocessConfig
from synthmix.training.config import TrainConfig
from synthmix.training.contrastive import ContrastiveConfig
from synthmix.training.mixes import MixConfig
from synthmix.training.outliers import OutlierConfig

NEAR_OOD_CLASS = "mixed"  # the one default of the near-OOD class name

TrainOverrides = partial_model(TrainConfig)
ContrastiveOverrides = partial_model(ContrastiveConfig)
DETECTORS = ("msp", "energy", "maxlogit", "gen", "knn", "mahalanobis", "vim", "react")


def _stage_settings(config_cls: type, v: dict[str, Any], source: str) -> dict[str, Any]:
    """A stage's settings mapping, validated by the stage's own config class; the device is the
    study's runtime choice, never set here."""
    if "device" in v:
        raise ValueError("device is set by the study")
    parse_config(config_cls, v, source=source)
    return v


class DatasetSection(StrictModel):
    """The real images: an ImageFolder with ``train/`` and ``test/`` (or one folder, split by the scan)."""

    path: str | None = Field(None, description="ImageFolder root (relative to the YAML file); "
                             "null = the bundled compact fruits copy")
    val_fraction: float = Field(0.15, ge=0, lt=1, description="share of train held out as validation "
                                "(early stopping / best epoch / curation thresholds)")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share held out as test when the folder "
                                 "has no train/test split")
    seed: int = Field(0, description="seed of the train/val split")
    on_error: Literal["skip", "fail"] = Field("skip", description="unreadable image: skip it (and "
                                              "report it) or stop")
    near_ood_class: str | None = Field(NEAR_OOD_CLASS, description="class folder that is not a class but "
                                       "the near-OOD evaluation set; never trained on, never generated "
                                       "(null: none)")


class PreprocessingSection(StrictModel):
    image_size: int = Field(32, ge=8, le=512, description="square side the classifier sees")
    augment: AugmentConfig | None = Field(None, description="classifier training augmentation "
                                          "(synthmix.data.augment.AugmentConfig)")
    preprocess: PreprocessConfig | None = Field(None, description="resize mode, background, boxes "
                                                "(synthmix.data.preprocess.PreprocessConfig; size is image_size)")


class GeneratorSection(StrictModel):
    """One generator: a registered backend (``embedded``, ``text2img``, ``dafusion``, ...) and its
    settings, validated by that backend's own config class (errors name
    ``generators.<name>.generate.<field>``)."""

    type: str = Field(..., description="backend name in synthmix.generation.registry")
    train: dict[str, Any] | None = Field(None, description="training settings of a backend that learns "
                                         "from the user's images (embedded): budget, resolution, model")
    generate: dict[str, Any] = Field(default_factory=dict, description="the backend's generation "
                                     "settings: steps, guidance, strengths, images per class / image")
    batch_size: int = Field(8, ge=1, description="rows handed to the backend per render call "
                            "(synthmix.generation.jobs; progress and resume granularity)")

    def check(self, name: str) -> None:
        """Validate ``train`` / ``generate`` with the backend's classes (ConfigError naming the field)."""
        from synthmix.generation.registry import get_backend

        try:
            backend = get_backend(self.type)
        except ConfigError as err:
            raise ConfigError(f"generators.{name}.type: {str(err).split(': ', 1)[-1]}") from None
        settings = dict(self.generate)
        if self.train is not None:
            if self.type != "embedded":
                raise ConfigError(f"generators.{name}.train: only the embedded generator is trained by the "
                                  f"study (type is {self.type!r})")
            from synthmix.generation.embedded.config import TrainConfig as GenTrainConfig

            given = {"manifest", "out_dir", "device"} & set(self.train)
            if given:
                raise ConfigError(f"generators.{name}.train: {sorted(given)} are set by the study")
            parse_config(GenTrainConfig, {**self.train, "manifest": "-", "out_dir": "-"},
                         source=f"generators.{name}.train")
            settings["checkpoint"] = "(trained by the study)"
        for key in ("split", "device"):
            if key in settings:
                raise ConfigError(f"generators.{name}.generate.{key}: set by the study")
        parse_config(backend.config_cls, settings, source=f"generators.{name}.generate")


class CurationSection(StrictModel):
    """Sort generated images into in_dist / near_ood / reject with a real-only classifier."""

    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict, description="synthmix.curation.run.CurationConfig "
                                     "fields (sort thresholds, reject limits, batch size)")
    classifier_setup: str | None = Field(None, description="real-only setup whose first model and seed "
                                         "scores the images (default: the reference setup)")

    @field_validator("settings")
    @classmethod
    def _settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        from synthmix.curation.run import CurationConfig

        return _stage_settings(CurationConfig, v, "curation.settings")


class BudgetSection(StrictModel):
    """Training compute per CE cell. ``steps`` (default): every CE cell of the study takes the same
    number of optimizer steps, ``epochs_over_real`` passes over the *full* real training set, however
    many images its mix holds — a bigger mix must not mean more training. ``epochs``: each cell runs
    ``training.epochs`` over its own training set (compute then differs; the report says by how much)."""

    mode: Literal["steps", "epochs"] = "steps"
    epochs_over_real: float | None = Field(None, gt=0, description="the step budget in epochs over the "
                                           "full real train set (default: training.epochs)")
    pretrain_fraction: float = Field(0.5, gt=0, lt=1, description="pretrain_finetune: share of the steps "
                                     "spent on the pretraining stage (the two stages together = one budget)")


class ControlsSection(StrictModel):
    """Controls added automatically to every study with a synthetic setup (the user writes none)."""

    enabled: bool = True
    augment: bool = Field(True, description="stronger classical augmentation: k classically augmented "
                          "copies per real image (k of the per_real setups), same budget")
    augment_policy: Literal["trivial_augment", "randaugment", "augmix"] = "trivial_augment"
    real_fractions: list[float] = Field([0.25, 0.5, 0.75], description="more real data: real-only on "
                                        "nested per-class subsets of the real train set; with the full "
                                        "set they give 'worth N real images per class'")

    @field_validator("real_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v) or len(set(v)) != len(v):
            raise ValueError("real_fractions: distinct values in (0, 1)")
        return sorted(v)


class VerdictSection(StrictModel):
    """How each synthetic setup is judged against the strongest control."""

    metrics: list[str] | None = Field(None, description="headline metrics judged (default: test accuracy "
                                      "and near-OOD AUROC of the primary detector)")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="family-wise error rate (Holm over setups x metrics)")
    bootstrap: int = Field(2000, ge=100, description="bootstrap replicates over seeds and test images")
    min_seeds: int = Field(3, ge=2, description="fewer paired seeds: no verdict")


class SetupSection(StrictModel):
    """One training setup of the grid (crossed with ``models`` and ``seeds``)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+@%~-]*$")
    generator: str | None = Field(None, description="key of ``generators`` (or 'classical' for the "
                                  "augmentation control); null = real images only")
    mix: MixConfig = Field(default_factory=MixConfig, description="real_only | ratio (real_fraction 0.5 = "
                           "50/50, 0.3 = 30/70) | per_real (k children of each real image) | synthetic_only")
    schedule: Literal["joint", "pretrain_finetune"] = Field(
        "joint", description="joint: train on the mix; pretrain_finetune: train on the synthetic "
        "images, then fine-tune on the real ones (one budget for both)")
    pretrain_mix: MixConfig = Field(default_factory=lambda: MixConfig(kind="synthetic_only"),
                                    description="pretrain_finetune: the mix of the first stage")
    pretrain_training: TrainOverrides | None = Field(None, description="pretrain_finetune: overrides of "
                                                     "the first stage")
    loss: Literal["ce", "supcon"] = "ce"
    near_ood_negatives: bool = Field(False, description="SupCon: near-OOD synthetic images as negatives")
    outliers: OutlierConfig | None = Field(None, description="training with outliers (Outlier Exposure / "
                                           "energy margin): which images, which loss; with loss: supcon "
                                           "they are contrastive negatives and the probe's OE term")
    contrastive: ContrastiveOverrides | None = Field(None, description="SupCon: overrides of ``contrastive``")
    models: list[str] | None = Field(None, description="names from ``models`` (default: all)")
    training: TrainOverrides | None = Field(None, description="overrides of ``training``")
    control: str | None = Field(None, description="set by the study for automatic controls "
                                "(equal-compute real, augment, real fraction)")

    @property
    def uses_synthetic(self) -> bool:
        return (self.mix.kind != "real_only" or self.schedule != "joint" or self.near_ood_negatives
                or (self.loss == "supcon" and self.generator is not None)
                or (self.outliers is not None and self.outliers.source == "synthetic_role"))

    @model_validator(mode="after")
    def _check(self) -> SetupSection:
        if self.uses_synthetic and self.generator is None:
            raise ValueError("uses synthetic images but names no generator")
        if self.generator is not None and not self.uses_synthetic:
            raise ValueError(f"names generator {self.generator!r} but its mix is real_only: it would "
                             "silently equal a real-only setup (give a mix, a schedule or loss: supcon)")
        if self.near_ood_negatives and self.loss != "supcon":
            raise ValueError("near_ood_negatives needs loss: supcon (CE has no negatives)")
        if self.loss == "supcon" and (self.mix.kind != "real_only" or self.schedule != "joint"):
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
    path: str = Field(..., description="ImageFolder of the same classes (cross-dataset test), or any "
                      "image folder when ood is true")
    ood: bool = Field(False, description="true: the folder is out-of-distribution (scored, not classified)")
    group: Literal["near", "far"] | None = Field(None, description="OOD group (OpenOOD style) of an ood folder")


class EvaluationSection(StrictModel):
    near_ood: bool = Field(True, description="score the dataset's near_ood_class as OOD")
    far_ood: bool = Field(True, description="score the offline far-OOD set (synthmix.evaluation.far_ood)")
    far_ood_settings: dict[str, Any] = Field(default_factory=dict)
    extra: list[ExtraSet] = Field(default_factory=list)
    detectors: list[Literal[DETECTORS]] = ["msp", "energy", "knn", "mahalanobis"]  # type: ignore[valid-type]
    primary_detector: Literal[DETECTORS] = "energy"  # type: ignore[valid-type]
    gradcam: bool = True
    corruptions: bool = Field(False, description="test accuracy under ImageNet-C-style corruptions")
    full_spectrum: bool = Field(False, description="also score OOD with every extra ID folder (ood: false; "
                                "same classes, another source) pooled with the test split as ID: "
                                "ood_fs/... and ood_fs_group/... metrics (full-spectrum OOD)")
    diagnostics: bool = Field(True, description="fidelity / diversity / memorisation diagnostics of each "
                              "generator's curated images (synthmix.diagnostics)")
    diagnostics_settings: dict[str, Any] = Field(default_factory=dict, description="synthmix.diagnostics."
                                                 "inspect.InspectConfig fields")

    @field_validator("diagnostics_settings")
    @classmethod
    def _diag(cls, v: dict[str, Any]) -> dict[str, Any]:
        from synthmix.diagnostics.inspect import InspectConfig

        return _stage_settings(InspectConfig, v, "evaluation.diagnostics_settings")

    @model_validator(mode="after")
    def _primary(self) -> EvaluationSection:
        if self.primary_detector not in self.detectors:
            raise ValueError(f"primary_detector {self.primary_detector!r} is not in detectors")
        return self


class StudyConfig(StrictModel):
    """A whole study. ``synthmix run`` expands it into cells = setups x models x seeds, plus the
    automatic controls (:mod:`synthmix.experiments.controls`)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    preprocessing: PreprocessingSection = Field(default_factory=PreprocessingSection)
    generators: dict[str, GeneratorSection] = Field(default_factory=dict)
    curation: CurationSection = Field(default_factory=CurationSection)
    training: TrainOverrides = Field(default_factory=lambda: TrainOverrides(),
                                     description="synthmix.training TrainConfig fields of every CE cell")
    contrastive: ContrastiveOverrides = Field(default_factory=lambda: ContrastiveOverrides(),
                                              description="ContrastiveConfig fields of loss: supcon setups")
    budget: BudgetSection = Field(default_factory=BudgetSection)
    controls: ControlsSection = Field(default_factory=ControlsSection)
    verdict: VerdictSection = Field(default_factory=VerdictSection)
    models: list[ModelSection] = Field(..., min_length=1)
    setups: list[SetupSection] = Field(..., min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    reference: str | None = Field(None, description="the real-only setup the others are compared to "
                                  "(default: the first real-only setup; added when there is none)")
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    device: str = Field("auto", description="auto / cpu / cuda / cuda:1 ... (runtime: not part of any key)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (runtime: not part of any key); "
                                "1 is much faster than 2 on a CPU shared with other jobs")
    jobs: int | None = Field(None, ge=1, description="worker processes (one thread each) for the cells' "
                             "training and evaluation (runtime); default: one per thread on a CPU, 1 on a GPU")

    @property
    def near_ood_class(self) -> str | None:
        return self.dataset.near_ood_class

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
        if self.reference is not None:
            if self.reference not in names:
                raise ValueError(f"reference: {self.reference!r} is not a setup name")
            if next(s for s in self.setups if s.name == self.reference).uses_synthetic:
                raise ValueError(f"reference: {self.reference!r} uses synthetic images; name a real-only setup")
        cs = self.curation.classifier_setup
        if cs is not None:
            if cs not in names:
                raise ValueError(f"curation.classifier_setup: {cs!r} is not a setup name")
            if next(s for s in self.setups if s.name == cs).uses_synthetic:
                raise ValueError(f"curation.classifier_setup: {cs!r} uses synthetic images; name a real-only setup")
        if self.curation.enabled and self.generators and self.dataset.val_fraction == 0:
            raise ValueError("dataset.val_fraction: curation calibrates its thresholds on real validation "
                             "images; set val_fraction > 0 or curation.enabled: false")
        return self

    @property
    def reference_setup(self) -> str:
        """The real-only setup every other is compared to (``real``, added by the controls if absent)."""
        if self.reference:
            return self.reference
        real = [s.name for s in self.setups if not s.uses_synthetic and s.outliers is None]
        return real[0] if real else "real"

    def train_settings(self, setup: SetupSection, model: ModelSection, seed: int,
                       extra: BaseModel | None = None) -> dict[str, Any]:
        """The TrainConfig mapping of a cell: study training + setup (+ ``extra``) overrides + model,
        size and seed. Validated by :meth:`check_cells` before any work."""
        merged = {**overrides(self.training), **overrides(setup.training), **overrides(extra)}
        if self.preprocessing.augment is not None and "augment" not in merged:
            merged["augment"] = self.preprocessing.augment.model_dump(mode="json")
        merged.update(model=model.name, model_kwargs=model.args, input_size=self.preprocessing.image_size,
                      seed=seed)
        return merged

    def contrastive_settings(self, setup: SetupSection, model: ModelSection, seed: int) -> dict[str, Any]:
        c = {**overrides(self.contrastive), **overrides(setup.contrastive)}
        return {**c, "model": model.name, "model_kwargs": {**model.args, **c.get("model_kwargs", {})},
                "input_size": self.preprocessing.image_size, "seed": seed}


def default_run_dir(cfg: StudyConfig) -> Path:
    """``runs/<study name>``, relative to the working directory (made absolute by the runner)."""
    return Path("runs") / cfg.name


def dataset_root(cfg: StudyConfig) -> Path:
    if cfg.dataset.path is None:
        from synthmix.data.bundled import fruits_path

        return fruits_path()
    return Path(cfg.dataset.path)
