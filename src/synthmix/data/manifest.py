"""The manifest: one row per image, real or synthetic, with its provenance.

Stored as JSON lines (``manifest.jsonl``): pandas (``read_json(lines=True)``) and HF
``datasets`` (``load_dataset("json", ...)``) read it, and rows can be appended one at a
time, which makes generation resumable (a row is appended only after its image exists).

Paths follow the one rule of :mod:`synthmix.core.paths`: a row's ``path`` is relative to the
manifest's directory when the file lies in the same run tree (generated images), absolute
otherwise (the user's real images). Open a file with :func:`resolve_path`; copy rows into
another manifest with :func:`rebase_rows` (never by hand).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synthmix.core.errors import DataError
from synthmix.core.io import append_jsonl, read_jsonl, write_jsonl
from synthmix.core.paths import portable_path, resolve_stored

# Columns every row has (None where not applicable). Later stages may add more keys.
COLUMNS: tuple[str, ...] = (
    "id",           # real: content hash (sha256 prefix); synthetic: planned job id (known before
                    # the image exists, so a re-run can skip it)
    "sha256",       # full sha256 of the stored file (audit checks it)
    "path",         # absolute, or relative to the manifest's directory
    "label",        # class name (str); provenance never lives in the sign of a label
    "split",        # train / val / test / ood (or any named evaluation set)
    "width", "height", "mode",  # of the stored file, before conversion
    "source",       # "real" or the generator name ("embedded", "text2img", "dafusion")
    "role",         # real rows: None; synthetic: in_dist / near_ood / reject / unsorted
    "parent_id",    # img2img parent (a real row id)
    "parent_label", # class the image was generated from (near-OOD negatives are "not this")
    "seed", "strength", "guidance", "steps",
    "prompt", "negative_prompt",
    "method",       # txt2img / img2img / sample / interp ...
    "generator", "model_id", "checkpoint",
    "status",       # ok / failed (NaN, black) / skipped
    "boxes",        # list of [xmin, ymin, xmax, ymax] (pixels of the stored file) or None
    "scores",       # dict of curation scores
    "recipe",       # adapted generators: dict of the adaptation recipe used (name, model, settings,
                    # adapter file), see synthmix.generation.sd.recipes; None otherwise
    "soft_label",   # inter-class translations: {class: weight} summing to 1 (the CE target); None = one-hot label
)

SOURCE_REAL = "real"
ROLES = ("in_dist", "near_ood", "reject", "unsorted", "translation")
# ``translation``: an image translated from a real image of ``parent_label`` towards ``label``
# (Diff-Mix); it carries a ``soft_label``, keeps its role through curation (never promoted to
# in_dist) and enters a training mix only when a mix lists the role.
ROLE_TRANSLATION = "translation"


def new_row(**fields: Any) -> dict[str, Any]:
    """A row with every standard column present (None by default) plus ``fields``."""
    unknown_required = {"id", "path", "label", "split", "source"} - fields.keys()
    if unknown_required:
        raise ValueError(f"manifest row lacks {sorted(unknown_required)}")
    row = dict.fromkeys(COLUMNS)
    row.update(fields)
    return row


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a manifest; every row gets every standard column. Duplicate ids are an error."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "manifest not found")
    rows = [dict(dict.fromkeys(COLUMNS), **r) for r in read_jsonl(path)]
    seen: dict[str, str] = {}
    for r in rows:
        if r["id"] in seen and seen[r["id"]] != r["split"]:
            pass  # same content in two splits is caught by the scan (leakage)
        seen[r["id"]] = r["split"]
    return rows


def write_manifest(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a whole manifest atomically."""
    write_jsonl(path, rows)


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows (e.g. one generated image at a time); durable once this returns."""
    append_jsonl(path, rows)


def resolve_path(manifest_path: str | Path, row_path: str) -> Path:
    """The file a row's ``path`` names (``manifest_path``: the manifest holding the row)."""
    return resolve_stored(row_path, Path(manifest_path).parent)


def rebase_rows(rows: Iterable[dict[str, Any]], source: str | Path, target: str | Path) -> list[dict[str, Any]]:
    """Copies of ``rows`` (read from manifest ``source``) with paths as manifest ``target`` stores them."""
    target_dir = Path(target).parent
    return [{**r, "path": portable_path(resolve_path(source, r["path"]), target_dir)} if r.get("path") else dict(r)
            for r in rows]


def select(rows: Iterable[dict[str, Any]], **criteria: Any) -> list[dict[str, Any]]:
    """Rows whose fields equal the given values (a tuple/list/set value means 'any of')."""
    out = []
    for r in rows:
        ok = True
        for k, v in criteria.items():
            if isinstance(v, (tuple, list, set, frozenset)):
                ok = r.get(k) in v
            else:
                ok = r.get(k) == v
            if not ok:
                break
        if ok:
            out.append(r)
    return out


def class_names(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Sorted class names of the rows (store this list with every run)."""
    return sorted({r["label"] for r in rows if r.get("label") is not None})


def train_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real rows of the train split: the only rows a generator may learn from or start from."""
    return [r for r in rows if r.get("split") == "train" and r.get("source") == SOURCE_REAL]


def assert_train_only(rows: Iterable[dict[str, Any]], stage: str) -> None:
    """Guard: raise if a stage is about to use rows that are not real training rows."""
    bad = [r for r in rows if r.get("split") != "train" or r.get("source") != SOURCE_REAL]
    if bad:
        r = bad[0]
        raise DataError(r.get("path", "?"),
                        f"{stage} may only use real train images, but this row has split="
                        f"{r.get('split')!r}, source={r.get('source')!r} ({len(bad)} such rows)")
