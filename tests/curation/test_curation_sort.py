"""Curation: scorers, calibration, and an end-to-end sort where corrupted images must not
land in in_dist (blank / noise / wrong class -> reject or near_ood)."""

from __future__ import annotations

import numpy as np
import pytest

from synthmix.curation.scorers import class_centroids, degenerate_reason, image_stats, model_scores
from synthmix.curation.sort import SortConfig, Thresholds, assign_role, calibrate


def test_image_stats_flags_blank_black_white_nan():
    rng = np.random.default_rng(0)
    x = np.stack([rng.random((3, 8, 8)), np.zeros((3, 8, 8)), np.ones((3, 8, 8)),
                  np.full((3, 8, 8), 0.5), np.where(rng.random((3, 8, 8)) > 0.5, np.nan, 0.3)])
    st = image_stats(x)
    reasons = [degenerate_reason(st, i) for i in range(5)]
    assert reasons[0] is None
    assert reasons[1].startswith("black") and reasons[2].startswith("white")
    assert reasons[3].startswith("blank") and reasons[4].startswith("non-finite")
    u8 = (np.clip(x[:1], 0, 1) * 255).astype(np.uint8)
    assert image_stats(u8)["std"][0] == pytest.approx(st["std"][0], abs=0.01)


def test_model_scores_hand_computed():
    cent = class_centroids(np.array([[2.0, 0], [0, 3.0], [1.0, 0]]), np.array([0, 1, 0]), 2)
    assert cent == pytest.approx(np.array([[1.0, 0], [0, 1.0]]))
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    s = model_scores(np.array([[1.0, 1.0], [0, 5.0]]), logits, np.array([0, 1]), cent,
                     np.array([[1.0, 0], [np.nan, np.nan]]))
    assert s["confidence"] == pytest.approx([np.exp(2) / (np.exp(2) + 1), 0.5])
    assert s["centroid_dist"] == pytest.approx([1 - np.sqrt(0.5), 0.0])
    assert s["parent_dist"][0] == pytest.approx(1 - np.sqrt(0.5)) and np.isnan(s["parent_dist"][1])
    with pytest.raises(ValueError, match=r"\[1\]"):
        class_centroids(np.ones((2, 2)), np.array([0, 0]), 2)


def test_calibrate_and_rules():
    cfg = SortConfig(conf_percentile=10, dist_percentile=90, reject_factor=2.0)
    th = calibrate(np.linspace(0.5, 1.0, 11), np.linspace(0.0, 0.2, 11), cfg)
    assert th.min_confidence == pytest.approx(0.55) and th.max_centroid_dist == pytest.approx(0.18)
    assert th.reject_centroid_dist == pytest.approx(0.4)
    assert assign_role(0.9, 0.1, 0, 0, None, th, cfg)[0] == "in_dist"
    assert assign_role(0.5, 0.1, 0, 0, None, th, cfg)[0] == "near_ood"
    assert assign_role(0.9, 0.3, 0, 0, None, th, cfg)[0] == "near_ood"
    assert assign_role(0.9, 0.1, 1, 0, None, th, cfg)[0] == "near_ood"
    assert assign_role(0.9, 0.5, 0, 0, None, th, cfg)[0] == "reject"
    assert assign_role(0.99, 0.0, 0, 0, "blank", th, cfg) == ("reject", "blank")
    loose = SortConfig(require_agreement=False)
    assert assign_role(0.9, 0.1, 1, 0, None, Thresholds(0.5, 0.2, 0.4, 3), loose)[0] == "in_dist"
    # made as near-OOD (interpolated / high strength): never promoted to in_dist, may be rejected
    assert assign_role(0.9, 0.1, 0, 0, None, th, cfg, planned="near_ood")[0] == "near_ood"
    assert assign_role(0.9, 0.5, 0, 0, None, th, cfg, planned="near_ood")[0] == "reject"
    assert assign_role(0.9, 0.1, 0, 0, None, th, cfg, planned="in_dist")[0] == "in_dist"


