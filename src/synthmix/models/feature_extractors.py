"""CLIP and DINOv2 image towers (transformers) from a local folder, as frozen feature extractors.

``create_model("clip_vision", num_classes, weights="path/to/clip-vit-base-patch32")`` and
``create_model("dinov2", num_classes, weights="path/to/dinov2-small")`` build a
:class:`Classifier` whose backbone is the image tower (frozen: ``requires_grad=False``, kept in
eval mode) and whose head is linear: training it is a linear probe (or use
``synthmix.training.probe`` on cached features). ``weights`` is a folder written by
``save_pretrained`` (``config.json`` + ``model.safetensors``; a full CLIP checkpoint works, only
its vision tower is loaded); nothing is downloaded (``local_files_only=True``).

Features: CLIP: the post-layer-norm CLS token (``pooler_output``, [N, hidden]); DINOv2: the
layer-normed CLS token (``pooling="cls"``) or CLS concatenated with the mean patch token
(``pooling="cls+mean"``, [N, 2 * hidden], the DINOv2 paper's linear-probe features).
``model_defaults("clip_vision", weights=...)`` reads the folder's ``preprocessor_config.json``
(image size, mean/std).

Grad-CAM on these models hooks the patch-embedding convolution (the only spatial map the
towers have); it is coarse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synthmix.core.errors import ConfigError
from synthmix.models.classifier import Classifier
from synthmix.models.registry import register_model
from synthmix.models.timm_backbones import norm_name


def _folder(weights: str | Path | None, kind: str) -> Path:
    if weights is None:
        raise ConfigError(f"model.weights: {kind} needs a local folder written by save_pretrained "
                          "(config.json + model.safetensors); synthmix never downloads weights")
    path = Path(weights).expanduser()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"model.weights: {path} is not a model folder with config.json ({kind}); save one "
                          "with `<Model>.from_pretrained(<hub id>).save_pretrained(folder)` on a machine "
                          "with network and copy it here")
    return path


class HFVisionBackbone(nn.Module):
    """A frozen transformers image tower: images [N,3,H,W] (normalised) -> features [N, D]."""

    def __init__(self, net: nn.Module, pooling: str, trainable: bool = False):
        super().__init__()
        self.net = net
        self.pooling = pooling
        self.trainable = trainable
        for p in self.net.parameters():
            p.requires_grad_(trainable)
        self.net.eval()

    def train(self, mode: bool = True) -> HFVisionBackbone:
        super().train(mode)
        if not self.trainable:
            self.net.eval()  # frozen: no dropout / drop-path even while the head trains
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        size = getattr(self.net.config, "image_size", None)
        if self.pooling == "clip" and size is not None and x.shape[-1] != size:
            kwargs["interpolate_pos_encoding"] = True
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.net(pixel_values=x, **kwargs)
        if self.pooling == "cls+mean":
            h = out.last_hidden_state
            return torch.cat([out.pooler_output, h[:, 1:].mean(1)], dim=1)
        return out.pooler_output


def _build(kind: str, num_classes: int, weights, dropout: float, hidden: int | None, pooling: str,
           trainable: bool) -> Classifier:
    folder = _folder(weights, kind)
    try:
        if kind == "clip_vision":
            from transformers import CLIPVisionModel as Model
        else:
            from transformers import Dinov2Model as Model
    except ImportError:  # pragma: no cover
        raise ConfigError(f"model: {kind} needs transformers: pip install 'synthmix[diffusers]'") from None
    try:
        net = Model.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"model.weights: cannot load a {kind} tower from {folder}: {str(err)[:300]}") from None
    dim = int(net.config.hidden_size) * (2 if pooling == "cls+mean" else 1)
    backbone = HFVisionBackbone(net, pooling, trainable)
    return Classifier(backbone, dim, num_classes, head_dropout=dropout, hidden=hidden)


def _defaults(weights=None, **_: Any) -> dict[str, Any]:
    if weights is None or not (Path(weights) / "preprocessor_config.json").is_file():
        return {"input_size": None, "normalization": None, "mean": None, "std": None}
    pc_path = Path(weights) / "preprocessor_config.json"
    try:
        pc = json.loads(pc_path.read_text())
    except ValueError as err:
        raise ConfigError(f"model.weights: {pc_path} is not valid JSON: {err}") from None
    crop = pc.get("crop_size") or pc.get("size") or {}
    size = crop.get("height", crop.get("shortest_edge")) if isinstance(crop, dict) else crop
    mean, std = tuple(pc.get("image_mean", ())), tuple(pc.get("image_std", ()))
    return {"input_size": int(size) if size else None,
            "normalization": norm_name(mean, std) if len(mean) == len(std) == 3 else None,
            "mean": mean or None, "std": std or None}


@register_model("clip_vision")
def clip_vision(num_classes: int, weights: str | Path | None = None, input_size: int | None = None,
                dropout: float = 0.0, hidden: int | None = None, trainable: bool = False) -> Classifier:
    """CLIP image tower (transformers ``CLIPVisionModel``) from a local folder, frozen unless
    ``trainable``; features = post-layer-norm CLS token. Other input sizes interpolate the
    position embeddings."""
    return _build("clip_vision", num_classes, weights, dropout, hidden, "clip", trainable)


@register_model("dinov2")
def dinov2(num_classes: int, weights: str | Path | None = None, input_size: int | None = None,
           dropout: float = 0.0, hidden: int | None = None, pooling: str = "cls",
           trainable: bool = False) -> Classifier:
    """DINOv2 (transformers ``Dinov2Model``) from a local folder, frozen unless ``trainable``;
    ``pooling``: ``cls`` or ``cls+mean``."""
    if pooling not in ("cls", "cls+mean"):
        raise ConfigError(f"model.pooling: 'cls' or 'cls+mean', got {pooling!r}")
    return _build("dinov2", num_classes, weights, dropout, hidden, pooling, trainable)


clip_vision.defaults = _defaults  # type: ignore[attr-defined]
dinov2.defaults = _defaults  # type: ignore[attr-defined]
