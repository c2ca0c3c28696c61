"""Generation backends by name: ``embedded``, ``text2img``, ``dafusion`` (and any a user adds).

A backend registers a config class (a StrictModel, validated with errors naming
``generator.<field>``) and a ``build`` function::

    build(cfg, real_rows, manifest_path, out_dir) -> (generator, planned_rows)

where ``real_rows`` are the manifest's real *train* rows (see
``synthmix.data.manifest.assert_train_only``), ``generator`` satisfies
``synthmix.generation.protocol.Generator`` and ``planned_rows`` are complete manifest rows
(minus path/status/size) with deterministic ids and one seed each.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synthmix.core.config import parse_config
from synthmix.core.errors import ConfigError


@dataclass(frozen=True)
class Backend:
    name: str
    config_cls: type
    build: Callable[..., tuple[Any, list[dict[str, Any]]]]


_BACKENDS: dict[str, Backend] = {}
# Modules that register the built-in backends on import (imported lazily: they pull in torch).
_BUILTIN_MODULES = {
    "embedded": "synthmix.generation.embedded.backend",
    "text2img": "synthmix.generation.sd.backend",
    "dafusion": "synthmix.generation.sd.backend",
    "lora": "synthmix.generation.sd.backend",      # LoRA / DreamBooth adaptation, then txt2img or img2img
    "diffmix": "synthmix.generation.sd.backend",   # inter-class translation with soft labels (Diff-Mix)
}


def register_backend(name: str, config_cls: type, build: Callable[..., Any]) -> None:
    _BACKENDS[name] = Backend(name, config_cls, build)


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _BACKENDS:
        raise ConfigError(f"generator.type: unknown generator {name!r}; available: "
                          f"{', '.join(sorted(set(_BUILTIN_MODULES) | set(_BACKENDS)))}")
    return _BACKENDS[name]


def parse_generator_config(data: dict[str, Any], source: str = "generator"):
    """Validate a ``{type: ..., ...}`` mapping with its backend's config class."""
    if not isinstance(data, dict) or "type" not in data:
        raise ConfigError(f"{source}.type: missing (one of {', '.join(sorted(_BUILTIN_MODULES))})")
    backend = get_backend(data["type"])
    return backend, parse_config(backend.config_cls, {k: v for k, v in data.items() if k != "type"},
                                 source=source)
