"""Kill helpers: run a stage in a subprocess, SIGKILL it at observed progress points, re-run it.

A kill point is chosen by *polling observable progress* (manifest rows, image files, temporary
files, checkpoint epochs), never by sleeping a guessed time, so the test kills the stage
where it means to on a fast or a slow machine. Points are drawn from a seeded
``random.Random``, so a failing case can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# A guard against a hung stage, not a timing assertion: a kill point not reached by then means
# the stage finished (or hung; then the final run's own timeout catches it).
POLL_GUARD_S = 300.0


@dataclass(frozen=True)
class Kill:
    """One interrupted run: what we waited for, what we saw when we killed it."""

    point: str           # e.g. "rows>=3"
    reached: bool        # the progress point was reached (False: the stage finished first)
    returncode: int      # -9 when our SIGKILL ended it
    stderr: str


def env() -> dict[str, str]:
    """The environment of a child stage: offline, one thread (2 shared cores), the repo's src."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    e = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
         "MKL_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    e.pop("COVERAGE_PROCESS_START", None)
    return e


def synthmix_cmd(*args: str) -> list[str]:
    """``python -m synthmix ARGS`` with this interpreter."""
    return [sys.executable, "-m", "synthmix", *args]


def kill_at(cmd: Sequence[str], reached: Callable[[], bool], point: str, *, cwd: str | Path | None = None,
            poll_s: float = 0.002, extra_env: dict[str, str] | None = None) -> Kill:
    """Start ``cmd``; as soon as ``reached()`` is true, SIGKILL it. Returns what happened.

    (``reached`` may be ``lambda: False`` when the child kills itself at an exact point.)
    """
    proc = subprocess.Popen(list(cmd), cwd=cwd, env={**env(), **(extra_env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + POLL_GUARD_S
    hit = False
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if reached():
                hit = True
                break
            time.sleep(poll_s)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    return Kill(point, hit, proc.returncode, err[-3000:])


def run_to_end(cmd: Sequence[str], *, cwd: str | Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion; fail the test with its stderr if it does not exit 0."""
    done = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done


def kill_points(seed: int, lo: int, hi: int, n: int) -> list[int]:
    """``n`` increasing progress counts in ``[lo, hi]`` drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    return sorted(rng.sample(range(lo, hi + 1), k=min(n, hi - lo + 1)))


# -- observable progress ---------------------------------------------------------------------

def count_lines(path: Path) -> int:
    """Complete lines of a JSON-lines file (0 when it does not exist yet)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def count_files(root: Path, pattern: str) -> int:
    try:
        return sum(1 for _ in root.rglob(pattern))
    except FileNotFoundError:  # a file renamed while we walked
        return 0


# -- invariants after a kill -----------------------------------------------------------------

def check_generation_dir(out_dir: Path, manifest_name: str = "manifest.jsonl") -> list[dict]:
    """What must hold in a generation dir at *any* moment, even right after a SIGKILL.

    Every manifest row's file exists with its sha256 (no partial file is visible as done), no id
    appears twice, every row was planned, failed rows keep no file, and a temporary file is never
    a row's file. Returns the rows.
    """
    from synthmix.core.hashing import sha256_file
    from synthmix.core.io import read_jsonl

    manifest = out_dir / manifest_name
    rows = read_jsonl(manifest)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate ids in {manifest}"
    plan = out_dir / (Path(manifest_name).stem + ".plan.json")
    if rows:
        planned = set(json.loads(plan.read_text())["ids"])
        assert set(ids) <= planned, "a row that was never planned"
    for r in rows:
        if r.get("status") == "failed":
            assert r["path"] is None
            continue
        f = out_dir / r["path"]
        assert not f.name.endswith(".tmp"), f"row {r['id']} points at a temporary file"
        assert f.is_file(), f"row {r['id']}: {f} is missing"
        assert sha256_file(f) == r["sha256"], f"row {r['id']}: {f} does not match its sha256"
    return rows


def image_bytes(out_dir: Path, manifest_name: str = "manifest.jsonl") -> dict[str, bytes]:
    """{id: bytes of its image} of a generation dir (failed rows: b"")."""
    from synthmix.core.io import read_jsonl

    return {r["id"]: (out_dir / r["path"]).read_bytes() if r.get("path") else b""
            for r in read_jsonl(out_dir / manifest_name)}
