"""The study's stage kinds, one module each: ``scan``, ``generator_train``, ``generate``,
``classical`` (the augmentation control's images), ``curate``, ``far_ood``, ``train`` (CE and
SupCon cells), ``evaluate``.

Each module has ``config(...) -> dict`` (the resolved settings its key hashes: everything that
changes its outputs, nothing that does not — device and threads travel in the context's
``runtime``) and ``run(ctx) -> summary dict``, which calls the owning package's public function
with ``ctx.out_dir``. Paths a stage writes into its summary are relative to ``ctx.out_dir``.
"""

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


# The stage modules (imported last: they use the helpers above).
from synthmix.experiments.stages import (  # noqa: E402
    classical,
    curate,
    evaluate,
    far_ood,
    generate,
    generator_train,
    scan,
    train,
)

__all__ = ["MANIFEST", "classical", "curate", "dep_path", "dep_summary", "evaluate", "far_ood", "generate",
           "generator_train", "scan", "train"]
