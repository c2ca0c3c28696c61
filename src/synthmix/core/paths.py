"""Path safety: relative paths from configs and manifests never escape their root."""

from __future__ import annotations

from pathlib import Path

from synthmix.core.errors import SynthmixError


def safe_join(root: str | Path, relative: str | Path) -> Path:
    """Join ``relative`` under ``root``; refuse absolute paths and ``..`` escapes."""
    root = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise SynthmixError(f"{relative}: an absolute path is not allowed here (must stay under {root})")
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise SynthmixError(f"{relative}: path escapes its root directory {root}")
    return target
