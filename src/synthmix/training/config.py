"""``TrainConfig``: everything one call of :func:`synthmix.training.loop.fit` needs.

YAML form (all fields optional, defaults shown where it matters)::

    model: small_cnn          # a name from synthmix.models.available_models()
    model_kwargs: {}          # passed to create_model (input_size is added from input_size)
    input_size: 64            # images are S x S
    epochs: 30
    steps: null               # optimizer-step budget; overrides epochs (equal compute across mixes)
    batch_size: 32
    optimizer: adamw          # sgd | adamw
    lr: 0.001
    weight_decay: 0.0005
    momentum: 0.9             # sgd only
    schedule: cosine          # cosine | step | none (per step, after a linear warmup)
    warmup_epochs: 0
    step_epochs: 10           # step schedule: lr *= step_gamma every step_epochs
    step_gamma: 0.1
    label_smoothing: 0.0
    early_stopping_patience: null   # validations without improvement before stopping
    early_stopping_metric: val_loss # val_loss | val_acc (best weights are kept either way)
    augment: {hflip: 0.5}     # synthmix.data.augment.AugmentConfig
    normalization: imagenet   # imagenet | inception | clip | none (see synthmix.models.model_defaults)
    backbone_lr_mult: 1.0     # backbone lr = lr * this (0.1 for a pretrained backbone)
    mixup: {mixup_alpha: 0, cutmix_alpha: 0}   # MixUp / CutMix per batch (training/mixup.py)
    ema_decay: null           # EMA of the weights (0.99 ...): validation + final weights (training/ema.py)
    finetune: {mode: full}    # full | head | partial (blocks: N) | lora (lora_rank, lora_alpha); training/finetune.py
    seed: 0
    device: auto
    num_threads: null         # torch.set_num_threads when given
    precision: fp32           # fp32 | bf16 | auto: bf16 autocast of forward + loss (weights and optimizer
                              # stay fp32); auto = bf16 where the device has it natively (AVX-512 BF16 / AMX, GPU)
    channels_last: false      # NHWC memory format for conv nets (faster convolutions and pooling on CPUs)
    eval_every: 1             # validate every N epochs (and at the last)
    eval_batch_size: 256
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from synthmix.core.config import StrictModel
from synthmix.data.augment import AugmentConfig
from synthmix.training.finetune import FinetuneConfig
from synthmix.training.mixup import MixupConfig


class TrainConfig(StrictModel):
    """Settings of one supervised (cross-entropy) training stage."""

    model: str = Field("small_cnn", description="registered model name")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra create_model arguments")
    input_size: int = Field(64, ge=8, le=1024, description="square input size in pixels")
    epochs: int = Field(30, ge=1)
    steps: int | None = Field(None, ge=1, description="budget in optimizer steps; overrides epochs "
                              "(the last epoch is cut short): equal compute for training sets of any size")
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "step", "none"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warmup length (may be fractional)")
    step_epochs: int = Field(10, ge=1)
    step_gamma: float = Field(0.1, gt=0, le=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_metric: Literal["val_loss", "val_acc"] = "val_loss"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    normalization: Literal["imagenet", "inception", "clip", "none"] = "imagenet"
    backbone_lr_mult: float = Field(1.0, ge=0, le=1, description="backbone lr = lr * this (the head gets lr): "
                                    "e.g. 0.1 to fine-tune a pretrained backbone")
    mixup: MixupConfig = Field(default_factory=MixupConfig, description="MixUp / CutMix (off by default)")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="EMA of the weights (e.g. 0.99); validation "
                                    "and the final weights use the average (training/ema.py)")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="which parameters train: "
                                     "full | head | partial (last N blocks) | lora")
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16: autocast of forward + loss, fp32 weights and optimizer; auto: bf16 where "
        "the device computes it natively (synthmix.core.device.native_bf16), else fp32")
    channels_last: bool = Field(False, description="train in the channels-last (NHWC) memory format")
    eval_every: int = Field(1, ge=1)
    eval_batch_size: int = Field(256, ge=1)

    def model_args(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model`` (``input_size`` included unless overridden)."""
        return {"input_size": self.input_size, **self.model_kwargs}
