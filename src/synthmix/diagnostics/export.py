"""Export a curated real + synthetic set as an ImageFolder that Hugging Face ``datasets`` loads.

``export_dataset(source, out_dir, cfg=None) -> dict`` takes

- a training run directory (``config.yaml`` + ``selection.jsonl``): its TRAIN split is exactly the
  rows the run trained on (real and synthetic, ``selection.jsonl``), its val / test splits the real
  rows of its manifest; or
- a manifest (e.g. ``curated/manifest.jsonl``): every real row, in its split, plus the synthetic rows
  whose role is in ``cfg.roles`` (default ``in_dist``), in ``train``.

By default the export holds the real images and the ``in_dist`` synthetic images; ``near_ood``
images go to their own top-level folder ``near_ood/<parent class>/`` only with
``cfg.near_ood=True`` (they are negatives, not members of the class); ``reject`` rows are never
exported unless named in ``cfg.roles``. Layout::

    out_dir/train/<label>/<id>.<ext>   + train/metadata.jsonl
    out_dir/val/<label>/...            + val/metadata.jsonl      (datasets calls it "validation")
    out_dir/test/<label>/...           + test/metadata.jsonl
    out_dir/near_ood/<label>/...       + near_ood/metadata.jsonl (optional; load it on its own)
    out_dir/manifest.parquet           every exported row, ``file`` relative to out_dir, scores as JSON
    out_dir/export.json, README.md     counts and how to load it

``metadata.jsonl`` has ``file_name`` (relative to its split folder), ``label``, ``role`` ("real" for
real rows) and provenance columns. ``datasets`` requires the same column types in every split's
file, so a missing value is written as "" (text columns and ``seed``, a string because seeds are
64-bit identifiers), NaN (``strength``, ``guidance``) or -1 (``steps``); the Parquet manifest
keeps real nulls. Files are copied byte for byte (no re-encoding). The export is built in a
temporary folder and renamed into place; an existing ``out_dir`` is replaced only if it is a
previous export (holds ``export.json``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from synthmix.core.config import StrictModel

TEXT_COLUMNS = ("id", "label", "role", "source", "split", "parent_id", "parent_label", "prompt",
                "negative_prompt", "method", "generator", "model_id", "checkpoint", "curation_reason", "sha256")
FLOAT_COLUMNS = ("strength", "guidance")
INT_COLUMNS = ("steps",)


class ExportConfig(StrictModel):
    """What ``synthmix export`` writes."""

    roles: list[str] = Field(default_factory=lambda: ["in_dist"], description="synthetic roles exported "
                             "into train/ (add 'unsorted' for an uncurated manifest)")
    near_ood: bool = Field(False, description="also export near_ood rows into near_ood/<parent class>/")
    splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"],
                              description="real splits exported")


def _source_rows(source: Path, cfg: ExportConfig) -> tuple[list[dict[str, Any]], str]:
    """(rows with absolute paths and the split/label they are exported under, kind of source)."""
    from synthmix.core.errors import DataError
    from synthmix.core.io import read_jsonl
    from synthmix.data.manifest import read_manifest, resolve_path

    if source.is_dir():
        if not (source / "config.yaml").is_file() or not (source / "selection.jsonl").is_file():
            raise DataError(source, "not a training run directory (needs config.yaml and selection.jsonl) "
                            "and not a manifest file")
        from synthmix.training.train import load_rows, load_run_config

        rows = load_rows(load_run_config(source))
        by_id = {r["id"]: r for r in rows}
        used = [r["id"] for r in read_jsonl(source / "selection.jsonl")]
        missing = [i for i in used if i not in by_id]
        if missing:
            raise DataError(source / "selection.jsonl", f"{len(missing)} row(s) are in no manifest of the run "
                            f"(first: {missing[0]})")
        out = [{**by_id[i], "split": "train"} for i in dict.fromkeys(used)]
        out += [r for r in rows if r.get("source") == "real" and r.get("split") in cfg.splits
                and r.get("split") != "train"]
        kind = "run"
    else:
        rows = [{**r, "path": str(resolve_path(source, r["path"]))} for r in read_manifest(source)]
        out = [r for r in rows if r.get("source") == "real" and r.get("split") in cfg.splits]
        out += [{**r, "split": "train"} for r in rows
                if r.get("source") != "real" and r.get("role") in cfg.roles and r.get("status") in (None, "ok")]
        kind = "manifest"
    if cfg.near_ood:
        out += [{**r, "split": "near_ood", "label": r.get("parent_label") or r.get("label")}
                for r in rows if r.get("source") != "real" and r.get("role") == "near_ood"
                and r.get("status") in (None, "ok")]
    return out, kind


def _meta(row: dict[str, Any], file_name: str) -> dict[str, Any]:
    m: dict[str, Any] = {"file_name": file_name}
    for c in TEXT_COLUMNS:
        v = row.get(c)
        m[c] = "" if v is None else str(v)
    if row.get("source") == "real" and not row.get("role"):
        m["role"] = "real"
    m["seed"] = "" if row.get("seed") is None else str(row["seed"])
    for c in FLOAT_COLUMNS:
        m[c] = float("nan") if row.get(c) is None else float(row[c])
    for c in INT_COLUMNS:
        m[c] = -1 if row.get(c) is None else int(row[c])
    return m


def export_dataset(source: str | Path, out_dir: str | Path, cfg: ExportConfig | None = None) -> dict[str, Any]:
    """Write the ImageFolder export (see the module docstring); returns the summary."""
    import pandas as pd

    from synthmix.core.errors import ConfigError, DataError
    from synthmix.core.io import atomic_write_json, atomic_write_text

    cfg = cfg or ExportConfig()
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise DataError(source, "not found (give a training run directory or a manifest)")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "export.json").is_file():
        raise ConfigError(f"--out {out_dir}: exists and is not a synthmix export; give a new or empty folder")
    rows, kind = _source_rows(source, cfg)
    if not rows:
        raise DataError(source, f"nothing to export (real splits {cfg.splits}, synthetic roles {cfg.roles})")
    seen: Counter[tuple[str, str]] = Counter((r["split"], r["id"]) for r in rows)
    dup = [k for k, n in seen.items() if n > 1]
    if dup:
        raise DataError(source, f"row id {dup[0][1]} appears twice in split {dup[0][0]}")
    for r in rows:
        if r.get("label") in (None, ""):
            raise DataError(r["path"], f"row {r['id']} has no label (nor parent_label): cannot place it in a "
                            "class folder")
        if not Path(r["path"]).is_file():
            raise DataError(r["path"], f"file of row {r['id']} not found")

    tmp = out_dir.parent / f".{out_dir.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        meta: dict[str, list[dict[str, Any]]] = {}
        table = []
        for r in rows:
            name = f"{r['id']}{Path(r['path']).suffix.lower()}"
            rel = f"{r['label']}/{name}"
            dest = tmp / r["split"] / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(r["path"], dest)
            meta.setdefault(r["split"], []).append(_meta(r, rel))
            table.append({**{k: v for k, v in r.items() if k != "path"}, "file": f"{r['split']}/{rel}",
                          "role": r.get("role") or ("real" if r.get("source") == "real" else None),
                          "scores": None if r.get("scores") is None else json.dumps(r["scores"], sort_keys=True),
                          "boxes": None if r.get("boxes") is None else json.dumps(r["boxes"]),
                          "seed": None if r.get("seed") is None else str(r["seed"])})
        for split, ms in meta.items():
            atomic_write_text(tmp / split / "metadata.jsonl", "".join(json.dumps(m) + "\n" for m in ms))
        df = pd.DataFrame(table)
        for c in df.columns:  # mixed Python objects (dicts, lists) would not go to Parquet
            if df[c].map(lambda v: isinstance(v, (dict, list))).any():
                df[c] = df[c].map(lambda v: None if v is None else json.dumps(v, sort_keys=True))
        df.to_parquet(tmp / "manifest.parquet", index=False)
        counts = {s: dict(Counter(m["role"] for m in ms)) for s, ms in meta.items()}
        warnings = [] if any(r.get("source") == "real" for r in rows) else [
            "no real images: this manifest holds generated rows only (export the curated manifest, which "
            "holds both, or a training run directory)"]
        summary = {"source": os.path.relpath(source.resolve(), out_dir.resolve()), "source_kind": kind, "n": len(rows), "counts": counts,
                   "classes": sorted({r["label"] for r in rows}), "config": cfg.model_dump(mode="json"),
                   "warnings": warnings,
                   "files": {"manifest": "manifest.parquet",
                             "metadata": {s: f"{s}/metadata.jsonl" for s in meta}}}
        atomic_write_json(tmp / "export.json", summary)
        atomic_write_text(tmp / "README.md", _readme(summary))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _readme(s: dict[str, Any]) -> str:
    lines = ["# synthmix export", "", f"From {s['source_kind']} `{s['source']}`: {s['n']} images, classes "
             + ", ".join(s["classes"]) + ".", "", "| split | " + " | ".join(["role", "images"]) + " |",
             "|---|---|---|"]
    for split, c in s["counts"].items():
        for role, n in sorted(c.items()):
            lines.append(f"| {split} | {role} | {n} |")
    lines += ["", "```python", "import datasets",
              'ds = datasets.load_dataset("imagefolder", data_dir="<this folder>")  # train / validation / test',
              'ds = ds.class_encode_column("label")  # label names -> integer classes', "```", "",
              "`near_ood/` (if present) is not a split `datasets` knows: load it with "
              '`data_dir="<this folder>/near_ood"`. `manifest.parquet` lists every image with its provenance.',
              "Missing values in `metadata.jsonl`: \"\" (text, seed), NaN (strength, guidance), -1 (steps).", ""]
    return "\n".join(lines)
