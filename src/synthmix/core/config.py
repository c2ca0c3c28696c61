"""Config base: frozen pydantic models, loaded from YAML with errors that name the field."""

from __future__ import annotations

from copy import copy
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from synthmix.core.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Unknown fields are errors (a typo must not be silently ignored); instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@cache
def partial_model(model: type[T]) -> type[BaseModel]:
    """``model`` with every field optional (unset by default): typed *overrides* of a config.

    A study's ``training:`` or a setup's override block is one of these: a misspelt or invalid
    field is an error naming it, and ``.model_dump(exclude_unset=True)`` gives what was set."""
    fields = {}
    for name, f in model.model_fields.items():
        info = copy(f)  # keeps the field's constraints (ge, le, pattern) and description
        info.default, info.default_factory = None, None
        fields[name] = (f.annotation | None, info)
    return create_model(f"{model.__name__}Overrides", __config__=ConfigDict(extra="forbid", frozen=True),
                        __doc__=f"Overrides of {model.__name__} (only the fields given are set).", **fields)


def overrides(obj: BaseModel | None) -> dict[str, Any]:
    """The fields set in an overrides object (JSON-able), ``{}`` for None."""
    return {} if obj is None else obj.model_dump(mode="json", exclude_unset=True)


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  - {loc}: {e['msg']}")
    return "\n".join(lines)


def parse_config(model: type[T], data: Any, source: str = "config") -> T:
    """Validate ``data`` as ``model``; raise :class:`ConfigError` naming each bad field."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_yaml(path: str | Path) -> Any:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def load_config(model: type[T], path: str | Path) -> T:
    """Load a YAML file into ``model`` (validated)."""
    return parse_config(model, load_yaml(path), source=str(path))


def dump_yaml(obj: BaseModel | dict, path: str | Path) -> None:
    import yaml

    from synthmix.core.io import atomic_write_text

    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
