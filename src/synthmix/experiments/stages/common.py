"""Helpers every stage module uses: a dependency's summary and the paths it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.io import read_json
from synthmix.experiments.executor import DONE, StageContext

MANIFEST = "manifest.jsonl"


def dep_summary(ctx: StageContext, name: str) -> dict[str, Any]:
    """The ``summary`` a dependency returned (from its done marker)."""
    return read_json(ctx.deps[name] / DONE)["summary"]


def dep_path(ctx: StageContext, name: str, key: str = "manifest") -> Path:
    """A path a dependency's summary names (stored relative to the dependency's directory)."""
    from synthmix.core.paths import resolve_stored

    return resolve_stored(dep_summary(ctx, name)[key], ctx.deps[name])
