"""The study's stage kinds, one module each: ``scan``, ``generator_train``, ``generate``,
``classical`` (the augmentation control's images), ``curate``, ``far_ood``, ``train`` (CE and
SupCon cells), ``evaluate``.

Each module has ``config(...) -> dict`` (the resolved settings its key hashes: everything that
changes its outputs, nothing that does not — device and threads travel in the context's
``runtime``) and ``run(ctx) -> summary dict``, which calls the owning package's public function
with ``ctx.out_dir``. Paths a stage writes into its summary are relative to ``ctx.out_dir``.
"""

from __future__ import annotations

from synthmix.experiments.stages import (
    classical,
    curate,
    evaluate,
    far_ood,
    generate,
    generator_train,
    inspect,
    scan,
    train,
)
from synthmix.experiments.stages.common import MANIFEST, dep_path, dep_summary

__all__ = ["MANIFEST", "classical", "curate", "dep_path", "dep_summary", "evaluate", "far_ood", "generate",
           "generator_train", "inspect", "scan", "train"]
