"""Training the embedded generator: one readable loop, data held in memory, resumable.

Objective: v- (or eps-) prediction with Min-SNR weighting, label dropout to a null class
(classifier-free guidance), EMA weights, per-sample augmentation, warm-up + cosine LR.
A checkpoint (model, EMA, optimizer, step, elapsed time, RNG) is written atomically every
``checkpoint_every`` steps and at the end; a re-run with the same config resumes from it and
continues the step count (a larger ``steps`` extends a finished run).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from synthmix.core.errors import ConfigError, DataError, TrainingError
from synthmix.core.hashing import config_hash
from synthmix.core.io import append_jsonl, atomic_write_json
from synthmix.core.schedule import lr_schedule
from synthmix.generation.embedded.checkpoint import CHECKPOINT_NAME, load_state, save_checkpoint
from synthmix.generation.embedded.config import TrainConfig

# Fields that may change between a run and its resumption (budgets, cadence, hardware).
_RESUMABLE_FIELDS = {"steps", "max_minutes", "out_dir", "checkpoint_every", "sample_every",
                     "sample_steps", "guidance", "device", "threads", "manifest", "precision",
                     "channels_last", "compile"}


def identity_hash(cfg: TrainConfig) -> str:
    """Hash of what defines the model being trained (not the budget or cadence)."""
    d = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _RESUMABLE_FIELDS}
    if not d.get("low_res_steps"):  # fields added later hash only when set: older runs still resume
        d.pop("low_res_steps", None)
    return config_hash(d)


def load_training_data(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Real train images uint8 [N, 3, S, S], labels int64 [N], and the sorted class list."""
    from synthmix.data.manifest import assert_train_only, read_manifest, train_rows
    from synthmix.data.tensors import label_tensor, load_tensor

    rows = train_rows(read_manifest(cfg.manifest))
    rows = [r for r in rows if r["label"] not in set(cfg.exclude_classes)]
    if cfg.classes is not None:
        missing = sorted(set(cfg.classes) - {r["label"] for r in rows})
        if missing:
            raise DataError(cfg.manifest, f"no real train images of classes {missing}")
        rows = [r for r in rows if r["label"] in set(cfg.classes)]
    if not rows:
        raise DataError(cfg.manifest, "no real train rows to learn from")
    assert_train_only(rows, "embedded generator training")
    classes = sorted({r["label"] for r in rows}) if cfg.classes is None else list(cfg.classes)
    return load_tensor(rows, cfg.manifest, cfg.resolution), label_tensor(rows, classes), classes


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % at ``cfg.steps``."""
    return lr_schedule(step, total=cfg.steps, warmup=cfg.warmup_steps, floor=0.1, base=cfg.lr)


def diffusion_loss(model, sched, x0: torch.Tensor, cond: torch.Tensor, gen: torch.Generator,
                   min_snr_gamma: float | None, precision: str = "fp32") -> torch.Tensor:
    """Mean weighted MSE of the model's eps/v prediction. x0: [N, 3, S, S] in [-1, 1].

    ``precision="bf16"``: the model's forward runs under bf16 autocast; noise, target and loss
    stay fp32."""
    from synthmix.generation.embedded.diffusion import autocast

    n = x0.shape[0]
    t = torch.randint(0, sched.config.num_train_timesteps, (n,), generator=gen).to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    xt = sched.add_noise(x0, noise, t)
    v_pred = sched.config.prediction_type == "v_prediction"
    target = sched.get_velocity(x0, noise, t) if v_pred else noise
    with autocast(x0.device, precision):
        pred = model(xt, t, cond)
    per = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma:
        ac = sched.alphas_cumprod.to(x0.device)[t]
        snr = ac / (1 - ac)
        w = snr.clamp(max=min_snr_gamma) / (snr + 1 if v_pred else snr)
        per = per * w
    return per.mean()


@torch.no_grad()
def ema_update(ema, model, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1 - decay)


def build_training(cfg: TrainConfig, num_classes: int, device: torch.device | str):
    """Model, compiled forward, EMA copy, optimizer and train scheduler for ``cfg`` on ``device``.

    Returns ``(model, forward, ema, opt, sched)``: ``forward`` is ``model`` or its
    ``torch.compile`` wrapper (``cfg.compile``); state dicts, EMA and checkpoints use ``model``.
    Initial weights come from ``cfg.seed``; the global RNG is left untouched."""
    from synthmix.generation.embedded.diffusion import train_scheduler
    from synthmix.generation.embedded.unet import ClassConditionalUNet, prepare_for_precision

    levels = 2 ** (len(cfg.model.resolved()["channels"]) - 1)
    if cfg.low_res_steps and (cfg.resolution % 2 or (cfg.resolution // 2) % levels):
        raise ConfigError(f"low_res_steps: half the resolution ({cfg.resolution} / 2) must be a whole number "
                          f"divisible by {levels} for this model; set low_res_steps: 0 or change resolution")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = ClassConditionalUNet(cfg.model, num_classes, cfg.resolution).to(device)
    prepare_for_precision(model, device, cfg.precision)
    model = model.to(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    ema = copy.deepcopy(model).requires_grad_(False)
    forward = torch.compile(model) if cfg.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return model, forward, ema, opt, train_scheduler(cfg.model)


def train_step(model, forward, ema, opt, sched, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
               cfg: TrainConfig, step: int, gen: torch.Generator) -> torch.Tensor:
    """One optimizer step from step ``step``: LR, batch (drawn with ``gen``, augmented), label dropout,
    loss, gradient clipping, AdamW, EMA. images: uint8 [N, 3, S, S] on the model's device, labels [N].
    Returns the (detached) loss; raises TrainingError on a non-finite loss."""
    from synthmix.data.augment import augment_batch

    device = images.device
    for g in opt.param_groups:
        g["lr"] = lr_at(step, cfg)
    idx = torch.randint(0, len(labels), (cfg.batch_size,), generator=gen).to(device)
    x0 = augment_batch(images[idx], cfg.augment, gen) * 2 - 1
    if step < cfg.low_res_steps:  # progressive training: early steps at half resolution (1/4 FLOPs)
        x0 = F.interpolate(x0, scale_factor=0.5, mode="area")
    if cfg.channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    drop = (torch.rand(cfg.batch_size, generator=gen) < cfg.cond_drop).to(device)
    cond = torch.where(drop, torch.full_like(labels[idx], num_classes), labels[idx])
    loss = diffusion_loss(forward, sched, x0, cond, gen, cfg.min_snr_gamma, cfg.precision)
    if not torch.isfinite(loss):
        raise TrainingError(f"non-finite loss at step {step}; lower lr (now {cfg.lr})")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    # EMA decay ramps up so short runs are not dominated by the random init.
    ema_update(ema, model, min(cfg.ema_decay, (2 + step) / (11 + step)))
    return loss.detach()


def train_generator(cfg: TrainConfig, on_step: Callable[[int, float], None] | None = None,
                    show_progress: bool = True) -> Path:
    """Train (or resume) into ``cfg.out_dir``; returns the path of ``checkpoint.pt``.

    ``on_step(step, loss)`` is called after every optimizer step (tests use it to interrupt).
    """
    from synthmix.core.device import pick_device
    from synthmix.core.log import console, progress
    from synthmix.generation.embedded.grid import save_sample_grid
    from synthmix.generation.embedded.unet import count_params

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    device = pick_device(cfg.device)
    images, labels, classes = load_training_data(cfg)
    images, labels = images.to(device), labels.to(device)
    model, forward, ema, opt, sched = build_training(cfg, len(classes), device)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, elapsed, cpu = 0, 0.0, 0.0
    ident = identity_hash(cfg)

    if ckpt_path.exists():
        state = load_state(ckpt_path)
        if state.get("identity") != ident or list(state.get("classes", [])) != classes:
            raise ConfigError(f"{ckpt_path}: was trained with different settings or classes; use another "
                              f"out_dir (or delete it) to train this config")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        cpu = float(state.get("cpu_s", 0.0))
        console().print(f"resuming {ckpt_path} at step {step} ({elapsed:.0f} s trained)")
    atomic_write_json(out / "train_config.json", cfg.model_dump(mode="json"))

    def checkpoint(finished: bool) -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "step": step, "elapsed_s": elapsed, "cpu_s": cpu, "rng": gen.get_state(), "identity": ident,
            "config": json.dumps(cfg.model_dump(mode="json")), "classes": classes, "finished": finished})

    def budget_left() -> bool:
        return step < cfg.steps and (cfg.max_minutes is None or elapsed < cfg.max_minutes * 60)

    console().print(f"embedded generator: {count_params(model) / 1e6:.2f} M parameters, "
                    f"{len(labels)} images of {len(classes)} classes at {cfg.resolution} px, device {device}")
    log_path = out / "train_log.jsonl"
    run_loss = None
    model.train()
    with progress() as bar:
        task = bar.add_task("train generator", total=cfg.steps, completed=step, info="",
                            visible=show_progress)
        while budget_left():
            t0, c0 = time.perf_counter(), time.process_time()
            loss = train_step(model, forward, ema, opt, sched, images, labels, len(classes), cfg, step, gen)
            step += 1
            elapsed += time.perf_counter() - t0
            cpu += time.process_time() - c0  # CPU seconds of all threads: honest under contention
            lv = loss.item()
            run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
            bar.update(task, completed=step, info=f"loss {run_loss:.4f}")
            if step % 25 == 0 or not budget_left():
                append_jsonl(log_path, [{"step": step, "loss": round(run_loss, 5), "elapsed_s": round(elapsed, 2),
                                        "cpu_s": round(cpu, 2)}])
            if step % cfg.checkpoint_every == 0 or not budget_left():
                checkpoint(finished=not budget_left())
            if cfg.sample_every and step % cfg.sample_every == 0 and budget_left():
                save_sample_grid(ema, cfg, classes, out / "samples" / f"step_{step:06d}.png")
            if on_step:
                on_step(step, lv)
    if not ckpt_path.exists():  # nothing to do (budget already spent) and never saved
        checkpoint(finished=True)
    save_sample_grid(ema, cfg, classes, out / "samples" / "final.png")
    console().print(f"trained {step} steps in {elapsed:.0f} s wall, {cpu:.0f} s CPU -> {ckpt_path}")
    return ckpt_path
