"""Scanning an ImageFolder: layouts, splits, every bad-input case and its exact outcome."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import make_image, make_imagefolder
from synthmix.core.errors import DataError, LeakageError
from synthmix.data.manifest import COLUMNS, read_manifest
from synthmix.data.scan import scan_dataset


def _rows_by_split(rep):
    out = {}
    for r in rep.rows:
        out[r["split"]] = out.get(r["split"], 0) + 1
    return out


def test_split_layout_manifest_and_val_carve(tiny_folder, tmp_path):
    rep = scan_dataset(tiny_folder, tmp_path / "out", val_fraction=0.25, seed=3)
    assert rep.layout == "split" and rep.classes == ["apple", "banana", "orange"]
    assert _rows_by_split(rep) == {"train": 18, "val": 6, "test": 9}  # 8 per class -> 2 val each
    rows = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert len(rows) == 33 and set(COLUMNS) <= set(rows[0])
    r = rows[0]
    assert r["source"] == "real" and r["mode"] == "RGB" and (r["width"], r["height"]) == (40, 32)
    assert r["id"] == r["sha256"][:16] and r["path"].startswith("/")
    report = json.loads((tmp_path / "out" / "scan_report.json").read_text())
    assert report["counts"]["apple"] == {"train": 6, "val": 2, "test": 3}
    # same seed -> same split; another seed -> (here) another one
    again = scan_dataset(tiny_folder, None, val_fraction=0.25, seed=3)
    assert [r["split"] for r in again.rows] == [r["split"] for r in rep.rows]
    other = scan_dataset(tiny_folder, None, val_fraction=0.25, seed=4)
    assert {r["id"] for r in other.rows if r["split"] == "val"} != {
        r["id"] for r in rep.rows if r["split"] == "val"}


def test_flat_layout_carves_test_and_val(tmp_path):
    make_imagefolder(tmp_path / "ds", per_class={"apple": 10, "banana": 10}, splits=("train",))
    flat = tmp_path / "flat"
    shutil.move(str(tmp_path / "ds" / "train"), flat)
    rep = scan_dataset(flat, None, val_fraction=0.25, test_fraction=0.2, seed=0)
    assert rep.layout == "flat"
    assert rep.counts() == {"apple": {"test": 2, "val": 2, "train": 6}, "banana": {"test": 2, "val": 2, "train": 6}}


def test_hidden_folders_and_stray_files_ignored_and_reported(tiny_folder):
    ck = tiny_folder / "train" / ".ipynb_checkpoints"
    ck.mkdir()
    make_image((1, 2, 3), seed=99).save(ck / "apple-checkpoint.jpg")
    (tiny_folder / "train" / "apple" / ".DS_Store").write_bytes(b"\0\1")
    (tiny_folder / "train" / "apple" / "notes.txt").write_text("hi")
    (tiny_folder / "README.md").write_text("readme")
    rep = scan_dataset(tiny_folder, None)
    assert ".ipynb_checkpoints" not in rep.classes and len(rep.classes) == 3
    ignored = {i["path"].split("/")[-1]: i["reason"] for i in rep.ignored}
    assert ignored[".ipynb_checkpoints"] == "hidden folder (never a class)"
    assert ignored[".DS_Store"].startswith("not an image") and ignored["notes.txt"].startswith("not an image")
    assert "README.md" in ignored
    assert len(rep.rows) == 33


def test_empty_class_folder_is_a_problem_not_a_class(tiny_folder):
    (tiny_folder / "train" / "kiwi").mkdir()
    rep = scan_dataset(tiny_folder, None)
    assert "kiwi" not in rep.classes
    assert [p["kind"] for p in rep.problems] == ["empty_class"]
    assert rep.problems[0]["path"].endswith("train/kiwi")


def _add_bad_files(root):
    (root / "train" / "apple" / "zero.jpg").write_bytes(b"")
    (root / "train" / "banana" / "fake.png").write_text("not pixels")


def test_on_error_skip_lists_skipped_files(tiny_folder, tmp_path):
    _add_bad_files(tiny_folder)
    rep = scan_dataset(tiny_folder, tmp_path / "o", on_error="skip")
    skipped = {s["path"].split("/")[-1]: s["reason"] for s in rep.skipped}
    assert skipped == {"zero.jpg": "empty file (0 bytes)",
                       "fake.png": "not an image (Pillow cannot identify the format)"}
    assert len(rep.rows) == 33
    report = json.loads((tmp_path / "o" / "scan_report.json").read_text())
    assert len(report["skipped"]) == 2


def test_on_error_fail_stops_at_first_bad_file(tiny_folder, tmp_path):
    _add_bad_files(tiny_folder)
    with pytest.raises(DataError, match="empty file") as e:  # apple sorts before banana
        scan_dataset(tiny_folder, tmp_path / "o", on_error="fail")
    assert e.value.path.endswith("train/apple/zero.jpg")
    assert not (tmp_path / "o" / "manifest.jsonl").exists()


def test_same_image_in_train_and_test_is_leakage(tiny_folder, tmp_path):
    src = tiny_folder / "train" / "apple" / "apple_000.jpg"
    dst = tiny_folder / "test" / "apple" / "copy.jpg"
    shutil.copy(src, dst)
    with pytest.raises(LeakageError) as e:
        scan_dataset(tiny_folder, None, on_error="fail")
    assert str(dst) in str(e.value) and str(src) in str(e.value)
    rep = scan_dataset(tiny_folder, tmp_path / "o", on_error="skip")
    assert [p["kind"] for p in rep.problems] == ["leakage"]
    assert str(src) in rep.problems[0]["message"] and rep.problems[0]["path"] == str(dst)
    assert str(dst) not in {r["path"] for r in rep.rows}     # the test copy is dropped
    assert str(src) in {r["path"] for r in rep.rows}
    assert rep.skipped[0]["path"] == str(dst) and rep.skipped[0]["reason"].startswith("leakage")


def test_duplicate_within_a_split_is_dropped(tiny_folder):
    shutil.copy(tiny_folder / "train" / "apple" / "apple_000.jpg", tiny_folder / "train" / "apple" / "dup.jpg")
    rep = scan_dataset(tiny_folder, None)
    assert [p["kind"] for p in rep.problems] == ["duplicate"]
    assert len({r["id"] for r in rep.rows}) == len(rep.rows) == 33


def test_voc_boxes_read_from_annotations_folder(tiny_folder):
    ann = tiny_folder / "annotations" / "train"
    ann.mkdir(parents=True)
    (ann / "apple_000.xml").write_text(
        "<annotation><object><name>apple</name><bndbox><xmin>2</xmin><ymin>3</ymin>"
        "<xmax>30</xmax><ymax>99</ymax></bndbox></object></annotation>")
    (tiny_folder / "train" / "banana" / "banana_000.xml").write_text("<annotation><object>broken")
    rep = scan_dataset(tiny_folder, None)
    by_name = {r["path"].split("/")[-1]: r for r in rep.rows if "/train/" in r["path"]}
    assert by_name["apple_000.jpg"]["boxes"] == [[2.0, 3.0, 30.0, 32.0]]  # clipped to height 32
    assert by_name["apple_000.jpg"]["box_labels"] == ["apple"]
    assert by_name["apple_001.jpg"]["boxes"] is None
    assert [p["kind"] for p in rep.problems] == ["annotation"]
    assert "annotations" not in rep.classes
    assert not any(i["path"].endswith(".xml") for i in rep.ignored)


def test_rgba_and_palette_files_are_fixed_and_noted(tiny_folder):
    im = make_image((200, 30, 30), seed=123).convert("RGBA")
    im.save(tiny_folder / "train" / "apple" / "rgba.jpg", format="PNG")  # PNG data, .jpg name
    make_image((200, 30, 30), seed=124).convert("P").save(tiny_folder / "train" / "apple" / "pal.png")
    rep = scan_dataset(tiny_folder, None)
    modes = rep.modes()
    assert modes == {"P": 1, "RGB": 33, "RGBA": 1}
    fixes = {(f["path"].split("/")[-1], f["fix"]) for f in rep.fixes}
    assert ("rgba.jpg", "RGBA with transparency composited on the background") in fixes
    assert ("rgba.jpg", "PNG data behind a .jpg name, read by content") in fixes
    assert ("pal.png", "P converted to RGB") in fixes


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        scan_dataset(tmp_path / "missing", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        scan_dataset(tmp_path / "empty", None)


def test_carve_edge_cases_and_classification_rows():
    from synthmix.data.splits import carve, classification_rows

    rows = [{"id": f"{c}{i}", "label": c, "split": "train"} for c, n in (("a", 1), ("b", 2), ("mixed", 10))
            for i in range(n)]
    out = carve(rows, 0.15, seed=0)
    got = {c: sum(1 for r in out if r["label"] == c and r["split"] == "val") for c in ("a", "b", "mixed")}
    assert got == {"a": 0, "b": 1, "mixed": 2}  # never the last image; at least 1 from 2+
    assert all(r["split"] == "train" for r in rows)  # input rows are not modified
    assert [r["label"] for r in classification_rows(out)] == ["a", "b", "b"]
    assert len(classification_rows(out, exclude=(), split="val")) == 3
    with pytest.raises(ValueError, match="fraction"):
        carve(rows, 1.0, seed=0)


def test_flat_layout_hidden_folder_at_root(tmp_path):
    make_imagefolder(tmp_path / "ds", per_class={"apple": 3}, splits=("train",))
    flat = tmp_path / "ds" / "train"
    (flat / ".ipynb_checkpoints").mkdir()
    make_image((9, 9, 9), seed=7).save(flat / ".ipynb_checkpoints" / "x.jpg")
    rep = scan_dataset(flat, None, test_fraction=0.0, val_fraction=0.0)
    assert rep.classes == ["apple"] and len(rep.rows) == 3
    assert rep.ignored == [{"path": str(flat / ".ipynb_checkpoints"), "reason": "hidden folder (never a class)"}]
