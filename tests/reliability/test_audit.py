"""`synthmix audit` passes on a clean generation dir and names each injected problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synthmix.audit import audit_run
from synthmix.generation.protocol import planned_id, run_generation
from synthmix.generation.writer import ImageWriter


class NoiseGenerator:
    """A real (if trivial) generator: seeded noise images, one generator per row."""

    name = "noise"

    def render(self, rows):
        return [np.random.default_rng(r["seed"]).random((8, 8, 3)) for r in rows]


def _make_run(tmp_path, n=6):
    run = tmp_path / "run"
    planned = [dict(id=planned_id("cfg", i), label=["a", "b"][i % 2], split="train", source="noise",
                    seed=i, role="unsorted") for i in range(n)]
    counts = run_generation(NoiseGenerator(), planned, ImageWriter(run / "gen" / "manifest.jsonl"), batch_size=4)
    assert counts == {"planned": n, "skipped": 0, "ok": n, "failed": 0}
    return run, run / "gen" / "manifest.jsonl"


def _rows(manifest):
    return [json.loads(x) for x in manifest.read_text().splitlines()]


def test_clean_run_passes(tmp_path):
    run, _ = _make_run(tmp_path)
    problems, counts = audit_run(run)
    assert problems == []
    assert counts["rows"] == 6 and counts["files_checked"] == 6 and counts["planned"] == 6


def test_deleted_image_is_named(tmp_path):
    run, manifest = _make_run(tmp_path)
    victim = manifest.parent / _rows(manifest)[2]["path"]
    victim.unlink()
    problems, _ = audit_run(run)
    assert len(problems) == 1 and str(victim.resolve()) in str(problems[0]) and "missing" in str(problems[0])


def test_duplicated_row_is_named(tmp_path):
    run, manifest = _make_run(tmp_path)
    rows = _rows(manifest)
    with open(manifest, "a") as fh:
        fh.write(json.dumps(rows[0]) + "\n")
    problems, _ = audit_run(run)
    assert [str(p) for p in problems] == [f"{manifest}: id {rows[0]['id']} appears 2 times"]


def test_truncated_file_is_named(tmp_path):
    run, manifest = _make_run(tmp_path)
    victim = manifest.parent / _rows(manifest)[1]["path"]
    victim.write_bytes(victim.read_bytes()[:20])
    problems, _ = audit_run(run)
    assert len(problems) == 1 and "sha256" in problems[0].problem and problems[0].path == str(victim.resolve())


def test_orphan_file_and_missing_plan_rows(tmp_path):
    run, manifest = _make_run(tmp_path)
    rows = _rows(manifest)
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))  # last row lost
    problems = [str(p) for p in audit_run(run)[0]]
    assert any("has no manifest row" in p for p in problems)
    assert any("1 planned images have no row" in p for p in problems)


def test_resume_skips_done_and_finishes(tmp_path):
    run, manifest = _make_run(tmp_path, n=4)
    planned = [dict(id=planned_id("cfg", i), label=["a", "b"][i % 2], split="train", source="noise",
                    seed=i, role="unsorted") for i in range(7)]
    counts = run_generation(NoiseGenerator(), planned, ImageWriter(manifest), batch_size=3)
    assert counts == {"planned": 7, "skipped": 4, "ok": 3, "failed": 0}
    assert sorted(r["id"] for r in _rows(manifest)) == sorted(p["id"] for p in planned)
    assert audit_run(run)[0] == []


def test_cli_exit_codes(tmp_path):
    from synthmix.cli.app import _register, app

    _register()
    run, manifest = _make_run(tmp_path)
    ok = CliRunner().invoke(app, ["audit", str(run)])
    assert ok.exit_code == 0, ok.output
    (manifest.parent / _rows(manifest)[0]["path"]).unlink()
    bad = CliRunner().invoke(app, ["audit", str(run)])
    assert bad.exit_code == 1


@pytest.mark.parametrize("kind", ["nan", "black"])
def test_bad_images_marked_failed_not_kept(tmp_path, kind):
    class Bad:
        name = "bad"

        def render(self, rows):
            img = np.full((8, 8, 3), np.nan) if kind == "nan" else np.zeros((8, 8, 3))
            return [img for _ in rows]

    writer = ImageWriter(tmp_path / "g" / "manifest.jsonl")
    counts = run_generation(Bad(), [dict(id="ab12", label="a", split="train", source="bad", seed=0)], writer)
    assert counts["failed"] == 1
    row = _rows(tmp_path / "g" / "manifest.jsonl")[0]
    assert row["status"] == "failed" and row["path"] is None
    assert not list((tmp_path / "g" / "images").rglob("*.png"))
    assert audit_run(tmp_path)[0] == []
