"""Scan + validate an ImageFolder and write its manifest.

Layouts (see docs/data.md):

- **split**: ``root/{train,val,test}/<class>/**/<image>`` (``valid``/``validation`` mean
  ``val``). Given splits are kept; if there is no ``val/``, a stratified ``val_fraction``
  of train is carved with ``seed``.
- **flat**: ``root/<class>/**/<image>``. Everything starts as train; a stratified
  ``test_fraction`` is carved as test (seeded), then ``val_fraction`` of the rest as val.

Hidden folders (``.ipynb_checkpoints``, ``.git``...) and ``__MACOSX`` are never classes;
``annotations/`` holds VOC boxes. Every image is fully decoded once (so truncated files
are found now, not mid-epoch). Each bad file either gets a documented fix (noted in
``fixes``) or is a :class:`DataError`; ``on_error="fail"`` raises the first one,
``"skip"`` leaves the file out and lists it in ``skipped``. The same image in two splits
is a :class:`LeakageError` (``skip``: the copy in the later split, val before test, is
dropped and listed). Non-image files are ignored and listed in ``ignored``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synthmix.core.errors import DataError, LeakageError
from synthmix.data.images import DEFAULT_MAX_PIXELS, WHITE, decode, is_image_file

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLIT_ORDER = ("train", "val", "test")
JUNK_DIRS = ("__MACOSX", "__pycache__")
MANIFEST_NAME = "manifest.jsonl"
REPORT_NAME = "scan_report.json"


@dataclass
class ScanReport:
    """What a scan found. ``rows`` are manifest rows; the other lists hold dicts with ``path``."""

    root: Path
    layout: str                                           # "split" or "flat"
    rows: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)  # kind, path, message
    skipped: list[dict[str, str]] = field(default_factory=list)   # path, reason
    ignored: list[dict[str, str]] = field(default_factory=list)   # path, reason
    fixes: list[dict[str, str]] = field(default_factory=list)     # path, fix
    options: dict[str, Any] = field(default_factory=dict)
    manifest_path: Path | None = None
    report_path: Path | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """{label: {split: n}} over the manifest rows."""
        out: dict[str, dict[str, int]] = {c: {} for c in self.classes}
        for r in self.rows:
            d = out.setdefault(r["label"], {})
            d[r["split"]] = d.get(r["split"], 0) + 1
        return out

    def modes(self) -> dict[str, int]:
        return dict(sorted(Counter(r["mode"] for r in self.rows).items()))

    def size_range(self) -> dict[str, int] | None:
        if not self.rows:
            return None
        ws = [r["width"] for r in self.rows]
        hs = [r["height"] for r in self.rows]
        return {"min_width": min(ws), "max_width": max(ws), "min_height": min(hs), "max_height": max(hs)}

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root), "layout": self.layout, "classes": self.classes,
            "n_images": len(self.rows), "counts": self.counts(), "modes": self.modes(),
            "size_range": self.size_range(),
            "fix_counts": dict(Counter(f["fix"] for f in self.fixes)),
            "problems": self.problems, "skipped": self.skipped, "ignored": self.ignored,
            "fixes": self.fixes, "options": self.options,
            "manifest": str(self.manifest_path) if self.manifest_path else None,
        }


@dataclass(frozen=True)
class _Item:
    path: Path
    label: str
    split: str


def scan_dataset(root: str | Path, out_dir: str | Path | None = None, *,
                 on_error: Literal["skip", "fail"] = "skip", val_fraction: float = 0.15,
                 test_fraction: float = 0.2, seed: int = 0, annotations: Literal["auto", "none"] = "auto",
                 background: Sequence[int] = WHITE, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 workers: int | None = None) -> ScanReport:
    """Scan ``root``; write ``out_dir/manifest.jsonl`` and ``out_dir/scan_report.json`` atomically
    (nothing is written when ``out_dir`` is None). Raises DataError / LeakageError on the first
    bad file when ``on_error="fail"``."""
    from synthmix.core.hashing import sha256_bytes, short_id
    from synthmix.data.manifest import SOURCE_REAL, new_row
    from synthmix.data.splits import carve

    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(root, "not a directory (expected an ImageFolder)")
    background = tuple(int(c) for c in background)
    layout, items, report = _collect(root)
    report.options = {"on_error": on_error, "val_fraction": val_fraction, "test_fraction": test_fraction,
                      "seed": seed, "annotations": annotations, "background": list(background),
                      "max_pixels": max_pixels}
    if not items:
        raise DataError(root, "no image files found (expected <class>/<image> or "
                        "train/<class>/<image> folders)")

    def work(item: _Item):
        try:
            try:
                data = item.path.read_bytes()
            except OSError as err:  # unreadable (permissions, I/O error, symlink loop): name it
                raise DataError(item.path, f"cannot read file: {err.strerror or err}") from None
            dec = decode(item.path, background=background, max_pixels=max_pixels)  # type: ignore[arg-type]
            return item, data, dec, None
        except DataError as err:
            return item, None, None, err

    n_workers = workers or min(4, os.cpu_count() or 1)
    rows: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for item, data, dec, err in pool.map(work, items):
            if err is not None:
                if on_error == "fail":
                    raise err
                report.skipped.append({"path": str(item.path), "reason": err.problem})
                continue
            sha = sha256_bytes(data)
            first = seen.get(sha)
            if first is not None:
                if not _duplicate(first, item, on_error, report):
                    continue
            boxes, box_labels = (None, None)
            if annotations == "auto":
                boxes, box_labels = _boxes(item, root, dec.width, dec.height, report)
                if boxes and dec.exif_rotated:
                    report.problems.append({"kind": "annotation", "path": str(item.path), "message":
                                            "EXIF-rotated image with boxes: boxes are taken to be in "
                                            "upright (rotated) pixel coordinates; check them"})
            row = new_row(id=short_id(sha), sha256=sha, path=str(item.path), label=item.label,
                          split=item.split, width=dec.width, height=dec.height, mode=dec.mode,
                          source=SOURCE_REAL, status="ok", boxes=boxes)
            row["format"] = dec.format
            row["box_labels"] = box_labels
            rows.append(row)
            seen[sha] = row
            _note_fixes(item, dec, report)

    present = {(i.label, i.split) for i in items}
    for label, split in sorted(present):
        if not any(r["label"] == label and r["split"] == split for r in rows):
            report.problems.append({"kind": "empty_class", "path": str(_class_dir(root, layout, split, label)),
                                    "message": f"every image of class {label!r} ({split}) was skipped"})
    classes = sorted({r["label"] for r in rows})
    train_classes = {r["label"] for r in rows if r["split"] == "train"}
    for c in classes:
        if c not in train_classes:
            report.problems.append({"kind": "class_not_in_train", "path": str(root),
                                    "message": f"class {c!r} has no train images"})

    if layout == "flat" and test_fraction > 0:
        rows = carve(rows, test_fraction, seed, source="train", target="test")
    if val_fraction > 0 and not any(r["split"] == "val" for r in rows):
        rows = carve(rows, val_fraction, seed, source="train", target="val")
    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    rows.sort(key=lambda r: (order.get(r["split"], 9), r["label"], r["path"]))
    report.rows, report.classes = rows, classes
    if out_dir is not None:
        write_scan(report, out_dir)
    return report


def write_scan(report: ScanReport, out_dir: str | Path) -> None:
    """Write the manifest and the report (each atomically) into ``out_dir``."""
    from synthmix.core.io import atomic_write_json
    from synthmix.data.manifest import write_manifest

    out_dir = Path(out_dir)
    report.manifest_path = out_dir / MANIFEST_NAME
    report.report_path = out_dir / REPORT_NAME
    write_manifest(report.manifest_path, report.rows)
    atomic_write_json(report.report_path, report.to_json())


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in JUNK_DIRS


def _collect(root: Path) -> tuple[str, list[_Item], ScanReport]:
    """Walk the folder tree: image items to decode, and everything ignored or odd."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    split_dirs = [p for p in subdirs if p.name.lower() in SPLIT_ALIASES and not _hidden(p.name)]
    layout = "split" if split_dirs else "flat"
    report = ScanReport(root=root, layout=layout)
    items: list[_Item] = []

    def ignore(p: Path, reason: str) -> None:
        report.ignored.append({"path": str(p), "reason": reason})

    for p in sorted(root.iterdir()):
        if p.is_file():
            ignore(p, "file outside any class folder")
        elif _hidden(p.name):
            ignore(p, "hidden folder (never a class)")
        elif p.name == "annotations":
            continue
        elif layout == "split" and p not in split_dirs:
            ignore(p, "folder is not a split (train/val/test) in a split layout")
    if layout == "split":
        seen_splits: dict[str, Path] = {}
        for sd in split_dirs:
            split = SPLIT_ALIASES[sd.name.lower()]
            if split in seen_splits:
                raise DataError(sd, f"two folders name the {split!r} split (also {seen_splits[split]})")
            seen_splits[split] = sd
            items += _collect_classes(sd, split, report)
    else:
        items += _collect_classes(root, "train", report, skip=("annotations",), files_seen=True)
    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    items.sort(key=lambda i: (order[i.split], i.label, str(i.path)))
    return layout, items, report


