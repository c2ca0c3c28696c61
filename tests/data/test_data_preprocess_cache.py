"""Resize modes, object-centred crops, config hash, and the decode-once cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from synthmix.data import cache as cache_mod
from synthmix.data.preprocess import PreprocessConfig, mask_box, preprocess_image, resize_square
from synthmix.data.scan import scan_dataset
from synthmix.data.tensors import label_tensor, load_tensor, resize_pad


def _wide():
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    return Image.fromarray(a)


def test_resize_modes():
    img = _wide()
    pad = np.asarray(resize_square(img, 20, "pad", fill=(0, 255, 0)))
    assert pad.shape == (20, 20, 3)
    assert (pad[:5] == (0, 255, 0)).all() and (pad[-5:] == (0, 255, 0)).all()  # letterbox bands
    assert (pad[10, :8] == (255, 0, 0)).all() and (pad[10, -8:] == (0, 0, 255)).all()
    st = np.asarray(resize_square(img, 20, "stretch"))
    assert (st[:, :8] == (255, 0, 0)).all() and (st[:, -8:] == (0, 0, 255)).all()
    cc = np.asarray(resize_square(img, 20, "center_crop"))
    assert (cc[:, :8] == (255, 0, 0)).all() and (cc[:, -8:] == (0, 0, 255)).all()
    assert not (pad == st).all()
    assert np.array_equal(np.asarray(resize_pad(img, 20, (0, 255, 0))), pad)


def test_box_crop_uses_union_plus_margin():
    img = _wide()
    cfg = PreprocessConfig(size=10, resize="stretch", box_crop=True, box_margin=0.0)
    out = np.asarray(preprocess_image(img, cfg, box=[22, 0, 38, 20]))  # inside the blue half
    assert (out == (0, 0, 255)).all()
    cfg2 = cfg.model_copy(update={"box_margin": 1.0})  # grown 16 px per side: red comes in
    out2 = np.asarray(preprocess_image(img, cfg2, box=[22, 0, 38, 20]))
    assert (out2[:, 0] == (255, 0, 0)).all()


def test_mask_box():
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:9] = 1
    assert mask_box(m) == [3.0, 2.0, 9.0, 5.0]
    assert mask_box(np.zeros((3, 3))) is None


def test_config_hash_changes_with_any_setting():
    base = PreprocessConfig()
    hashes = {base.hash(), PreprocessConfig(size=32).hash(), PreprocessConfig(resize="stretch").hash(),
              PreprocessConfig(fill=(1, 2, 3)).hash(), PreprocessConfig(box_crop=True).hash()}
    assert len(hashes) == 5 and PreprocessConfig().hash() == base.hash()


def test_cache_second_call_does_not_decode(tiny_folder, tmp_path, monkeypatch):
    rep = scan_dataset(tiny_folder, tmp_path / "m")
    rows = rep.rows
    first = load_tensor(rows, rep.manifest_path, 16, cache_dir=tmp_path / "cache")
    assert first.shape == (33, 3, 16, 16) and first.dtype.is_floating_point is False
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 33

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_mod, "preprocess_row", no_decoding)
    second = load_tensor(rows, rep.manifest_path, 16, cache_dir=tmp_path / "cache")
    assert (second == first).all()
    # another preprocessing config is another cache entry (and so needs decoding)
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_tensor(rows, rep.manifest_path, 16, preprocess=PreprocessConfig(resize="stretch"),
                    cache_dir=tmp_path / "cache", workers=1)


def test_cache_matches_uncached_and_rebuilds_damaged_entry(tiny_folder, tmp_path):
    rep = scan_dataset(tiny_folder, tmp_path / "m")
    rows = rep.rows[:5]
    plain = load_tensor(rows, rep.manifest_path, 12)
    cached = load_tensor(rows, rep.manifest_path, 12, cache_dir=tmp_path / "c")
    assert (plain == cached).all()
    f = next((tmp_path / "c").rglob("*.npy"))
    f.write_bytes(b"garbage")
    again = load_tensor(rows, rep.manifest_path, 12, cache_dir=tmp_path / "c")
    assert (again == plain).all()


def test_label_tensor_unknown_label(tiny_folder):
    rows = scan_dataset(tiny_folder, None).rows
    t = label_tensor(rows, ["apple", "banana", "orange"])
    assert t.tolist().count(0) == 11
    from synthmix.core.errors import DataError

    with pytest.raises(DataError, match="'orange' is not one of"):
        label_tensor(rows, ["apple", "banana"])


def test_box_crop_from_row_boxes_and_mask(tmp_path):
    from synthmix.data.preprocess import preprocess_row

    _wide().save(tmp_path / "img.png")
    m = np.zeros((20, 40), np.uint8)
    m[5:15, 2:12] = 255  # object inside the red half
    Image.fromarray(m).save(tmp_path / "mask.png")
    cfg = PreprocessConfig(size=8, resize="stretch", box_crop=True, box_margin=0.0)
    manifest = tmp_path / "manifest.jsonl"
    red = preprocess_row({"path": "img.png", "mask": "mask.png", "boxes": [[25, 0, 35, 20]]}, manifest, cfg)
    assert (red == (255, 0, 0)).all()  # the mask wins over boxes
    blue = preprocess_row({"path": "img.png", "boxes": [[25, 0, 35, 20]]}, manifest, cfg)
    assert (blue == (0, 0, 255)).all()
    whole = preprocess_row({"path": "img.png", "boxes": None}, manifest, cfg)
    assert (whole[:, 0] == (255, 0, 0)).all() and (whole[:, -1] == (0, 0, 255)).all()
