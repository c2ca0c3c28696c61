"""Noise schedule, guided sampling (DDIM / DPM-Solver++), img2img and class interpolation.

Images are float tensors in [-1, 1] inside this module. Every sampled image owns its
``torch.Generator`` (seeded from its manifest row), and DDIM (eta = 0) and DPM-Solver++ add
no noise after the start, so an image depends only on its seed, class and settings: not on
the batch it was rendered in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from synthmix.generation.embedded.config import ModelConfig


def autocast(device: torch.device | str, precision: str):
    """bfloat16 autocast on ``device``'s type when ``precision == "bf16"`` (a no-op for fp32).

    Convolutions and matmuls run in bf16; autocast keeps reductions such as the norms in fp32;
    weights, gradients and optimizer state stay fp32."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: {precision!r} is not fp32 or bf16")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                          enabled=precision == "bf16")


def train_scheduler(cfg: ModelConfig):
    """The DDPM forward process used in training (add_noise, get_velocity, alphas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False)


def sample_scheduler(cfg: ModelConfig, sampler: str = "ddim"):
    """A fresh sampling scheduler (they hold per-run state, so one per call)."""
    common = {"num_train_timesteps": cfg.num_train_timesteps, "beta_schedule": cfg.beta_schedule,
              "prediction_type": cfg.prediction_type, "timestep_spacing": "trailing"}
    if sampler == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(clip_sample=True, set_alpha_to_one=False, **common)
    if sampler == "dpmpp":
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                           thresholding=False, lower_order_final=True, **common)
    raise ValueError(f"sampler: unknown sampler {sampler!r} (ddim, dpmpp)")


def noise_like(shape: Sequence[int], generators: Sequence[torch.Generator],
               device: str | torch.device = "cpu") -> torch.Tensor:
    """[N, *shape] standard normal noise, row i drawn from ``generators[i]`` (on the CPU, so the
    same seed gives the same noise on every device)."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators]).to(device)


def null_weights(cond: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Unconditional counterpart of ``cond`` in the same form (labels or weights)."""
    if cond.dtype in (torch.int64, torch.int32):
        return torch.full_like(cond, num_classes)
    w = torch.zeros_like(cond)
    w[:, num_classes] = 1.0
    return w


def class_weights(labels: torch.Tensor, other: torch.Tensor, weight: float, num_classes: int) -> torch.Tensor:
    """Soft condition [N, C+1]: (1 - weight) * onehot(labels) + weight * onehot(other)."""
    w = torch.zeros(labels.shape[0], num_classes + 1)
    w[torch.arange(labels.shape[0]), labels] += 1.0 - weight
    w[torch.arange(labels.shape[0]), other] += weight
    return w


@torch.no_grad()
def denoise(model, cfg: ModelConfig, cond: torch.Tensor, generators: Sequence[torch.Generator], *,
            steps: int = 25, guidance: float = 2.0, sampler: str = "ddim",
            init: torch.Tensor | None = None, strength: float = 1.0, precision: str = "fp32") -> torch.Tensor:
    """Generate images [N, 3, S, S] in [-1, 1].

    cond: int labels [N] or weights [N, C+1]; generators: one per row. ``init`` ([N, 3, S, S]
    in [-1, 1]) with ``strength`` in [0, 1] is img2img: the image is noised to the timestep a
    fraction ``strength`` into the schedule and denoised from there (strength 0 returns ``init``,
    strength 1 ignores it). Guidance: eps_null + guidance * (eps_cond - eps_null), batched as
    one forward pass of 2N. ``precision="bf16"``: the model runs under bf16 autocast, the
    scheduler's update stays fp32.
    """
    device = next(model.parameters()).device
    if hasattr(model, "set_attention"):
        from synthmix.generation.embedded.unet import prepare_for_precision

        prepare_for_precision(model, device, precision)
    res = model.unet.config.sample_size
    n = cond.shape[0]
    sched = sample_scheduler(cfg, sampler)
    sched.set_timesteps(steps, device=device)
    timesteps = sched.timesteps
    noise = noise_like((3, res, res), generators, device)
    if init is None or strength >= 1.0:
        x = noise * sched.init_noise_sigma
    else:
        # DA-Fusion / SDEdit: run only the last round(strength * steps) steps.
        k = int(round(strength * steps))
        if k == 0:
            return init.to(device).clone()
        timesteps = timesteps[steps - k:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(steps - k)
        x = sched.add_noise(init.to(device), noise, timesteps[:1].repeat(n))
    cond = cond.to(device)
    uncond = null_weights(cond, model.num_classes)
    both = torch.cat([cond, uncond]) if guidance != 1.0 else cond
    for t in timesteps:
        tt = t.expand(both.shape[0]) if t.ndim == 0 else t
        xin = torch.cat([x, x]) if guidance != 1.0 else x
        xin = sched.scale_model_input(xin, t)
        with autocast(device, precision):
            out = model(xin, tt, both).float()
        if guidance != 1.0:
            oc, ou = out.chunk(2)
            out = ou + guidance * (oc - ou)
        x = sched.step(out, t, x).prev_sample
    return x.clamp(-1, 1)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> float [-1, 1]."""
    return x.float() / 127.5 - 1.0