def _collect_classes(split_dir: Path, split: str, report: ScanReport, skip: Sequence[str] = (),
                     files_seen: bool = False) -> list[_Item]:
    items: list[_Item] = []
    for p in sorted(split_dir.iterdir()):
        if p.is_file():
            if not files_seen:
                report.ignored.append({"path": str(p), "reason": "file outside any class folder"})
            continue
        if _hidden(p.name) or p.name in skip:
            if _hidden(p.name) and not files_seen:
                report.ignored.append({"path": str(p), "reason": "hidden folder (never a class)"})
            continue
        found = 0
        walked: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
            # A symlink loop (or two links to one folder) would be walked again and again (with two
            # loops, exponentially): each real folder is walked once per class.
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in walked:
                report.ignored.append({"path": dirpath, "reason": "folder already scanned (symlink loop "
                                                                  "or a second link to it)"})
                dirnames[:] = []
                continue
            walked.add((st.st_dev, st.st_ino))
            real = os.path.realpath(dirpath)
            keep = []
            for d in sorted(dirnames):
                target = os.path.realpath(os.path.join(dirpath, d))
                if _hidden(d):
                    report.ignored.append({"path": str(Path(dirpath) / d), "reason": "hidden folder"})
                elif real == target or real.startswith(target.rstrip(os.sep) + os.sep):
                    # a link to a folder that contains it (e.g. ``up -> ..``): following it would
                    # also pull other classes' images in under this class's label
                    report.ignored.append({"path": str(Path(dirpath) / d),
                                           "reason": "symlink loop (links to a folder containing it); not followed"})
                else:
                    keep.append(d)
            dirnames[:] = keep
            for f in sorted(filenames):
                fp = Path(dirpath) / f
                if is_image_file(fp) and not f.startswith("."):
                    items.append(_Item(fp, p.name, split))
                    found += 1
                elif fp.suffix.lower() == ".xml" and (fp.with_suffix(".jpg").exists() or any(
                        fp.with_suffix(e).exists() for e in (".png", ".jpeg", ".JPG", ".PNG"))):
                    continue  # a VOC annotation next to its image
                else:
                    report.ignored.append({"path": str(fp), "reason": "not an image file (by extension)"})
        if found == 0:
            report.problems.append({"kind": "empty_class", "path": str(p),
                                    "message": f"class folder {p.name!r} ({split}) holds no images; "
                                               "it is not a class"})
    return items


