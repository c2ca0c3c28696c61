"""The one learning-rate schedule: linear warm-up, then cosine / step decay or constant.

Used per optimizer step by the CE loop (``training.loop``), the embedded generator and LoRA
training; stateless (a function of the step), so a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
from typing import Literal


def lr_schedule(step: int, *, total: int, warmup: int = 0, kind: Literal["cosine", "step", "none"] = "cosine",
                floor: float = 0.0, step_every: int = 1, gamma: float = 0.1, base: float = 1.0) -> float:
    """The learning rate at 0-based ``step`` for base rate ``base`` (1.0: the multiplier).

    - warm-up: ``base * (step + 1) / warmup`` for ``step < warmup``;
    - ``cosine``: from ``base`` down to ``base * floor`` at ``total`` steps (then stays there);
    - ``step``: ``base * gamma ** (step // step_every)``;
    - ``none``: ``base``.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    if kind == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
    if kind == "step":
        return base * gamma ** (step // step_every)
    return base
