"""The training loop: one function, read top to bottom (nanoGPT / airbench style).

``fit(model, train=(x_uint8 [N,3,S,S], y int64 [N]), val=(x, y) | None, cfg, run_dir)``

- data are tensors in memory; each epoch draws a random permutation from a
  ``torch.Generator`` seeded by ``cfg.seed`` and walks it in batches;
- each batch is augmented per sample (``augment_batch``, its own generator), normalised,
  and goes forward / cross-entropy (optional label smoothing) / backward / step; the
  learning-rate schedule (linear warmup, then cosine / step / constant) moves every step;
- a non-finite loss stops training with :class:`TrainingError` naming epoch and step;
- after each epoch: validation loss/accuracy (every ``eval_every`` epochs), TensorBoard
  scalars in ``run_dir/tb``, and an atomic checkpoint ``run_dir/checkpoints/last.pt``
  (model, optimizer, scheduler, RNG states as tensors, epoch, history, best weights);
- a later call with the same ``run_dir`` resumes from that checkpoint and ends with the
  same weights as an uninterrupted run (CPU);
- early stopping on the validation metric; the best weights are loaded at the end;
- ``dist`` (a :class:`synthmix.training.ddp.DataParallel`, see ``fit_ddp``) runs the same loop
  on N processes: ``batch_size`` is per process, every rank walks the same permutation and
  keeps its slice of each global batch, validation sums are all-reduced (no padding), and
  only rank 0 writes checkpoints and TensorBoard;
- ``train`` may be ``(x, y, soft)`` with ``soft`` float [N, C] class-probability targets (rows with a
  soft label, e.g. inter-class translations; one-hot for the others): the loss is cross-entropy
  against them (label smoothing still applies); ``y`` (the target class) is used for accuracy;
- ``outliers`` (uint8 [M,3,S,S], optional) adds Outlier Exposure / an energy margin
  (:mod:`synthmix.training.outliers`): each step draws ``round(batch_ratio * B)`` outlier images
  with their own generator (seed + 2_000_003, saved with the checkpoint), augments and normalises
  them like the ID batch, runs them in the same forward pass and adds ``outlier_term`` to the
  cross-entropy. Without outliers nothing changes (same draws, same weights).

Global torch RNG (dropout) is seeded from ``cfg.seed`` at the start and saved/restored
with the checkpoint, so a seeded CPU run is bit-reproducible.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthmix.core.errors import ConfigError, TrainingError
from synthmix.core.hashing import config_hash
from synthmix.core.schedule import lr_schedule
from synthmix.training.checkpoint import load_checkpoint, save_checkpoint
from synthmix.training.config import TrainConfig
from synthmix.training.ema import WeightEma
from synthmix.training.finetune import apply_finetune, freeze_bn_stats, merge_finetune
from synthmix.training.mixup import mix_batch

# Fields that may differ between an interrupted run and its resumption.
_RESUME_FREE = {"device", "num_threads", "eval_batch_size"}


@dataclass
class FitResult:
    """What ``fit`` reports. ``history`` has one dict per epoch (train_loss, train_acc, lr,
    val_loss / val_acc when validated, seconds). ``best_epoch`` is 0-based (None without val)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    epochs_run: int = 0
    steps: int = 0
    images_seen: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    train_seconds: float = 0.0
    images_per_second: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(model, train, val, cfg: TrainConfig, run_dir: str | Path | None = None, *,
        progress: bool = True,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None, dist=None,
        outliers=None, outlier_loss=None) -> FitResult:
    """Train ``model`` in place on ``train`` (validating on ``val``); see the module docstring.

    ``on_epoch_end(epoch, record)`` is called after each epoch's checkpoint is written
    (tests raise from it to simulate a kill). ``outliers``: uint8 [M,3,S,S] outlier images and
    ``outlier_loss`` their :class:`~synthmix.training.outliers.OutlierLossConfig` (default one when
    None). Returns a :class:`FitResult`.
    """
    import torch
    import torch.nn.functional as F

    from synthmix.core.device import autocast, pick_device
    from synthmix.data.augment import augment_batch, normalize

    device = pick_device(cfg.device)
    # bf16: autocast of forward + loss (weights, gradients, optimizer state stay fp32)
    amp = autocast(device, cfg.precision)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    soft = None
    if isinstance(train, (tuple, list)) and len(train) == 3:
        # (x, y, soft [N, C]): probability targets for rows with a soft label (synthmix.training.soft_labels)
        train, soft = tuple(train[:2]), train[2]
    x_train, y_train = _check_data(train, "train")
    n = x_train.shape[0]
    x_train, y_train = x_train.to(device), y_train.to(device)
    if soft is not None:
        if soft.ndim != 2 or soft.shape[0] != n or not torch.is_floating_point(soft):
            raise TrainingError(f"train: soft targets must be float [N={n}, C], got {soft.dtype} {tuple(soft.shape)}")
        soft = soft.to(device)
    if val is not None:
        x_val, y_val = _check_data(val, "val")
        x_val, y_val = x_val.to(device), y_val.to(device)
    elif cfg.early_stopping_patience:
        # without validation data the patience never counts: it would be silently ignored
        raise ConfigError(f"early_stopping_patience: {cfg.early_stopping_patience} needs validation data, "
                          "but there is none (no val rows); remove it or give the data a val split")
    if outliers is not None:
        from synthmix.training.outliers import OutlierLossConfig, outlier_term

        if not isinstance(outliers, torch.Tensor):
            raise TrainingError(f"outliers: expected a uint8 tensor [M,3,S,S], got {type(outliers).__name__}")
        x_out = _check_data((outliers, outliers.new_zeros(outliers.shape[0])), "outliers")[0].to(device)
        outlier_loss = outlier_loss or OutlierLossConfig()
    model.to(device, memory_format=layout)
    world, main = (dist.world_size, dist.is_main) if dist is not None else (1, True)
    net = dist.wrap(model) if dist is not None else model  # DDP: gradients averaged over ranks
    global_batch = cfg.batch_size * world

    # A last batch of one image breaks BatchNorm in training mode ("expected more than 1 value per
    # channel"): when the split leaves exactly one, that image sits the epoch out (another one each
    # epoch, the permutation being new).
    steps_per_epoch = n // global_batch if n % global_batch == 1 and n > 1 else math.ceil(n / global_batch)
    # The budget: ``steps`` optimizer steps when given (equal compute across training sets of
    # different sizes), else ``epochs`` full passes; the last epoch may be cut short.
    total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    apply_finetune(model, cfg.finetune)  # which parameters train (head / partial / LoRA)
    optimizer = _make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, steps_per_epoch, total_steps))
    ema = WeightEma(model, cfg.ema_decay) if cfg.ema_decay else None  # averaged weights (validation, final)
    perm_gen = torch.Generator().manual_seed(cfg.seed)
    # offsets kept rather than core.seeding.derive_seed: changing them changes every CE result (and
    # the seed-pinned effect checks of tests/ood/test_outlier_training.py)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    torch.manual_seed(cfg.seed)

    history: list[dict[str, Any]] = []
    best = {"metric": None, "epoch": None, "state": None, "bad": 0}
    start_epoch, stopped, resumed = 0, False, None
    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt_path = run_dir / "checkpoints" / "last.pt" if run_dir else None
    cfg_key = config_hash({k: v for k, v in cfg.model_dump(mode="json").items() if k not in _RESUME_FREE})
    out_gen = None
    if outliers is not None:
        out_gen = torch.Generator().manual_seed(cfg.seed + 2_000_003)
        cfg_key = config_hash({"train": cfg_key, "outliers": outlier_loss.model_dump(mode="json"),
                               "n_outliers": int(x_out.shape[0])})

    if ckpt_path is not None and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck["config_hash"] != cfg_key:
            raise ConfigError(f"{ckpt_path}: checkpoint was written with a different training config; "
                              "use another run directory or delete the checkpoint")
        if int(ck.get("world_size", 1)) != world:  # the global batch (and lr schedule) depend on it
            raise ConfigError(f"{ckpt_path}: checkpoint was written by {int(ck.get('world_size', 1))} process(es), "
                              f"this run has {world}; resume with the same number of processes")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        perm_gen.set_state(ck["rng"]["perm"])
        aug_gen.set_state(ck["rng"]["augment"])
        if out_gen is not None:
            out_gen.set_state(ck["rng"]["outliers"])
        torch.set_rng_state(ck["rng"]["torch"])
        if "cuda" in ck["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(ck["rng"]["cuda"])
        history = list(ck["history"])
        best = {"metric": ck["best"]["metric"], "epoch": ck["best"]["epoch"],
                "state": ck["best"]["state"], "bad": ck["best"]["bad"]}
        start_epoch, stopped = int(ck["next_epoch"]), bool(ck["stopped"])
        resumed = start_epoch

    writer = _tb_writer(run_dir, start_epoch) if main else None
    bar = _progress(progress and main, epochs, steps_per_epoch, start_epoch)
    train_time, seen = 0.0, 0
    try:
        for epoch in range(start_epoch, epochs if not stopped else start_epoch):
            model.train()
            freeze_bn_stats(model, cfg.finetune)
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=perm_gen).to(device)
            loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
            epoch_steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            for step in range(epoch_steps):
                idx = perm[step * global_batch:(step + 1) * global_batch]
                xb = normalize(augment_batch(x_train[idx], cfg.augment, aug_gen), cfg.normalization
                               ).contiguous(memory_format=layout)
                yb = y_train[idx]
                tb = soft[idx] if soft is not None else None  # probability targets (soft labels) or None
                if cfg.mixup.enabled():  # MixUp / CutMix: probability targets; draws from aug_gen (resumable)
                    xb, tb, _ = mix_batch(xb, yb if tb is None else tb, model.num_classes, cfg.mixup, aug_gen)
                k, weight = len(idx), 1.0
                if dist is not None:
                    # Every rank augments the whole global batch (same generator state everywhere)
                    # and keeps its slice: N ranks see what one process sees with N x the batch.
                    if tb is not None:
                        tb = dist.local_batch(tb, tb)[0]
                    xb, yb, k, weight = dist.local_batch(xb, yb)
                if out_gen is not None:  # outliers: same forward pass, their own generator
                    xo = _outlier_batch(x_out, max(1, round(outlier_loss.batch_ratio * len(idx))), out_gen,
                                        cfg, dist)
                    with amp:
                        logits, logits_out = net(torch.cat([xb, xo]).contiguous(memory_format=layout)
                                                 ).float().split([len(xb), len(xo)])
                else:
                    with amp:
                        logits = net(xb).float()
                loss = F.cross_entropy(logits, yb if tb is None else tb, label_smoothing=cfg.label_smoothing)
                if out_gen is not None:
                    loss = loss + outlier_term(logits, logits_out, outlier_loss)
                if not torch.isfinite(loss):
                    raise TrainingError(f"non-finite training loss ({loss.item()}) at epoch {epoch + 1}, "
                                        f"step {step + 1} (lr={scheduler.get_last_lr()[0]:.3g}); lower "
                                        "the learning rate or check the input data")
                optimizer.zero_grad(set_to_none=True)
                (loss * weight if weight != 1.0 else loss).backward()
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                loss_sum += loss.detach() * k
                correct += (logits.argmax(1) == yb)[:k].sum()
                if bar is not None:
                    bar.advance()
            if dist is not None:
                loss_sum, correct = dist.all_sum(loss_sum), dist.all_sum(correct)
            seconds = time.perf_counter() - t0
            n_epoch = min(n, epoch_steps * global_batch)
            train_time, seen = train_time + seconds, seen + n_epoch
            record: dict[str, Any] = {"epoch": epoch, "steps": epoch_steps, "images": n_epoch,
                                      "train_loss": loss_sum.item() / n_epoch,
                                      "train_acc": correct.item() / n_epoch,
                                      "lr": optimizer.param_groups[0]["lr"], "seconds": seconds}
            if val is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == epochs):
                with ema.swapped(model) if ema is not None else contextlib.nullcontext():
                    record["val_loss"], record["val_acc"] = _validate(model, x_val, y_val, cfg, dist)
                    _track_best(best, record, epoch, model, cfg)
            history.append(record)
            stopped = bool(cfg.early_stopping_patience and best["bad"] >= cfg.early_stopping_patience)
            if writer is not None:
                for k, v in record.items():
                    if k not in ("epoch", "seconds"):
                        writer.add_scalar(k.replace("_", "/", 1), v, epoch)
                writer.flush()
            if ckpt_path is not None and main:
                save_checkpoint(ckpt_path, {
                    "config_hash": cfg_key, "next_epoch": epoch + 1, "stopped": stopped, "world_size": world,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "history": history,
                    "rng": _rng_states(perm_gen, aug_gen, out_gen),
                    "best": best, **({"ema": ema.state_dict()} if ema is not None else {}),
                })
            if dist is not None:
                dist.barrier()  # no rank runs ahead of the last written checkpoint
            if bar is not None:
                bar.describe(epoch, record)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
            if stopped:
                break
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()

    model.to(memory_format=torch.contiguous_format)  # evaluation and saved weights: the usual layout
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    elif ema is not None:  # no validation: the averaged weights of the last step
        model.load_state_dict(ema.state)
    if cfg.finetune.mode == "lora":
        merge_finetune(model)  # plain weights again: final.pt loads into a fresh model
    return FitResult(history=history, best_epoch=best["epoch"], best_metric=best["metric"],
                     epochs_run=len(history), stopped_early=stopped, resumed_from_epoch=resumed,
                     steps=sum(h.get("steps", steps_per_epoch) for h in history),
                     images_seen=sum(h.get("images", n) for h in history),
                     train_seconds=train_time, images_per_second=seen / train_time if train_time else 0.0)