def _class_dir(root: Path, layout: str, split: str, label: str) -> Path:
    return root / label if layout == "flat" else root / split / label


def _duplicate(first: dict[str, Any], item: _Item, on_error: str, report: ScanReport) -> bool:
    """Handle a second copy of an image; True to keep it (never, today)."""
    if first["split"] != item.split:
        err = LeakageError(item.path, first["path"], f"{item.split} vs {first['split']}")
        if on_error == "fail":
            raise err
        report.problems.append({"kind": "leakage", "path": str(item.path), "message": str(err)})
        report.skipped.append({"path": str(item.path),
                               "reason": f"leakage: same image as {first['path']} ({first['split']}); "
                                         f"the {item.split} copy is dropped"})
        return False
    what = "same class" if first["label"] == item.label else f"classes {first['label']!r} and {item.label!r}"
    report.problems.append({"kind": "duplicate", "path": str(item.path),
                            "message": f"same image as {first['path']} ({what}); this copy is dropped"})
    report.skipped.append({"path": str(item.path), "reason": f"duplicate of {first['path']}"})
    return False


def _boxes(item: _Item, root: Path, width: int, height: int, report: ScanReport):
    from synthmix.data.voc import clip_box, find_annotation, read_voc

    xml = find_annotation(item.path, root, item.split)
    if xml is None:
        return None, None
    try:
        objs = read_voc(xml)
    except DataError as err:
        report.problems.append({"kind": "annotation", "path": err.path, "message": err.problem})
        return None, None
    boxes, names = [], []
    for o in objs:
        b = clip_box(o.box, width, height)
        if b is None:
            report.problems.append({"kind": "annotation", "path": str(xml),
                                    "message": f"box {list(o.box)} lies outside the {width}x{height} image"})
            continue
        boxes.append([round(v, 2) for v in b])
        names.append(o.name)
    return (boxes, names) if boxes else (None, None)


