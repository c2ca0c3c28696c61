"""Checkpoints: one ``checkpoint.pt`` (torch.save, loaded with ``weights_only=True``), atomic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from synthmix.core.errors import DataError
from synthmix.core.io import atomic_path
from synthmix.generation.embedded.config import ModelConfig, TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a kill mid-write leaves the previous file)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or foreign file
        raise DataError(path, f"not a readable embedded-generator checkpoint: {err}") from None


@dataclass
class LoadedGenerator:
    """A trained model ready to sample: EMA weights in eval mode."""

    model: Any              # ClassConditionalUNet
    model_cfg: ModelConfig
    classes: list[str]
    resolution: int
    checkpoint: str         # sha256 prefix of the checkpoint file (manifest provenance)
    step: int
    path: Path


def load_generator(path: str | Path, device: str = "cpu", use_ema: bool = True) -> LoadedGenerator:
    """Load a checkpoint written by :func:`train_generator` (EMA weights unless ``use_ema=False``)."""
    from synthmix.generation.embedded.unet import ClassConditionalUNet

    path = Path(path)
    state = load_state(path)
    for key in ("config", "classes", "model", "step"):
        if key not in state:
            raise DataError(path, f"checkpoint lacks {key!r} (not written by synthmix generator train)")
    cfg = TrainConfig.model_validate(json.loads(state["config"]))
    model = ClassConditionalUNet(cfg.model, len(state["classes"]), cfg.resolution)
    model.load_state_dict(state["ema" if use_ema and "ema" in state else "model"])
    model.to(device).eval().requires_grad_(False)
    return LoadedGenerator(model, cfg.model, list(state["classes"]), cfg.resolution,
                           weights_fingerprint(state["ema" if use_ema and "ema" in state else "model"],
                                               list(state["classes"]), cfg.resolution),
                           int(state["step"]), path)


def weights_fingerprint(weights: dict[str, Any], classes: list[str], resolution: int) -> str:
    """16 hex digits of sha256 over the sampling weights (names and bytes), classes and resolution.

    The provenance of every generated row and the seed of its planned id: it must depend on what
    makes the images, not on the checkpoint file, which also holds the training config's paths and
    timings (a file hash made every run plan different ids, hence different images)."""
    import hashlib

    h = hashlib.sha256(json.dumps({"classes": classes, "resolution": resolution}).encode())
    for name in sorted(weights):
        t = weights[name]
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes() if hasattr(t, "detach") else repr(t).encode())
    return h.hexdigest()[:16]
