"""Exponential moving average of a model's weights (Polyak averaging, as timm's ModelEma).

``TrainConfig.ema_decay`` (None = off) switches it on in :func:`synthmix.training.loop.fit`:
after every optimizer step ``ema = decay * ema + (1 - decay) * weights`` over every floating
entry of the state dict (BatchNorm running statistics included; integer buffers copied);
validation, best-epoch tracking and the final weights use the averaged weights. The EMA state
is saved in the checkpoint, so a resumed run ends with the same weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any


class WeightEma:
    """Averaged copy of ``model.state_dict()`` (on the model's device)."""

    def __init__(self, model, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model) -> None:
        """One step: ema = decay * ema + (1 - decay) * current (floating entries)."""
        import torch

        with torch.no_grad():
            for k, v in model.state_dict().items():
                e = self.state[k]
                if e.is_floating_point():
                    e.mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
                else:
                    e.copy_(v)

    @contextmanager
    def swapped(self, model):
        """Inside: ``model`` holds the averaged weights; afterwards its own again."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "state": self.state}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.decay = float(d["decay"])
        for k, v in d["state"].items():
            self.state[k].copy_(v)
