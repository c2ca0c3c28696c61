"""Contrastive training: pretrain backbone + projection head, then a linear probe or fine-tune.

Read top to bottom: :func:`pretrain` (SupCon with near-OOD rows as negatives only, or SimCLR),
:func:`fit_classifier` (linear probe on frozen features, or full fine-tune with CE), and
:func:`train_contrastive` which runs both, checkpoints after every epoch (atomic,
``weights_only`` loadable) and resumes from the last checkpoint. The result is the model
registry's ``Classifier`` so the evaluation code uses it like a CE-trained one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from synthmix.core.config import StrictModel
from synthmix.data.augment import AugmentConfig
from synthmix.training.views import STRONG_VIEWS

if TYPE_CHECKING:
    import torch
    from torch import nn


class ContrastiveConfig(StrictModel):
    """Settings of contrastive pretraining + probe / fine-tune."""

    model: str = Field("small_cnn", description="registered model name (its backbone is pretrained)")
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    input_size: int = Field(32, ge=8, le=1024)
    loss: Literal["supcon", "simclr"] = "supcon"
    temperature: float = Field(0.1, gt=0)
    hard_weight: float = Field(1.0, ge=0, description="weight of near-OOD rows in their parent class's denominators")
    proj_hidden: int = Field(256, ge=1)
    proj_dim: int = Field(128, ge=1)
    epochs: int = Field(20, ge=0)
    m_per_class: int = Field(8, ge=2, description="anchors per class per batch (each gets >= 1 positive)")
    classes_per_batch: int | None = Field(None, ge=1, description="classes per batch (None = all)")
    batches_per_epoch: int | None = Field(None, ge=1)
    keep_families: bool = Field(True, description="batch a real image with its synthetic children")
    queue_size: int = Field(0, ge=0, description="memory queue of past embeddings (0 = off)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    views: AugmentConfig = Field(default_factory=lambda: STRONG_VIEWS)
    normalization: Literal["imagenet", "none"] = "imagenet"
    probe: Literal["linear", "finetune"] = "linear"
    probe_epochs: int = Field(30, ge=0)
    probe_lr: float = Field(1e-2, gt=0)
    probe_batch_size: int = Field(64, ge=1)
    probe_batches_per_epoch: int | None = Field(None, ge=1, description="probe steps per epoch (None = one "
                                                "pass over the probe rows; more rows then mean more steps)")
    probe_augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = "cpu"
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="pretraining forward in bf16 autocast (auto: where the device has it natively)")
    channels_last: bool = Field(False, description="pretrain in the channels-last (NHWC) memory format")

    @model_validator(mode="after")
    def _no_ignored_settings(self) -> ContrastiveConfig:
        # settings that the chosen loss / probe never reads: refused rather than silently ignored
        if self.loss == "simclr" and self.queue_size:
            raise ValueError(f"queue_size: {self.queue_size} — the memory queue feeds the supcon loss only; "
                             "with loss: simclr it would be unused (set queue_size: 0)")
        if self.loss == "simclr" and self.hard_weight != 1.0:
            raise ValueError(f"hard_weight: {self.hard_weight} — near-OOD weighting is part of the supcon loss "
                             "only; simclr ignores labels and roles (remove hard_weight)")
        if self.probe == "linear" and self.probe_augment != AugmentConfig():
            raise ValueError("probe_augment: the linear probe trains on cached features of un-augmented "
                             "images, so probe augmentation would be unused; use probe: finetune or remove it")
        return self


@dataclass
class ContrastiveData:
    """Training rows as tensors. x: uint8 [N,3,S,S]; labels: int64 [N] (class of each anchor row,
    the parent class for negatives); is_negative: bool [N] (role near_ood); parent_label: int64 [N];
    family: N group ids (parent_id of synthetic rows, own id of real rows) or None."""

    x: torch.Tensor
    labels: torch.Tensor
    is_negative: torch.Tensor
    parent_label: torch.Tensor
    family: list[object] | None = None


def projection_head(in_dim: int, hidden: int = 256, out_dim: int = 128) -> nn.Module:
    """MLP [N, in_dim] -> [N, out_dim] (SimCLR's g(.)); the loss normalises its output."""
    from torch import nn

    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def _prep(x: torch.Tensor, normalization: str) -> torch.Tensor:
    from synthmix.data.augment import normalize, to_float

    return normalize(to_float(x), normalization)


def pretrain_epoch(model, head, data: ContrastiveData, cfg: ContrastiveConfig, opt, generator,
                   epoch: int, queue=None) -> tuple[float, int, int]:
    """One epoch of contrastive pretraining; returns (mean loss, optimizer steps, rows drawn; each
    row gives two views). Raises TrainingError on NaN."""
    import torch

    from synthmix.core.device import autocast
    from synthmix.core.errors import TrainingError
    from synthmix.training.losses import nt_xent_loss, supcon_hard_negative_loss
    from synthmix.training.samplers import ClassBalancedBatchSampler
    from synthmix.training.views import two_views

    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    fam = data.family if cfg.keep_families else None
    sampler = ClassBalancedBatchSampler(data.labels.tolist(), cfg.m_per_class, cfg.classes_per_batch,
                                        cfg.batches_per_epoch, seed=cfg.seed,
                                        is_negative=data.is_negative.tolist(), family=fam)
    sampler.set_epoch(epoch)
    model.train()
    head.train()
    total, steps, images = 0.0, 0, 0
    dev = cfg.device
    for idx in sampler:
        idx_t = torch.as_tensor(idx)
        v1, v2 = two_views(data.x[idx_t], generator, cfg.views)
        v = _prep(torch.cat([v1, v2]).to(dev), cfg.normalization).contiguous(memory_format=layout)
        with autocast(dev, cfg.precision):
            z = head(model.forward_features(v)).float()  # [2B, proj_dim]; the loss in fp32
        b = len(idx)
        if cfg.loss == "simclr":
            loss = nt_xent_loss(z[:b], z[b:], cfg.temperature)
        else:
            lab = data.labels[idx_t].repeat(2).to(dev)
            neg = data.is_negative[idx_t].repeat(2).to(dev)
            par = data.parent_label[idx_t].repeat(2).to(dev)
            extra = queue.keys() if queue is not None and len(queue) else {}
            loss = supcon_hard_negative_loss(z, lab, neg, par, cfg.temperature, cfg.hard_weight, **extra)
            if queue is not None:
                queue.enqueue(torch.nn.functional.normalize(z.detach(), dim=1), lab, neg, par)
        if not torch.isfinite(loss):
            raise TrainingError(f"contrastive loss is {loss.item()} at epoch {epoch}, step {steps}: "
                                "lower lr or raise temperature")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
        steps += 1
        images += b
    return total / max(steps, 1), steps, images


def features_of(model, x: torch.Tensor, normalization: str, device: str = "cpu",
                batch_size: int = 256) -> torch.Tensor:
    """Backbone features [N, D] (float32, CPU) of uint8 images x [N,3,S,S], in eval mode."""
    import torch

    from synthmix.evaluation.features import extract

    return torch.from_numpy(extract(model, x, normalization, batch_size, device)[0])


@dataclass
class ProbeOutliers:
    """Outlier images for the probe's Outlier Exposure / energy term. x: uint8 [M,3,S,S]; loss:
    :class:`~synthmix.training.outliers.OutlierLossConfig`; generator: their own draws (the ID
    batches stay those of a run without outliers); feats: their cached backbone features [M, D]
    (linear probe; None when fine-tuning)."""

    x: torch.Tensor
    loss: Any
    generator: torch.Generator
    feats: torch.Tensor | None = None


def probe_epoch(model, x: torch.Tensor, y: torch.Tensor, cfg: ContrastiveConfig, opt, generator,
                feats: torch.Tensor | None = None, outliers: ProbeOutliers | None = None
                ) -> tuple[float, int, int]:
    """One epoch of cross-entropy training of the classifier head (``feats`` given: frozen
    backbone, linear probe on cached features [N, D]) or of the whole model (fine-tune, with
    ``cfg.probe_augment``). x: uint8 [N,3,S,S]; y: int64 [N]. Returns (mean loss, steps, rows).

    ``outliers``: each step also draws ``round(batch_ratio * B)`` outliers with their own
    generator (without replacement when possible; fine-tune: augmented like the ID batch, in a
    second forward pass) and adds :func:`~synthmix.training.outliers.outlier_term` to the loss.

    An epoch is ``cfg.probe_batches_per_epoch`` batches (default: one pass, ceil(N / batch)):
    batches are the slices of shuffled passes over the rows, as many passes as needed, cut at
    that count, so the step budget does not depend on N."""
    import torch
    import torch.nn.functional as F

    from synthmix.data.augment import augment_batch

    n, bs = len(y), cfg.probe_batch_size
    n_batches = cfg.probe_batches_per_epoch or -(-n // bs)
    batches: list[torch.Tensor] = []
    while n and len(batches) < n_batches:
        perm = torch.randperm(n, generator=generator)
        batches += [perm[i:i + bs] for i in range(0, n, bs)]
    model.train()
    if feats is not None:
        model.backbone.eval()  # frozen: no batch-norm statistics updates either
    total, steps, images = 0.0, 0, 0
    for idx in batches[:n_batches]:
        if feats is not None:
            logits = model.forward_head(feats[idx].to(cfg.device))
        else:
            xb = augment_batch(x[idx], cfg.probe_augment, generator)
            logits = model(_prep(xb.to(cfg.device), cfg.normalization))
        loss = F.cross_entropy(logits, y[idx].to(cfg.device))
        if outliers is not None:
            loss = loss + _probe_outlier_term(model, logits, len(idx), outliers, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
        steps += 1
        images += len(idx)
    return total / max(steps, 1), steps, images


def _probe_outlier_term(model, logits, b: int, out: ProbeOutliers, cfg: ContrastiveConfig):
    import torch

    from synthmix.data.augment import augment_batch
    from synthmix.training.outliers import outlier_term

    n_out = out.x.shape[0]
    m = max(1, round(out.loss.batch_ratio * b))
    pick = torch.randperm(n_out, generator=out.generator)[:m] if m <= n_out else \
        torch.randint(n_out, (m,), generator=out.generator)
    if out.feats is not None:
        logits_out = model.forward_head(out.feats[pick].to(cfg.device))
    else:
        xo = augment_batch(out.x[pick], cfg.probe_augment, out.generator)
        logits_out = model(_prep(xo.to(cfg.device), cfg.normalization))
    return outlier_term(logits, logits_out, out.loss)


@dataclass
class ContrastiveResult:
    """The trained classifier, its projection head and per-epoch losses."""

    model: Any
    head: Any
    history: list[dict[str, Any]]


def train_contrastive(data: ContrastiveData, probe_x: torch.Tensor, probe_y: torch.Tensor,
                      num_classes: int, cfg: ContrastiveConfig,
                      checkpoint: str | Path | None = None, outliers: torch.Tensor | None = None,
                      outlier_loss=None) -> ContrastiveResult:
    """Pretrain (``cfg.epochs``) then probe / fine-tune (``cfg.probe_epochs``) a registry model.

    data: contrastive training rows (see :class:`ContrastiveData`); probe_x: uint8 [M,3,S,S] and
    probe_y: int64 [M], the rows the classifier head learns from (never near-OOD rows).
    ``checkpoint``: a file written after every epoch; if it exists the run resumes from it
    (same config required) and finishes with the same weights as an uninterrupted run.
    ``outliers`` (uint8 [M,3,S,S]) with ``outlier_loss`` (an ``OutlierLossConfig``, default OE):
    the probe adds Outlier Exposure / the energy margin on them (:func:`probe_epoch`); to make
    them contrastive negatives too, put them in ``data`` with ``is_negative`` set (supcon_run does).
    """
    import torch

    from synthmix.core.errors import ConfigError
    from synthmix.core.hashing import config_hash
    from synthmix.models import create_model
    from synthmix.training.checkpoint import load_checkpoint, save_checkpoint
    from synthmix.training.memory_queue import MemoryQueue

    torch.manual_seed(cfg.seed)  # weight init
    model = create_model(cfg.model, num_classes, **{"input_size": cfg.input_size, **cfg.model_kwargs})
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(cfg.device, memory_format=layout)
    head = projection_head(model.feature_dim, cfg.proj_hidden, cfg.proj_dim).to(cfg.device)
    fused = torch.device(cfg.device).type in ("cpu", "cuda") or None  # one kernel for every parameter
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=cfg.lr,
                            weight_decay=cfg.weight_decay, fused=fused)
    gen = torch.Generator().manual_seed(cfg.seed)
    queue = MemoryQueue(cfg.queue_size, cfg.proj_dim, cfg.device) if cfg.queue_size else None
    history: list[dict[str, Any]] = []
    stage, epoch = "pretrain", 0
    probe_opt = None
    chash = config_hash(cfg)
    out_gen = None
    if outliers is not None:
        from synthmix.training.outliers import OutlierLossConfig

        outlier_loss = outlier_loss or OutlierLossConfig()
        out_gen = torch.Generator().manual_seed(cfg.seed + 3_000_017)
        chash = config_hash({"contrastive": chash, "outliers": outlier_loss.model_dump(mode="json"),
                             "n_outliers": int(outliers.shape[0])})
    if checkpoint is not None and Path(checkpoint).is_file():
        st = load_checkpoint(checkpoint)
        if st.get("config_hash") != chash:
            raise ConfigError(f"{checkpoint}: checkpoint was written by a different config; "
                              "delete it or use another run directory")
        model.load_state_dict(st["model"])
        head.load_state_dict(st["head"])
        gen.set_state(st["generator"])
        if out_gen is not None:
            out_gen.set_state(st["outlier_generator"])
        torch.set_rng_state(st["torch_rng"])  # dropout draws from the global generator
        history = list(st["history"])
        stage, epoch = st["stage"], st["epoch"]
        if stage == "pretrain":
            opt.load_state_dict(st["opt"])
        if queue is not None and "queue" in st:
            for k, v in st["queue"].items():
                setattr(queue, k, v if isinstance(v, torch.Tensor) else int(v))

    def save(stage_: str, epoch_: int, opt_) -> None:
        if checkpoint is None:
            return
        st = {"model": model.state_dict(), "head": head.state_dict(), "opt": opt_.state_dict(),
              "generator": gen.get_state(),
              "torch_rng": torch.get_rng_state(), "history": history, "stage": stage_, "epoch": epoch_,
              "config_hash": chash}
        if out_gen is not None:
            st["outlier_generator"] = out_gen.get_state()
        if queue is not None:
            st["queue"] = {k: getattr(queue, k) for k in ("z", "labels", "parent_label", "is_negative",
                                                          "ptr", "filled")}
        save_checkpoint(checkpoint, st)

    while stage == "pretrain" and epoch < cfg.epochs:
        loss, steps, images = pretrain_epoch(model, head, data, cfg, opt, gen, epoch, queue)
        history.append({"stage": "pretrain", "epoch": epoch, "loss": loss, "steps": steps, "images": images})
        epoch += 1
        save("pretrain", epoch, opt)
    if stage == "pretrain":
        stage, epoch = "probe", 0
    model.to(memory_format=torch.contiguous_format)  # probe, evaluation and saved weights: the usual layout

    linear = cfg.probe == "linear"
    params = model.head.parameters() if linear else model.parameters()
    probe_opt = torch.optim.AdamW(params, lr=cfg.probe_lr, weight_decay=cfg.weight_decay)
    if checkpoint is not None and Path(checkpoint).is_file():
        st = load_checkpoint(checkpoint)
        if st["stage"] == "probe":
            probe_opt.load_state_dict(st["opt"])
    if linear:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        feats = features_of(model, probe_x, cfg.normalization, cfg.device)
    else:
        feats = None
    probe_out = None if outliers is None else ProbeOutliers(
        outliers, outlier_loss, out_gen, features_of(model, outliers, cfg.normalization, cfg.device) if linear else None)
    while epoch < cfg.probe_epochs:
        loss, steps, images = probe_epoch(model, probe_x, probe_y, cfg, probe_opt, gen, feats, probe_out)
        history.append({"stage": "probe", "epoch": epoch, "loss": loss, "steps": steps, "images": images})
        epoch += 1
        save("probe", epoch, probe_opt)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return ContrastiveResult(model, head, history)
