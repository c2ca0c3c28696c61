"""Stage ``scan``: validate the real ImageFolder and write its manifest (train/val/test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.errors import ConfigError
from synthmix.core.hashing import config_hash
from synthmix.experiments.config import StudyConfig, dataset_root
from synthmix.experiments.executor import StageContext


def fingerprint(root: Path) -> str:
    """Hash of every file's relative path and size: new, removed or resized images change the key
    (mtimes are left out so a fresh clone of the same data reuses results)."""
    if not root.is_dir():
        raise ConfigError(f"dataset.path: not a directory: {root}")
    files = sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*") if p.is_file())
    return config_hash(files, n=16)


def config(cfg: StudyConfig) -> dict[str, Any]:
    root = dataset_root(cfg)
    return {"root": str(root), "fingerprint": fingerprint(root), "val_fraction": cfg.dataset.val_fraction,
            "test_fraction": cfg.dataset.test_fraction, "seed": cfg.dataset.seed,
            "on_error": cfg.dataset.on_error}


def run(ctx: StageContext) -> dict[str, Any]:
    from synthmix.core.paths import portable_path
    from synthmix.data.scan import scan_dataset

    c = ctx.config
    report = scan_dataset(c["root"], ctx.out_dir, on_error=c["on_error"], val_fraction=c["val_fraction"],
                          test_fraction=c["test_fraction"], seed=c["seed"])
    j = report.to_json()
    return {"manifest": portable_path(report.manifest_path, ctx.out_dir), "n_images": j["n_images"],
            "classes": j["classes"], "counts": j["counts"], "n_skipped": len(j["skipped"]),
            "n_problems": len(j["problems"]), "fix_counts": j["fix_counts"]}
