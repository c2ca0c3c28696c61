"""SIGKILL a generation job at seeded-random points, re-run it, and compare with an uninterrupted run.

Two jobs go through the same protocol (``run_generation`` + ``ImageWriter``):

- a torch-free noise generator (``noise_job.py``; a child starts in well under a second), killed
  at three kinds of point: after the k-th manifest row, after the k-th image file is renamed into
  place (its row may not be written yet), and while a temporary image file exists (mid-write);
- the embedded generator's tiny preset through ``synthmix generate`` (slow: each child imports
  torch).

After every kill: no row without its intact file, no duplicate id, no unplanned row. After the
final run: every planned id exactly once, byte-equal images, and ``synthmix audit`` passes.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import yaml
from helpers import (
    check_generation_dir,
    count_files,
    count_lines,
    image_bytes,
    kill_at,
    kill_points,
    run_to_end,
    synthmix_cmd,
)

from synthmix.audit import audit_run, errors

HERE = Path(__file__).resolve().parent
N, BATCH = 24, 3


def noise_cmd(out: Path) -> list[str]:
    return [sys.executable, str(HERE / "noise_job.py"), str(out), str(N), str(BATCH)]


def _planned_ids() -> set[str]:
    sys.path.insert(0, str(HERE))
    from noise_job import planned_rows

    return {r["id"] for r in planned_rows(N)}


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_generation_survives_sigkill_anywhere(tmp_path, seed):
    ref = tmp_path / "ref"
    run_to_end(noise_cmd(ref))
    expected = image_bytes(ref)
    assert set(expected) == _planned_ids()

    out = tmp_path / "killed"
    manifest, images = out / "manifest.jsonl", out / "images"
    rng = random.Random(seed)
    points = []
    # every kind of point per seed, in a seeded order; the first is always reachable (rows)
    kinds = ["rows", *rng.sample(["rows", "images", "tmp"], 3)]
    for kind, k in zip(kinds, kill_points(seed, 1, N - 2, 4), strict=True):
        if kind == "rows":
            points.append((f"rows>={k}", lambda k=k: count_lines(manifest) >= k))
        elif kind == "images":
            points.append((f"images>={k}", lambda k=k: count_files(images, "*.png") >= k))
        else:  # the first moment after row k at which a temporary file exists: mid-write
            points.append((f"tmp after rows>={k}",
                           lambda k=k: count_lines(manifest) >= k and count_files(images, "*.tmp") > 0))
    kills = []
    for name, reached in points:
        kill = kill_at(noise_cmd(out), reached, name)
        assert kill.returncode in (-9, 0), kill.stderr
        kills.append(kill)
        check_generation_dir(out)  # consistent right after the kill
    assert any(k.reached and k.returncode == -9 for k in kills), kills

    run_to_end(noise_cmd(out))
    rows = check_generation_dir(out)
    assert sorted(r["id"] for r in rows) == sorted(expected)  # every id once, none missing
    assert image_bytes(out) == expected                       # byte-equal images (failed rows too)
    assert sum(r["status"] == "failed" for r in rows) == N // 7
    assert errors(audit_run(out)[0]) == []
    assert not list(images.rglob("*.tmp"))  # image leftovers of killed writes are cleaned on resume


def _reference(tmp_path) -> dict[str, bytes]:
    ref = tmp_path / "ref"
    run_to_end(noise_cmd(ref))
    return image_bytes(ref)


def test_sigkill_between_image_and_row_leaves_an_orphan_that_resume_replaces(tmp_path):
    """The image is renamed into place before its row is appended. A SIGKILL exactly in between
    (the child kills itself there) leaves a file without a row: not counted as done, named by the
    audit; the re-run writes it again (same bytes) and the audit passes."""
    out = tmp_path / "g"
    kill = kill_at(noise_cmd(out), lambda: False, "before row 5", extra_env={"KILL_BEFORE_ROW": "5"})
    assert kill.returncode == -9, kill.stderr
    rows = check_generation_dir(out)
    assert len(rows) == 4 and len(list((out / "images").rglob("*.png"))) == 5
    problems = [str(p) for p in errors(audit_run(out)[0])]
    assert sum("has no manifest row" in p for p in problems) == 1
    run_to_end(noise_cmd(out))
    assert errors(audit_run(out)[0]) == [] and image_bytes(out) == _reference(tmp_path)


def test_sigkill_mid_image_write_leaves_only_a_temporary_file(tmp_path):
    """A SIGKILL while the 4th image's temporary file is half written: the half file is never a
    row or a ``.png``; the re-run removes it and finishes with byte-equal images."""
    out = tmp_path / "g"
    kill = kill_at(noise_cmd(out), lambda: False, "mid image 4", extra_env={"KILL_MID_IMAGE": "4"})
    assert kill.returncode == -9, kill.stderr
    assert len(check_generation_dir(out)) == 3
    tmps = list((out / "images").rglob("*.tmp"))
    assert len(tmps) == 1 and tmps[0].name.startswith(".")
    assert [p.warning for p in audit_run(out)[0] if str(tmps[0]) == p.path] == [True]
    run_to_end(noise_cmd(out))
    assert not list(out.rglob("*.tmp")) and audit_run(out)[0] == []
    assert image_bytes(out) == _reference(tmp_path)


@pytest.fixture(scope="module")
def embedded_job(tmp_path_factory):
    """(write_config(out_dir) -> path) for a tiny embedded-generator job on the conftest folder."""
    sys.path.insert(0, str(HERE.parent / "generation"))
    from embedded_helpers import folder_manifest, tiny_train_config

    from conftest import make_imagefolder
    from synthmix.generation.embedded.train import train_generator

    root = tmp_path_factory.mktemp("emb")
    manifest = folder_manifest(make_imagefolder(root / "ds", size=(24, 20)), root / "manifest.jsonl")
    ckpt = train_generator(tiny_train_config(manifest, root / "model", steps=2), show_progress=False)

    def write_config(out_dir: Path) -> Path:
        cfg = {"manifest": str(manifest), "out_dir": str(out_dir), "batch_size": 2,
               "generator": {"type": "embedded", "checkpoint": str(ckpt), "per_class": 3, "steps": 2,
                             "img2img_per_parent": 1, "max_parents_per_class": 1,
                             "in_dist_strengths": [0.5], "near_ood_strengths": [], "device": "cpu"}}
        path = out_dir.parent / f"{out_dir.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write_config


@pytest.mark.slow
def test_embedded_generation_survives_sigkill(tmp_path, embedded_job):
    ref = tmp_path / "ref"
    run_to_end(synthmix_cmd("generate", str(embedded_job(ref))))
    expected = image_bytes(ref)
    n = len(expected)
    assert n == 12 and all(expected.values())

    out = tmp_path / "killed"
    cfg = embedded_job(out)
    manifest = out / "manifest.jsonl"
    for k in kill_points(3, 1, n - 2, 2):
        kill = kill_at(synthmix_cmd("generate", str(cfg)), lambda k=k: count_lines(manifest) >= k, f"rows>={k}")
        assert kill.returncode in (-9, 0), kill.stderr
        rows = check_generation_dir(out)
        assert len(rows) >= k or not kill.reached
    run_to_end(synthmix_cmd("generate", str(cfg)))
    rows = check_generation_dir(out)
    assert sorted(r["id"] for r in rows) == sorted(expected)
    assert image_bytes(out) == expected
    assert errors(audit_run(out)[0]) == []
