"""`synthmix data scan|preview|cache` end to end, and the bundled fruits copy."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from PIL import Image
from typer.testing import CliRunner

import synthmix.cli.data  # noqa: F401  (adds the data commands to app)
from synthmix.cli.app import app
from synthmix.data.bundled import fruits_path
from synthmix.data.scan import scan_dataset
from synthmix.data.splits import classification_rows

runner = CliRunner()


def test_cli_scan_writes_manifest_and_prints_table(tiny_folder, tmp_path):
    out = tmp_path / "scan"
    res = runner.invoke(app, ["data", "scan", str(tiny_folder), "--out", str(out), "--val-fraction", "0.25"])
    assert res.exit_code == 0, res.output
    assert "images per class and split" in res.output and "banana" in res.output
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 33 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert json.loads((out / "scan_report.json").read_text())["n_images"] == 33


def test_cli_scan_fail_mode_names_the_file(tiny_folder, tmp_path):
    (tiny_folder / "train" / "apple" / "broken.jpg").write_bytes(b"")
    res = runner.invoke(app, ["data", "scan", str(tiny_folder), "--out", str(tmp_path / "o"),
                              "--on-error", "fail"])
    assert res.exit_code != 0
    assert "broken.jpg" in str(res.exception) and "empty file" in str(res.exception)


def test_cli_preview_and_cache(tiny_folder, tmp_path):
    out = tmp_path / "scan"
    assert runner.invoke(app, ["data", "scan", str(tiny_folder), "--out", str(out)]).exit_code == 0
    res = runner.invoke(app, ["data", "preview", str(out), "--out", str(tmp_path / "g.png"), "--per-class", "2",
                              "--size", "24"])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG" and im.width > 3 * 2 * 24 and im.height > 3 * 24
    res = runner.invoke(app, ["data", "cache", str(out), "--cache-dir", str(tmp_path / "c"), "--size", "16"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 33


def test_bundled_fruits_copy():
    root = fruits_path()
    assert "mbkinaci" in (root / "README.md").read_text()
    rep = scan_dataset(root, None, val_fraction=0.0, workers=2)
    assert rep.classes == ["apple", "banana", "mixed", "orange"]
    assert rep.counts()["mixed"] == {"train": 20, "test": 5}
    assert sum(1 for r in rep.rows if r["split"] == "train") == 240
    assert sum(1 for r in rep.rows if r["split"] == "test") == 60
    assert all(max(r["width"], r["height"]) <= 128 and r["mode"] == "RGB" for r in rep.rows)
    assert all(r["boxes"] for r in rep.rows) and not rep.skipped and not rep.problems
    for r in rep.rows:
        for b in r["boxes"]:
            assert 0 <= b[0] < b[2] <= r["width"] and 0 <= b[1] < b[3] <= r["height"]
    xml = ET.parse(root / "annotations" / "train" / "mixed_1.xml").getroot()
    assert len(xml.findall("object")) >= 2
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 4_000_000
    assert len(classification_rows(rep.rows)) == 275


def test_cli_scan_bundled(tmp_path):
    res = runner.invoke(app, ["data", "scan", "--bundled", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "b" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 300 and sum(r["split"] == "test" for r in rows) == 60
    res = runner.invoke(app, ["data", "scan"])
    assert res.exit_code != 0 and "--bundled" in str(res.exception)
