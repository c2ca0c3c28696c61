"""``synthmix audit RUN_DIR``: check every manifest under a run directory against the disk.

Checks, for each ``*.jsonl`` manifest found under the run directory:

- every row's file exists and (when the row records one) has its sha256;
- no duplicate ids within a manifest; no torn (partial) last line;
- relative paths stay inside the run directory (no ``../`` escape);
- every image file stored beside a manifest (its ``images/`` tree) has a row;
- planned = done + failed + rejected + skipped: the ids in ``*.plan.json`` equal the ids of the
  rows of the manifests in that directory;
- results, checkpoints and arrays beside the manifests are complete: every ``*.json`` parses,
  every ``*.pt`` / ``*.pth`` is a complete torch zip archive (CRCs checked unless ``--no-hash``),
  every ``*.npy`` and ``*.safetensors`` holds as many bytes as its header says;
- no temporary file is visible as done: a row whose file is a ``*.tmp`` is a problem; a
  ``*.tmp`` no row points at (left by a killed writer, or being written right now) is only a
  *warning* (not counted as done, safe to delete once no stage runs), so a run that was killed
  and resumed still passes.

A :class:`Problem` with ``warning=True`` is printed but does not fail the audit.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from synthmix.core.hashing import sha256_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str
    warning: bool = False  # reported, but the audit still passes

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def errors(problems: list[Problem]) -> list[Problem]:
    """The problems that fail an audit (warnings left out)."""
    return [p for p in problems if not p.warning]


def _read_rows(manifest: Path, problems: list[Problem]) -> list[dict]:
    rows = []
    raw = manifest.read_bytes()
    if raw and not raw.endswith(b"\n"):
        problems.append(Problem(str(manifest), "last line is incomplete (a write was cut short)"))
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(raw.splitlines()) and not raw.endswith(b"\n"):
                continue  # the torn last line, reported above
            problems.append(Problem(f"{manifest}:{n}", "line is not valid JSON"))
    return rows


def _is_manifest(path: Path) -> bool:
    if path.name.endswith(".plan.json") or path.suffix != ".jsonl":
        return False
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "id" in row and "path" in row


def audit_run(run_dir: str | Path, check_hashes: bool = True) -> tuple[list[Problem], dict[str, int]]:
    """Return (problems, counts). An empty problem list means the run directory is consistent."""
    run_dir = Path(run_dir).resolve()
    problems: list[Problem] = []
    counts = Counter()
    if not run_dir.is_dir():
        return [Problem(str(run_dir), "not a directory")], dict(counts)

    for tmp in sorted(run_dir.rglob("*.tmp")):
        counts["stale_tmp"] += 1
        problems.append(Problem(str(tmp), "temporary file (an interrupted or running write); not counted "
                                          "as done, safe to delete when no stage runs", warning=True))

    manifests = sorted(p for p in run_dir.rglob("*.jsonl") if _is_manifest(p))
    by_dir: dict[Path, list[dict]] = {}
    for manifest in manifests:
        counts["manifests"] += 1
        rows = _read_rows(manifest, problems)
        by_dir.setdefault(manifest.parent, []).extend(rows)
        for rid, n in Counter(r.get("id") for r in rows).items():
            if n > 1:
                problems.append(Problem(str(manifest), f"id {rid} appears {n} times"))
        for r in rows:
            counts["rows"] += 1
            if r.get("status") == "failed" or not r.get("path"):
                counts["failed"] += 1
                continue
            p = Path(r["path"])
            if not p.is_absolute():
                p = (manifest.parent / p).resolve()
                if run_dir not in p.parents:
                    problems.append(Problem(str(manifest), f"row {r.get('id')}: path {r['path']} escapes the run dir"))
                    continue
            if p.name.endswith(".tmp"):
                problems.append(Problem(str(p), f"row {r.get('id')} in {manifest.name} points at a "
                                                "temporary file"))
                continue
            if not p.is_file():
                problems.append(Problem(str(p), f"file of row {r.get('id')} in {manifest.name} is missing"))
                continue
            counts["files_checked"] += 1
            if check_hashes and r.get("sha256") and sha256_file(p) != r["sha256"]:
                problems.append(Problem(str(p), f"content does not match the sha256 of row {r.get('id')} "
                                                "(truncated or modified)"))

    for directory, rows in by_dir.items():
        referenced = {(directory / r["path"]).resolve() for r in rows
                      if r.get("path") and not Path(r["path"]).is_absolute()}
        images_dir = directory / "images"
        if images_dir.is_dir():
            for f in sorted(images_dir.rglob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES and f.resolve() not in referenced:
                    problems.append(Problem(str(f), "image file has no manifest row"))
        planned: set[str] = set()
        for plan in directory.glob("*.plan.json"):
            try:
                planned |= set(json.loads(plan.read_text())["ids"])
            except (ValueError, KeyError, TypeError):
                continue  # reported by the artifact check below
        if planned:
            ids = {r.get("id") for r in rows}
            counts["planned"] += len(planned)
            missing, extra = planned - ids, ids - planned
            if missing:
                problems.append(Problem(str(directory), f"{len(missing)} planned images have no row "
                                                        f"(e.g. {sorted(missing)[0]}): re-run to finish them"))
            if extra:
                problems.append(Problem(str(directory), f"{len(extra)} rows were never planned "
                                                        f"(e.g. {sorted(extra)[0]})"))

    for f in sorted(run_dir.rglob("*")):
        check = _ARTIFACT_CHECKS.get(f.suffix.lower())
        if check is None or not f.is_file() or f.name.endswith(".tmp"):
            continue
        counts["artifacts_checked"] += 1
        why = check(f, check_hashes)
        if why:
            problems.append(Problem(str(f), why))
    return problems, dict(counts)


# -- artifacts without a manifest row: results, checkpoints, arrays --------------------------------
# Each check returns why the file is damaged (truncated, cut short) or None. Written atomically,
# these files are never partial unless something outside synthmix damaged them.

def _check_json(path: Path, deep: bool) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        return f"not valid JSON (truncated or damaged?): {err}"
    return None


def _check_torch_zip(path: Path, deep: bool) -> str | None:
    """torch.save writes a zip archive: a cut file loses its central directory; CRCs catch the rest."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return "not a complete torch checkpoint (zip archive truncated or damaged?)"
    if deep:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            return f"checkpoint archive is damaged: {err}"
        if bad is not None:
            return f"checkpoint archive is damaged (CRC mismatch in {bad})"
    return None


def _check_npy(path: Path, deep: bool) -> str | None:
    import numpy as np

    try:
        with open(path, "rb") as fh:
            fmt = np.lib.format
            major, _ = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, _fortran, dtype = read_header(fh)
            header = fh.tell()
    except (ValueError, OSError, EOFError) as err:
        return f"not a readable .npy array (truncated or damaged?): {err}"
    if dtype.hasobject:
        return ".npy holds Python objects (loading it would need pickle)"
    need = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != need:
        return f".npy array of shape {tuple(shape)} needs {need} bytes, the file has {size} (truncated?)"
    return None


def _check_safetensors(path: Path, deep: bool) -> str | None:
    import struct

    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n)) if n <= size - 8 else None
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        return f"not a readable safetensors file: {err}"
    if header is None:
        return "safetensors header is cut short (truncated?)"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + n + end:
        return f"safetensors data needs {8 + n + end} bytes, the file has {size} (truncated?)"
    return None


_ARTIFACT_CHECKS = {".json": _check_json, ".pt": _check_torch_zip, ".pth": _check_torch_zip,
                    ".npy": _check_npy, ".safetensors": _check_safetensors}
