"""Cross-dataset evaluation: a trained run on another ImageFolder whose class names overlap.

``folder_rows(folder, classes) -> (rows, mapping)``: class folders of ``folder`` (the root of
``<class>/<image>``) are matched to the run's classes by name (case and surrounding
spaces ignored); folders without a match are reported in ``mapping["extra"]`` and skipped;
run classes without a folder are listed in ``mapping["missing"]`` (they still count in the
macro averages as classes the model may predict). No overlap at all is a DataError.
``evaluate_folder(model, folder, classes, out_dir, ...)`` evaluates on the matched images and
writes ``out_dir/<name>/mapping.json`` next to the usual evaluation files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthmix.core.errors import DataError
from synthmix.core.io import atomic_write_json


def _key(name: str) -> str:
    return name.strip().casefold()


def folder_rows(folder: str | Path, classes: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Manifest-like rows (absolute paths, run class labels) of the matching class folders."""
    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.data.images import is_image_file
    from synthmix.data.manifest import new_row

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(folder, "not a directory (expected an ImageFolder: <class>/<image>)")
    by_key = {_key(c): c for c in classes}
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    matched = {d.name: by_key[_key(d.name)] for d in subdirs if _key(d.name) in by_key}
    extra = [d.name for d in subdirs if d.name not in matched]
    missing = [c for c in classes if c not in matched.values()]
    if not matched:
        raise DataError(folder, f"no class folder matches the run's classes {list(classes)} "
                        f"(found {[d.name for d in subdirs]})")
    rows, counts = [], {}
    for d in subdirs:
        if d.name not in matched:
            continue
        files = sorted(p for p in d.rglob("*") if p.is_file() and is_image_file(p))
        counts[d.name] = len(files)
        for p in files:
            rows.append(new_row(id=short_id(sha256_file(p)), path=str(p), label=matched[d.name],
                                split="external", source="real"))
    if not rows:
        raise DataError(folder, "the matching class folders hold no images")
    mapping = {"folder": str(folder), "matched": matched, "extra": extra, "missing": missing,
               "counts": counts}
    return rows, mapping


def evaluate_folder(model, folder: str | Path, classes: Sequence[str], out_dir: str | Path, *,
                    name: str | None = None, input_size: int = 64, normalization: str = "imagenet",
                    preprocess=None, gradcam: bool = True, device: str = "cpu",
                    figures: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` on ``folder``; the result carries the class ``mapping``."""
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.evaluate import evaluate_model

    rows, mapping = folder_rows(folder, classes)
    name = name or f"folder-{Path(mapping['folder']).name}"
    x = load_tensor(rows, None, input_size, preprocess=preprocess)
    y = label_tensor(rows, classes).numpy()
    result = evaluate_model(model, x, y, classes, out_dir, name=name, ids=[r["id"] for r in rows],
                            gradcam=gradcam, normalization=normalization, device=device,
                            figures=figures)
    result["mapping"] = mapping
    atomic_write_json(Path(out_dir) / name / "mapping.json", mapping)
    atomic_write_json(Path(out_dir) / name / "metrics.json", result)
    return result
