"""Model registry (timm-style): each entry builds a :class:`Classifier`.

Names: the registered ones (``available_models()``) and ``timm:<architecture>[.<tag>]`` for any
timm model (``synthmix.models.timm_backbones``; weights only from local files or the hub cache).

A ``Classifier`` exposes ``forward_features(x) -> [N, D]`` and ``forward_head(f) -> [N, C]``
separately: contrastive training, linear probes, OOD detectors and Grad-CAM need both.

Registration happens on import, timm's way: ``models/builtin.py`` and
``models/feature_extractors.py`` import this module and register their entries, and the package
``synthmix.models`` imports them, so this module imports no model code (no import cycle).
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


TIMM_PREFIX = "timm:"


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, **kwargs: Any):
    """Build a registered model (or ``timm:<arch>``). Unknown names list what exists."""
    if name.startswith(TIMM_PREFIX):
        from synthmix.models.timm_backbones import create_timm

        return create_timm(name[len(TIMM_PREFIX):], num_classes, **kwargs)
    if name not in _REGISTRY:
        from synthmix.core.errors import ConfigError

        raise ConfigError(f"model: unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}, "
                          "or timm:<architecture> (e.g. timm:convnext_tiny)")
    return _REGISTRY[name](num_classes=num_classes, **kwargs)


def model_defaults(name: str, **kwargs: Any) -> dict[str, Any]:
    """The input size and normalisation a model expects when it is pretrained, for the study to
    use unless it overrides them: ``{"input_size": int | None, "normalization": str | None,
    "mean": (3 floats) | None, "std": (3 floats) | None}`` (``normalization`` is a name of
    ``synthmix.data.augment.NORMALIZATIONS``; None when mean/std match no name). ``kwargs``: the
    model's ``create_model`` arguments (``weights`` may carry its own config). Models trained from
    scratch (no weights) have no preference beyond the ImageNet statistics: input_size None."""
    if name.startswith(TIMM_PREFIX):
        from synthmix.models.timm_backbones import timm_defaults

        d = timm_defaults(name[len(TIMM_PREFIX):], kwargs.get("weights"))
        return {k: d[k] for k in ("input_size", "normalization", "mean", "std")}
    if name not in _REGISTRY:
        create_model(name, 2)  # the unknown-name error
    fn = getattr(_REGISTRY[name], "defaults", None)
    if fn is not None:
        return fn(**kwargs)
    return {"input_size": None, "normalization": "imagenet", "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225)}
