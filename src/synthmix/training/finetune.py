"""What part of a pretrained model trains: full fine-tune, head only, the last N blocks, or LoRA.

``FinetuneConfig`` is ``TrainConfig.finetune``; :func:`apply_finetune` sets ``requires_grad``
(and injects LoRA adapters with peft) before the optimizer is built, and
:func:`merge_finetune` folds LoRA adapters back into plain weights after training, so the
saved state dict loads into a freshly created model. The head (``model.head``) always trains.

- ``full``: everything trains (the backbone at ``lr * backbone_lr_mult``; see
  ``TrainConfig.backbone_lr_mult`` and ``warmup_epochs``);
- ``head``: the backbone is frozen (a linear probe trained by the loop, with augmentation;
  ``synthmix.training.probe`` is the cheaper feature-cache route);
- ``partial``: only the last ``blocks`` blocks of the backbone train, plus what comes after
  them (final norms). Blocks are timm's parameter groups (``group_matcher``: ResNet layers,
  ConvNeXt stages, ViT blocks) for ``timm:`` models, else the backbone's top-level children
  that hold parameters;
- ``lora``: the backbone is frozen and low-rank adapters (peft LoRA, rank ``lora_rank``,
  scale ``lora_alpha / lora_rank``) are added to its Linear and (non-grouped) Conv2d layers,
  or to the modules named in ``lora_targets``.

BatchNorm layers of frozen parts stay in eval mode (their running statistics do not move
either: frozen means unchanged); ``freeze_bn: false`` lets them update in train mode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthmix.core.config import StrictModel
from synthmix.core.errors import ConfigError


class FinetuneConfig(StrictModel):
    """Which parameters of the model train (see the module docstring)."""

    mode: Literal["full", "head", "partial", "lora"] = "full"
    blocks: int = Field(1, ge=1, description="partial: number of last backbone blocks that train")
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | None = Field(None, description="module names (suffixes) that get adapters; "
                                           "default: every Linear and non-grouped Conv2d of the backbone")
    freeze_bn: bool = Field(True, description="keep BatchNorm layers of frozen parts in eval mode "
                            "(running statistics unchanged)")


def _blocks(backbone) -> list[list[str]]:
    """Parameter-name groups of the backbone, input to output (names relative to ``backbone``)."""
    net = getattr(backbone, "net", None)
    if net is not None and hasattr(net, "group_matcher"):
        from timm.models import group_parameters

        groups = group_parameters(net, net.group_matcher(coarse=True))
        ordered = [[f"net.{n}" for n in groups[k]] for k in sorted(groups)]
        # trailing groups of final norms only (e.g. ConvNeXt's head.norm) are not blocks
        tail: list[str] = []
        while ordered and all("norm" in n.rsplit(".", 2)[-2] or ".head." in f".{n}" for n in ordered[-1]):
            tail = ordered.pop() + tail
        if tail and ordered:
            ordered[-1] = ordered[-1] + tail
        return ordered
    out = []
    for name, child in backbone.named_children():
        names = [f"{name}.{n}" for n, _ in child.named_parameters()]
        if names:
            out.append(names)
    return out


def _lora_targets(backbone) -> list[str]:
    from torch import nn

    names = []
    for name, m in backbone.named_modules():
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            names.append(name)
    return names


def apply_finetune(model, cfg: FinetuneConfig) -> list[str]:
    """Set which parameters of ``model`` (a Classifier) train; inject LoRA for ``mode: lora``.
    Returns the names of the trainable parameters. Idempotent (a second call with the same
    config changes nothing)."""
    backbone = model.backbone
    has_lora = any("lora_" in n for n, _ in backbone.named_parameters())
    if has_lora and cfg.mode != "lora":
        raise ConfigError("finetune.mode: the model holds LoRA adapters; merge them (merge_finetune) first")
    for p in model.parameters():
        p.requires_grad_(True)
    if cfg.mode == "full":
        return [n for n, p in model.named_parameters() if p.requires_grad]
    for p in backbone.parameters():
        p.requires_grad_(False)
    if cfg.mode == "partial":
        groups = _blocks(backbone)
        if not groups:
            raise ConfigError("finetune.mode=partial: the backbone has no parameter blocks")
        train = {n for g in groups[-cfg.blocks:] for n in g}
        for n, p in backbone.named_parameters():
            if n in train:
                p.requires_grad_(True)
    elif cfg.mode == "lora":
        if not has_lora:
            _inject_lora(backbone, cfg)
        for n, p in backbone.named_parameters():
            p.requires_grad_("lora_" in n)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _inject_lora(backbone, cfg: FinetuneConfig) -> None:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:  # pragma: no cover
        raise ConfigError("finetune.mode=lora needs peft: pip install 'synthmix[timm]'") from None
    targets = cfg.lora_targets or _lora_targets(backbone)
    if not targets:
        raise ConfigError("finetune.lora_targets: the backbone has no Linear / Conv2d layer for LoRA")
    lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none")
    try:
        inject_adapter_in_model(lcfg, backbone)
    except ValueError as err:
        raise ConfigError(f"finetune.lora_targets: {err}") from None


def merge_finetune(model) -> int:
    """Fold LoRA adapters into the base weights and remove them (the model's state dict is then
    that of a plain model). Returns the number of merged layers."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover
        return 0
    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
            merged += 1
    for p in model.parameters():
        p.requires_grad_(True)
    return merged


def freeze_bn_stats(model, cfg: FinetuneConfig) -> None:
    """With ``freeze_bn``: BatchNorm layers whose parameters do not train go to eval mode
    (call after ``model.train()``)."""
    if not cfg.freeze_bn or cfg.mode == "full":
        return
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()
