"""Paths: the one rule for every path synthmix stores, and path safety.

**The rule.** A path written into any manifest, summary or config file is stored by
:func:`portable_path` and read back by :func:`resolve_stored`, always relative to the
directory of the file that stores it (for a manifest row: the manifest's directory):

- a file inside the same *run tree* is stored **relative** (``images/apple/x.png``,
  ``../scan-1a2b/manifest.jsonl``), so the run directory can be moved or copied and still
  be reported, audited and resumed;
- a file outside it (the user's dataset, the bundled demo data) is stored **absolute**.

The run tree is the nearest enclosing directory that holds a :data:`RUN_MARKER` file
(written by the study runner and by ``synthmix train`` into their output directory); without
a marker it is the storing file's own directory. Paths are never stored relative to the
working directory: the bug this rule exists for was a study run with a relative ``--out``
whose curation could not find a single generated image.
"""

from __future__ import annotations

import os
from pathlib import Path

from synthmix.core.errors import SynthmixError

RUN_MARKER = ".synthmix-run"


def mark_run_root(directory: str | Path) -> Path:
    """Make ``directory`` a run tree root (idempotent); returns it, absolute."""
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    marker = d / RUN_MARKER
    if not marker.exists():
        marker.write_text("synthmix run directory: paths inside it are stored relative "
                          "(synthmix.core.paths)\n", encoding="utf-8")
    return d


def run_root(path: str | Path) -> Path | None:
    """The nearest directory at or above ``path`` that holds a run marker, or None."""
    p = Path(path).resolve()
    for d in (p, *p.parents):
        if (d / RUN_MARKER).is_file():
            return d
    return None


def _inside(target: Path, root: Path) -> bool:
    return target == root or root in target.parents


def portable_path(target: str | Path, base_dir: str | Path) -> str:
    """How ``target`` is stored in a file living in ``base_dir`` (see the module rule)."""
    t, base = Path(target).resolve(), Path(base_dir).resolve()
    root = run_root(base) or base
    if _inside(t, root):
        return Path(os.path.relpath(t, base)).as_posix()
    return str(t)


def resolve_stored(stored: str | Path, base_dir: str | Path) -> Path:
    """The file a stored path names; ``base_dir`` is the directory of the file storing it."""
    p = Path(stored).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


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