def _run_and_synthetic(tmp_path):
    """A tiny CE run on coloured discs, and a synthetic manifest with good and corrupted images."""
    from PIL import Image

    from conftest import COLOURS, make_image, make_imagefolder
    from synthmix.data.manifest import new_row, read_manifest, write_manifest
    from synthmix.data.scan import scan_dataset
    from synthmix.training.config import TrainConfig
    from synthmix.training.train import TrainRunConfig, train_run

    root = make_imagefolder(tmp_path / "ds", per_class={c: 12 for c in COLOURS})
    scan_dataset(root, tmp_path / "data", val_fraction=0.25, seed=0)
    manifest = tmp_path / "data" / "manifest.jsonl"
    cfg = TrainRunConfig(manifest=manifest, eval_splits=[], gradcam=False,
                         train=TrainConfig(model="tiny_cnn", input_size=32, epochs=12, batch_size=8, lr=0.01,
                                           weight_decay=0.0, num_threads=1))
    train_run(cfg, tmp_path / "run", progress=False)
    rows = read_manifest(manifest)
    parents = {c: next(r for r in rows if r["label"] == c and r["split"] == "train") for c in COLOURS}
    syn_dir = tmp_path / "syn"
    syn_dir.mkdir()
    rng = np.random.default_rng(0)
    kinds = {}

    def add(name, img, label):
        p = syn_dir / f"{name}.png"
        img.save(p)
        kinds[name] = new_row(id=name, path=str(p), label=label, split="train", source="standin",
                              role="unsorted", parent_id=parents[label]["id"], parent_label=label)

    for c, col in COLOURS.items():
        for k in range(3):
            add(f"good_{c}_{k}", make_image(col, seed=1000 + k), c)
    add("blank", Image.new("RGB", (40, 32), (128, 128, 128)), "apple")
    add("black", Image.new("RGB", (40, 32), (0, 0, 0)), "banana")
    add("noise", Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)), "orange")
    add("wrong_class", make_image(COLOURS["banana"], seed=77), "apple")  # a banana called apple
    mixed = syn_dir / "manifest.jsonl"
    write_manifest(mixed, rows + list(kinds.values()))
    return mixed, tmp_path / "run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cur")
    return (*_run_and_synthetic(tmp), tmp)


def test_curation_sorts_corrupted_images_out(trained):
    from synthmix.curation.run import curate_manifest
    from synthmix.data.manifest import read_manifest

    manifest, run, tmp_path = trained
    before = {p.name for p in (tmp_path / "syn").iterdir()}
    s = curate_manifest(manifest, run, tmp_path / "cur")
    out = {r["id"]: r for r in read_manifest(tmp_path / "cur" / "manifest.jsonl")}
    for bad in ("blank", "black"):
        assert out[bad]["role"] == "reject", (bad, out[bad]["curation_reason"])
    for bad in ("noise", "wrong_class"):
        assert out[bad]["role"] in ("reject", "near_ood"), (bad, out[bad]["curation_reason"])
    good = [r for k, r in out.items() if k.startswith("good_")]
    assert sum(r["role"] == "in_dist" for r in good) >= 6, [(r["id"], r["curation_reason"]) for r in good]
    assert out["good_apple_0"]["scores"]["confidence"] is not None
    assert out["good_apple_0"]["scores"]["parent_dist"] is not None
    # real rows untouched; rejected kept on disk and listed
    assert all(r["role"] is None for r in out.values() if r["source"] == "real")
    assert {p.name for p in (tmp_path / "syn").iterdir()} == before
    listed = (tmp_path / "cur" / "rejected.txt").read_text()
    assert "blank.png" in listed and "black.png" in listed
    assert s["reject_reasons"] and sum(s["reject_reasons"].values()) == s["counts"]["reject"]
    assert (tmp_path / "cur" / "grid_reject.png").read_bytes()[:4] == b"\x89PNG"
    assert s["counts"]["reject"] >= 3


