"""MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, as a pure function.

``TrainConfig.mixup`` (:class:`MixupConfig`) switches them on in the training loop; off by
default. Per batch (timm's "batch" mode): with probability ``prob`` the batch is mixed with
its reverse (``x.flip(0)``), by CutMix with probability ``switch_prob`` when both are on, with
``lam ~ Beta(alpha, alpha)``; targets become probabilities ``lam * t + (1 - lam) * t.flip(0)``
(CutMix: ``lam`` recomputed from the pasted box's area).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from synthmix.core.config import StrictModel

if TYPE_CHECKING:
    import torch


class MixupConfig(StrictModel):
    """MixUp / CutMix settings (both off when their alpha is 0)."""

    mixup_alpha: float = Field(0.0, ge=0, description="MixUp Beta(alpha, alpha); 0 = off (0.2 is usual)")
    cutmix_alpha: float = Field(0.0, ge=0, description="CutMix Beta(alpha, alpha); 0 = off (1.0 is usual)")
    prob: float = Field(1.0, ge=0, le=1, description="probability that a batch is mixed")
    switch_prob: float = Field(0.5, ge=0, le=1, description="with both on: probability of CutMix")

    def enabled(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


def mix_batch(x: torch.Tensor, targets: torch.Tensor, num_classes: int, cfg: MixupConfig,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix ``x`` [N,3,H,W] float with ``x.flip(0)``; ``targets`` int [N] or probabilities
    [N, C]. Returns (x_mixed [N,3,H,W], targets [N, C] float, lam). Draws exactly one int from
    ``generator`` per call (everything else from a numpy RNG seeded by it), so a run stays
    deterministic and resumable when the loop passes its augmentation generator."""
    import torch
    import torch.nn.functional as F

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    rng = np.random.default_rng(seed)
    t = targets.float() if targets.ndim == 2 else F.one_hot(targets.long(), num_classes).to(x.dtype)
    if not cfg.enabled() or rng.random() >= cfg.prob or x.shape[0] < 2:
        return x, t, 1.0
    use_cutmix = cfg.cutmix_alpha > 0 and (cfg.mixup_alpha == 0 or rng.random() < cfg.switch_prob)
    alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        out = x.clone()
        out[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        out = lam * x + (1 - lam) * x.flip(0)
    return out, lam * t + (1 - lam) * t.flip(0), lam
