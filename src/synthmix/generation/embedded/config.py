"""Settings of the embedded generator: model size, training, and generation (backend) configs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthmix.core.config import StrictModel
from synthmix.data.augment import AugmentConfig

# Size presets: channels per resolution level, resnet layers per level, attention at the lowest
# level. ``tiny`` trains a step in milliseconds (tests); ``small`` is the CPU default; ``base``
# is for a GPU.
SIZE_PRESETS: dict[str, dict] = {
    "tiny": {"channels": (8, 16), "layers_per_block": 1, "attention": False, "norm_groups": 4},
    "small": {"channels": (32, 64, 128), "layers_per_block": 1, "attention": False, "norm_groups": 8},
    "medium": {"channels": (48, 96, 192), "layers_per_block": 1, "attention": False, "norm_groups": 8},
    "base": {"channels": (64, 128, 256), "layers_per_block": 2, "attention": True, "norm_groups": 32},
}


Precision = Literal["fp32", "bf16"]


class ModelConfig(StrictModel):
    """The denoiser: a diffusers ``UNet2DModel`` plus a class embedding with a null class."""

    size: Literal["tiny", "small", "medium", "base"] = "small"
    channels: tuple[int, ...] | None = Field(None, description="override the preset's channels per level")
    layers_per_block: int | None = Field(None, ge=1)
    attention: bool | None = None
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    num_train_timesteps: int = Field(1000, ge=10)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"

    def resolved(self) -> dict:
        """The preset with overrides applied: {channels, layers_per_block, attention, norm_groups}."""
        p = dict(SIZE_PRESETS[self.size])
        for k in ("channels", "layers_per_block", "attention"):
            if getattr(self, k) is not None:
                p[k] = tuple(getattr(self, k)) if k == "channels" else getattr(self, k)
        return p


def default_augment() -> AugmentConfig:
    # Heavy geometry (users have ~100 images per class), but only mild colour changes: colour is
    # what tells many classes apart (an apple turned yellow is a banana-coloured apple).
    return AugmentConfig(hflip=0.5, crop_scale=(0.7, 1.0), crop_ratio=(0.85, 1.18), rotation=10.0,
                         translate=0.04, brightness=0.1, contrast=0.1, saturation=0.1, hue=0.01)


class TrainConfig(StrictModel):
    """``synthmix generator train CONFIG``: what to learn from, for how long, and where to write."""

    manifest: str = Field(..., description="manifest whose real train rows the model learns from")
    out_dir: str = Field(..., description="directory for checkpoint.pt, grids and the training log")
    classes: list[str] | None = Field(None, description="classes to learn (default: all train labels)")
    exclude_classes: list[str] = Field(default_factory=list, description="labels to leave out (e.g. mixed)")
    resolution: int = Field(32, ge=8, le=512)
    model: ModelConfig = Field(default_factory=ModelConfig)
    steps: int = Field(2000, ge=1, description="optimizer steps (the reproducible budget)")
    max_minutes: float | None = Field(None, gt=0, description="wall-clock budget over all resumed sessions")
    # 32, not 64: at a fixed CPU budget twice the steps trained better on the fruits data
    # (docs/bench/embedded_generator.md).
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="max EMA decay (ramped up early on)")
    cond_drop: float = Field(0.15, ge=0, le=1, description="label dropout -> null class (for guidance)")
    min_snr_gamma: float | None = Field(5.0, gt=0, description="Min-SNR loss weighting (None = plain MSE)")
    augment: AugmentConfig = Field(default_factory=default_augment)
    checkpoint_every: int = Field(250, ge=1)
    sample_every: int = Field(500, ge=0, description="write a sample grid every N steps (0 = only at the end)")
    sample_steps: int = Field(20, ge=1)
    guidance: float = Field(2.0, ge=0)
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    # Execution settings (docs/bench/embedded_speed.md): they change speed, not what is learnt, so a
    # run may be resumed with other values (weights, optimizer state and checkpoints stay fp32).
    precision: Precision = Field("fp32", description="bf16: autocast convolutions/matmuls to bfloat16 "
                                 "(CPUs with AVX512-BF16 or AMX, GPUs); fp32: everything in float32")
    channels_last: bool = Field(False, description="channels-last memory format for the model and batches")
    compile: bool = Field(False, description="torch.compile the model (pays only on long runs: compile "
                          "time is minutes on a small CPU)")
    low_res_steps: int = Field(0, ge=0, description="train the first N steps at half the resolution "
                               "(a quarter of the FLOPs per step), then at `resolution`")


Role = Literal["in_dist", "near_ood", "unsorted"]


class SamplerConfig(StrictModel):
    """How images are denoised."""

    sampler: Literal["ddim", "dpmpp"] = "ddim"
    steps: int = Field(25, ge=1, le=1000)
    guidance: float = Field(2.0, description="classifier-free guidance scale (1 = none, <1 weakens the class)")
    precision: Precision = Field("fp32", description="bf16: run the denoiser under bfloat16 autocast "
                                 "(the scheduler stays fp32); images differ slightly from fp32 ones")


class EmbeddedGenerateConfig(SamplerConfig):
    """``generator: {type: embedded, ...}`` in a ``synthmix generate`` config.

    Plans ``per_class`` samples per class (role in_dist), ``img2img_per_parent`` variants of each
    real train image at each strength in ``in_dist_strengths`` / ``near_ood_strengths``, and
    ``interp_per_class`` class-interpolated images per class (role near_ood).
    """

    checkpoint: str | None = Field(None, description="a trained checkpoint.pt; None: train with `train`")
    train: dict | None = Field(None, description="TrainConfig fields (manifest/out_dir filled in) used "
                               "when checkpoint is None; a finished model in out_dir/model is reused")
    per_class: int = Field(0, ge=0, description="plain class-conditional samples per class (in_dist)")
    img2img_per_parent: int = Field(0, ge=0, description="variants per real train image and strength")
    # Defaults measured on the fruits data (docs/bench/embedded_generator.md): DDIM 20 steps,
    # guidance 2; below 0.6 images change by < 0.07 mean absolute pixel value (barely visible).
    in_dist_strengths: list[float] = Field(default_factory=lambda: [0.8])
    near_ood_strengths: list[float] = Field(default_factory=lambda: [0.9])
    interp_per_class: int = Field(0, ge=0, description="near-OOD images mixing the class with another")
    interp_weight: float = Field(0.5, ge=0, le=1, description="weight of the other class's embedding")
    vos_per_class: int = Field(0, ge=0, description="near-OOD images per class conditioned on points sampled "
                               "around the class embedding (VOS / Dream-OOD style; generation/embedded/vos.py)")
    vos_radii: list[float] = Field(default_factory=lambda: [0.5], min_length=1, description="vos: radius in "
                                   "units of the distance to the nearest other class embedding (used in turn)")
    max_parents_per_class: int | None = Field(None, ge=1, description="cap on img2img parents per class")
    split: str = Field("train", description="split of generated rows (they are training data; "
                       "train_rows() still keeps them out of generator training: source != real)")
    batch_size: int = Field(32, ge=1, description="most images per sampling (denoise) call, bounding "
                            "memory; within the job's rows per render call (GenerateConfig.batch_size), "
                            "so the smaller of the two applies; images do not depend on it")
    seed: int = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _strengths_ok(self):
        if any(r < 0 for r in self.vos_radii):
            raise ValueError(f"vos_radii: radii must be >= 0, got {self.vos_radii}")
        for name in ("in_dist_strengths", "near_ood_strengths"):
            for s in getattr(self, name):
                if not 0 <= s <= 1:
                    raise ValueError(f"{name}: strength {s} not in [0, 1]")
        if self.checkpoint is None and self.train is None:
            raise ValueError("give checkpoint (a trained model) or train (settings to train one)")
        return self
