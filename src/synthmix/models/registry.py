"""Model registry (timm-style): each entry builds a :class:`Classifier`.

A ``Classifier`` exposes ``forward_features(x) -> [N, D]`` and ``forward_head(f) -> [N, C]``
separately: contrastive training, linear probes, OOD detectors and Grad-CAM need both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def _ensure_builtin() -> None:
    from synthmix.models import builtin  # noqa: F401  (registers on import)


def available_models() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, **kwargs: Any):
    """Build a registered model. Unknown names list what exists."""
    _ensure_builtin()
    if name not in _REGISTRY:
        from synthmix.core.errors import ConfigError

        raise ConfigError(f"model: unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](num_classes=num_classes, **kwargs)