def _note_fixes(item: _Item, dec, report: ScanReport) -> None:
    p = str(item.path)
    if dec.had_alpha:
        report.fixes.append({"path": p, "fix": f"{dec.mode} with transparency composited on the background"})
    elif dec.mode not in ("RGB",):
        report.fixes.append({"path": p, "fix": f"{dec.mode} converted to RGB"})
    if dec.exif_rotated:
        report.fixes.append({"path": p, "fix": "EXIF orientation applied"})
    ext_fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
               ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP"}.get(item.path.suffix.lower())
    if dec.format and ext_fmt and dec.format != ext_fmt:
        report.fixes.append({"path": p, "fix": f"{dec.format} data behind a {item.path.suffix} name, "
                                               "read by content"})


def summary_table(report: ScanReport):
    """A rich Table: images per class and split, then modes, sizes, fixes, problems."""
    from rich.table import Table

    splits = [s for s in SPLIT_ORDER if any(r["split"] == s for r in report.rows)]
    t = Table(title="images per class and split")
    t.add_column("class")
    for s in splits:
        t.add_column(s, justify="right")
    t.add_column("total", justify="right")
    counts = report.counts()
    for c in report.classes:
        t.add_row(c, *[str(counts[c].get(s, 0)) for s in splits], str(sum(counts[c].values())))
    t.add_row("[bold]all", *[str(sum(1 for r in report.rows if r["split"] == s)) for s in splits],
              f"[bold]{len(report.rows)}")
    return t


def summary_lines(report: ScanReport) -> list[str]:
    """Plain lines under the table: modes, size range, fixes, problems, skipped, ignored."""
    lines = [f"root: {report.root} ({report.layout} layout, {len(report.classes)} classes)",
             "modes: " + ", ".join(f"{m} {n}" for m, n in report.modes().items())]
    sr = report.size_range()
    if sr:
        lines.append(f"sizes: width {sr['min_width']}-{sr['max_width']}, "
                     f"height {sr['min_height']}-{sr['max_height']}")
    boxed = sum(1 for r in report.rows if r.get("boxes"))
    lines.append(f"boxes: {boxed} of {len(report.rows)} images have VOC boxes")
    for fix, n in Counter(f["fix"] for f in report.fixes).most_common():
        lines.append(f"fixed: {n} x {fix}")
    lines.append(f"problems: {len(report.problems)}, skipped: {len(report.skipped)}, "
                 f"ignored: {len(report.ignored)}")
    for p in report.problems[:20]:
        lines.append(f"  problem ({p['kind']}): {p['message']}  [{p['path']}]")
    for s in report.skipped[:20]:
        lines.append(f"  skipped: {s['path']}: {s['reason']}")
    for s in report.ignored[:10]:
        lines.append(f"  ignored: {s['path']}: {s['reason']}")
    return lines
