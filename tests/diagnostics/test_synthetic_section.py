"""The report fragment is built from a saved diagnostics.json only."""

from __future__ import annotations

import json

from synthmix.reporting.synthetic_section import relation_html, relation_png, synthetic_section_html


def _diag(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "samples_in_dist.png")
    m = {"n": 10, "precision": 0.8, "recall": 0.5, "density": 0.9, "coverage": 0.4, "fid": 3.25, "kid": 0.01,
         "diversity_ratio": 0.7, "agreement": 0.9, "memorised_train": 0.1, "leak_test": 0.0}
    d = {"feature_space": {"name": "classifier penultimate features (tiny_cnn, 32-d)", "kind": "classifier",
                           "dim": 32, "note": "not comparable to Inception FID <x>"},
         "copy_test": {"cosine_threshold": 0.99, "cosine_threshold_source": "calibrated", "pixel_threshold": 0.02,
                       "pixel_size": 16},
         "real": {"train": 30, "val": 9, "test": 12},
         "groups": {"in_dist": {"overall": m, "per_class": {"apple": {**m, "fid": None}},
                                "grids": {"samples": "samples_in_dist.png", "pairs_train": None, "pairs_test": None}}},
         "reference": {"real_val": {"overall": {**m, "n": 9}, "per_class": {}}},
         "cas": {"cas": 0.75, "per_run": [0.7, 0.8]}, "warnings": []}
    (tmp_path / "diagnostics.json").write_text(json.dumps(d))
    return tmp_path


def test_section_names_the_feature_space_and_inlines_images(tmp_path):
    html = synthetic_section_html(_diag(tmp_path))
    assert "classifier penultimate features (tiny_cnn, 32-d)" in html
    assert "&lt;x&gt;" in html and "<x>" not in html  # escaped
    assert "<td>3.250</td>" in html and "<td>–</td>" in html  # per-class FID missing -> dash
    assert "real_val (reference)" in html and "0.750" in html
    assert html.count("data:image/png;base64,") == 1


def test_relation_marks_few_setups_descriptive():
    diags = {"a": {"fid": 3.0, "recall": 0.2}, "b": {"fid": 2.0, "recall": 0.4}, "c": {"fid": 1.0, "recall": 0.3}}
    effects = {"a": -0.01, "b": 0.02, "c": 0.03}
    html = relation_html(diags, effects, "Δ accuracy")
    assert "descriptive" in html and "Only 3 setup(s)" in html and "<td>-1.000</td>" in html
    assert relation_png(diags, effects)[:4] == b"\x89PNG"
    assert relation_png({"a": {"fid": 1.0}}, {"a": 0.1}) is None  # one point: nothing to draw