def _rng_states(perm_gen, aug_gen, out_gen=None) -> dict[str, Any]:
    """Every RNG the loop draws from, as uint8 tensors (loadable with weights_only=True)."""
    import torch

    states = {"perm": perm_gen.get_state(), "augment": aug_gen.get_state(), "torch": torch.get_rng_state()}
    if out_gen is not None:
        states["outliers"] = out_gen.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _outlier_batch(x_out, m: int, gen, cfg: TrainConfig, dist=None):
    """``m`` outlier images drawn with ``gen`` (without replacement when m <= M), augmented with
    ``gen`` and normalised like the ID batch -> float [m, 3, S, S]. Under DDP every rank draws the
    same global outlier batch and keeps its slice (at least one image)."""
    import torch

    from synthmix.data.augment import augment_batch, normalize

    n = x_out.shape[0]
    pick = torch.randperm(n, generator=gen)[:m] if m <= n else torch.randint(n, (m,), generator=gen)
    xo = normalize(augment_batch(x_out[pick.to(x_out.device)], cfg.augment, gen), cfg.normalization)
    if dist is not None:
        lo, hi = dist.local_slice(m)
        xo = xo[lo:hi] if hi > lo else xo[:1]
    return xo


def _check_data(pair, name: str):
    import torch

    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TrainingError(f"{name}: expected a pair (x_uint8 [N,3,S,S], y [N])")
    x, y = pair
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise TrainingError(f"{name}: images must be uint8 [N,3,S,S], got {x.dtype} {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise TrainingError(f"{name}: {x.shape[0]} images but labels of shape {tuple(y.shape)}")
    return x, y.long()


def _make_optimizer(model, cfg: TrainConfig):
    import torch

    # No weight decay on biases and norm parameters (the usual choice; it matters little here).
    # The backbone learns at lr * backbone_lr_mult (fine-tuning a pretrained one gently); the
    # head's groups come first, so param_groups[0]["lr"] is the base lr.
    in_backbone = {id(p) for p in model.backbone.parameters()} if hasattr(model, "backbone") else set()
    groups = []
    for part, mult in (("head", 1.0), ("backbone", cfg.backbone_lr_mult)):
        ps = [p for p in model.parameters() if p.requires_grad and (id(p) in in_backbone) == (part == "backbone")]
        for wd, sel in ((cfg.weight_decay, [p for p in ps if p.ndim > 1]), (0.0, [p for p in ps if p.ndim <= 1])):
            if sel:
                groups.append({"params": sel, "weight_decay": wd, "lr": cfg.lr * mult})
    if not groups:
        raise ConfigError("training: no parameter trains (check finetune.mode)")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    # fused: one kernel for every parameter (about 5x faster than the per-tensor loop on a CPU;
    # same update up to float rounding)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


class _LrFactor:
    """Per-step multiplier of the base lr (:func:`synthmix.core.schedule.lr_schedule`).

    A class rather than a closure so the scheduler's ``state_dict`` stays plain data.
    """

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, total_steps: int):
        self.kind = cfg.schedule
        self.warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        self.total = total_steps
        self.step_every = cfg.step_epochs * steps_per_epoch
        self.gamma = cfg.step_gamma

    def __call__(self, step: int) -> float:
        return lr_schedule(step, total=self.total, warmup=self.warmup, kind=self.kind,
                           step_every=self.step_every, gamma=self.gamma)