def test_curate_cli_and_missing_val(trained, tmp_path):
    from typer.testing import CliRunner

    from synthmix.cli.app import _register, app
    from synthmix.data.manifest import read_manifest, write_manifest

    manifest, run, _ = trained
    _register()
    res = CliRunner().invoke(app, ["curate", str(manifest), "--model", str(run), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "reject" in res.output and (tmp_path / "c" / "manifest.jsonl").exists()
    no_val = [r for r in read_manifest(manifest) if r["split"] != "val"]
    write_manifest(tmp_path / "noval.jsonl", no_val)
    from synthmix.core.errors import DataError
    from synthmix.curation.run import curate_manifest

    with pytest.raises(DataError, match="real validation"):
        curate_manifest(tmp_path / "noval.jsonl", run, tmp_path / "c2")
    # a generator's manifest without real rows: real train/val come from the run's own manifest
    syn_only = [r for r in read_manifest(manifest) if r["source"] != "real"]
    write_manifest(tmp_path / "syn_only.jsonl", syn_only)
    s = curate_manifest(tmp_path / "syn_only.jsonl", run, tmp_path / "c3")
    out = {r["id"]: r for r in read_manifest(tmp_path / "c3" / "manifest.jsonl")}
    assert len(out) == len(syn_only) and out["blank"]["role"] == "reject" and s["thresholds"]["n_val"] > 0


def test_unreadable_generated_image_is_an_error_not_a_reject(trained, tmp_path):
    """A generated file that cannot be read is the generating stage's error: curation stops and
    names the file instead of reporting it as a 'reject' (the relative-path bug of the demo)."""
    from synthmix.core.errors import DataError
    from synthmix.curation.run import curate_manifest
    from synthmix.data.manifest import new_row, read_manifest, write_manifest

    manifest, run, _ = trained
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = read_manifest(manifest) + [new_row(id="broken", path=str(tmp_path / "broken.png"), label="apple",
                                              split="train", source="standin", role="unsorted")]
    write_manifest(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError, match=r"broken\.png.*1 of 14 synthetic images .* cannot be read"):
        curate_manifest(tmp_path / "m.jsonl", run, tmp_path / "out")
    missing = read_manifest(manifest) + [new_row(id="gone", path="images/gone.png", label="apple",
                                                 split="train", source="standin", role="unsorted")]
    write_manifest(tmp_path / "m2.jsonl", missing)
    with pytest.raises(DataError, match="gone.png"):
        curate_manifest(tmp_path / "m2.jsonl", run, tmp_path / "out2")


def test_too_many_rejects_fail_with_counts_by_reason(trained, tmp_path):
    from synthmix.core.errors import CurationError
    from synthmix.curation.run import CurationConfig, curate_manifest
    from synthmix.data.manifest import read_manifest, write_manifest

    manifest, run, _ = trained
    rows = [r for r in read_manifest(manifest) if r["source"] == "real" or r["id"] in ("blank", "black")]
    write_manifest(tmp_path / "m.jsonl", rows)
    with pytest.raises(CurationError, match=r"rejected 2 of 2 synthetic images .*reasons: .*1 x black"):
        curate_manifest(tmp_path / "m.jsonl", run, tmp_path / "out")
    s = curate_manifest(tmp_path / "m.jsonl", run, tmp_path / "out3", CurationConfig(max_reject_fraction=1.0))
    assert s["counts"] == {"reject": 2} and "100% of the synthetic images were rejected" in s["warnings"][0]
    only_real = [r for r in rows if r["source"] == "real"]
    write_manifest(tmp_path / "real.jsonl", only_real)
    with pytest.raises(CurationError, match="no synthetic rows"):
        curate_manifest(tmp_path / "real.jsonl", run, tmp_path / "out4")
