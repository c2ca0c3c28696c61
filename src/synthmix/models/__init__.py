"""Classifier backbones + heads behind a registry: ``create_model(name, num_classes, ...)``.

The built-in entries register themselves on import (timm's way: ``builtin`` and
``feature_extractors`` import the registry); importing this package therefore loads torch.
"""

from synthmix.models import builtin, feature_extractors  # noqa: F401  (register on import)
from synthmix.models.registry import available_models, create_model, model_defaults, register_model

__all__ = ["available_models", "create_model", "model_defaults", "register_model"]
