"""Built-in models: the fruit study's small CNN, ResNet-18, and a tiny CNN for tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from synthmix.core.errors import ConfigError
from synthmix.models.classifier import Classifier
from synthmix.models.registry import register_model


@register_model("small_cnn")
def small_cnn(num_classes: int, input_size: int = 64, dropout: float = 0.5, hidden: int = 128,
              width: int = 32) -> Classifier:
    """The fruit study's CNN: conv32-relu-pool, conv64-relu-pool, flatten, fc, dropout, fc."""
    if input_size % 4:
        raise ConfigError(f"model.input_size: must be a multiple of 4 for small_cnn, got {input_size}")
    # ReLUs are not in-place: Grad-CAM hooks the last one and must see its output unchanged.
    cam = nn.ReLU()
    backbone = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), cam, nn.MaxPool2d(2),
        nn.Flatten(),
    )
    feat = 2 * width * (input_size // 4) ** 2
    return Classifier(backbone, feat, num_classes, head_dropout=dropout, hidden=hidden, cam_layer=cam)


@register_model("tiny_cnn")
def tiny_cnn(num_classes: int, input_size: int = 32, width: int = 8, dropout: float = 0.0) -> Classifier:
    """Two conv layers and global pooling: for tests (milliseconds per batch)."""
    cam = nn.ReLU()
    backbone = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), cam,
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return Classifier(backbone, 2 * width, num_classes, head_dropout=dropout, cam_layer=cam)


@register_model("resnet18")
def resnet18(num_classes: int, input_size: int = 64, weights: str | None = None,
             dropout: float = 0.0, small_input: bool | None = None) -> Classifier:
    """torchvision ResNet-18, random init, or weights from a local file (never downloaded).

    ``small_input`` (default: input_size <= 64) swaps the 7x7/stride-2 stem + max-pool for a
    3x3/stride-1 stem, as is usual for 32-64 px images.
    """
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"model.weights: file not found: {path}")
        state = _load_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.startswith("fc.")]:
            raise ConfigError(f"model.weights: {path} does not match ResNet-18 "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if small_input if small_input is not None else input_size <= 64:
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return Classifier(net, 512, num_classes, head_dropout=dropout, cam_layer=net.layer4)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or pickled code (refused by weights_only): name it
        raise ConfigError(f"model.weights: cannot load {path}: {err}") from None
    return obj.get("state_dict", obj) if isinstance(obj, dict) else obj