def _lr_factor(cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> _LrFactor:
    return _LrFactor(cfg, steps_per_epoch, total_steps)


def _validate(model, x, y, cfg: TrainConfig, dist=None) -> tuple[float, float]:
    """Mean cross-entropy (no smoothing) and accuracy on the validation tensors.

    With ``dist`` each rank scores its slice and the sums are all-reduced: every sample
    counts once (no sampler padding)."""
    import torch
    import torch.nn.functional as F

    from synthmix.data.augment import normalize, to_float

    n = x.shape[0]
    if dist is not None:
        lo, hi = dist.local_slice(n)
        x, y = x[lo:hi], y[lo:hi]
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], cfg.eval_batch_size):
            logits = model(normalize(to_float(x[i:i + cfg.eval_batch_size]), cfg.normalization))
            yb = y[i:i + cfg.eval_batch_size]
            loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += int((logits.argmax(1) == yb).sum())
    model.train()
    if dist is not None:
        loss, correct = dist.all_sum(torch.tensor([loss, float(correct)], dtype=torch.float64)).tolist()
    return loss / n, correct / n


def _track_best(best: dict[str, Any], record: dict[str, Any], epoch: int, model, cfg: TrainConfig) -> None:
    key = cfg.early_stopping_metric
    value = record[key]
    better = best["metric"] is None or (value < best["metric"] if key == "val_loss" else value > best["metric"])
    if better:
        best.update(metric=value, epoch=epoch, bad=0,
                    state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
    else:
        best["bad"] += 1


def _tb_writer(run_dir: Path | None, start_epoch: int):
    if run_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events a killed run wrote after its last checkpoint.
    return SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_epoch or None)


class _Bar:
    def __init__(self, epochs: int, steps: int, start_epoch: int):
        from synthmix.core.log import progress

        self.p = progress()
        self.p.start()
        self.task = self.p.add_task("train", total=epochs * steps, completed=start_epoch * steps, info="")

    def advance(self) -> None:
        self.p.advance(self.task)

    def describe(self, epoch: int, r: dict[str, Any]) -> None:
        info = f"ep {epoch + 1} loss {r['train_loss']:.3f} acc {r['train_acc']:.3f}"
        if "val_acc" in r:
            info += f" | val loss {r['val_loss']:.3f} acc {r['val_acc']:.3f}"
        self.p.update(self.task, info=info)

    def close(self) -> None:
        self.p.stop()


def _progress(enabled: bool, epochs: int, steps: int, start_epoch: int) -> _Bar | None:
    return _Bar(epochs, steps, start_epoch) if enabled else None
