"""Classifier backbones + heads behind a registry: ``create_model(name, num_classes, ...)``."""

from synthmix.models.registry import available_models, create_model, model_defaults, register_model

__all__ = ["available_models", "create_model", "model_defaults", "register_model"]
