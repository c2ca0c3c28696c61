"""The thesis runner end to end on tiny coloured discs: three setups + CE, OOD sets, summary."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    # two torch threads on a shared 2-core machine are many times slower than one
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dataset(tmp):
    from PIL import Image

    from conftest import COLOURS, make_image, make_imagefolder
    from synthmix.data.manifest import new_row, read_manifest, write_manifest
    from synthmix.data.scan import scan_dataset

    per = {c: 8 for c in COLOURS} | {"mixed": 2}
    root = make_imagefolder(tmp / "ds", per_class=per)
    scan_dataset(root, tmp / "data", val_fraction=0.25, seed=0)
    rows = read_manifest(tmp / "data" / "manifest.jsonl")
    syn, d = [], tmp / "syn"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i, r in enumerate(r for r in rows if r["split"] == "train" and r["label"] in COLOURS):
        for role in ("in_dist", "near_ood"):
            if role == "in_dist":
                img = make_image(COLOURS[r["label"]], seed=500 + i)
            else:
                img = Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8))
            p = d / f"{role}_{i}.png"
            img.save(p)
            syn.append(new_row(id=f"{role}-{i}", path=p.name, label=r["label"], split="train", source="standin",
                               role=role, parent_id=r["id"], parent_label=r["label"]))
    write_manifest(d / "manifest.jsonl", syn)
    return tmp / "data" / "manifest.jsonl", d / "manifest.jsonl"


def test_config_file_in_repo_loads():
    from pathlib import Path

    from synthmix.core.config import load_config
    from synthmix.training.contrastive_setups import ThesisConfig

    cfg = load_config(ThesisConfig, Path(__file__).parents[2] / "configs" / "thesis-contrastive.yaml")
    assert cfg.setups[:3] == ["real_only", "in_dist", "in_dist_near_ood"] and len(cfg.seeds) >= 3


def _cfg(real, syn, far, setups, plots):
    from synthmix.training.config import TrainConfig
    from synthmix.training.contrastive import ContrastiveConfig
    from synthmix.training.contrastive_setups import ThesisConfig

    return ThesisConfig(manifest=real, synthetic_manifests=[syn], far_ood_manifest=far / "manifest.jsonl",
                        setups=setups, seeds=[0, 1], knn_k=3, holdout_fraction=0.5, num_threads=1, plots=plots,
                        contrastive=ContrastiveConfig(model="tiny_cnn", input_size=16, epochs=1, m_per_class=3,
                                                      batches_per_epoch=2, probe_epochs=1, proj_dim=8,
                                                      proj_hidden=8),
                        ce_baseline=TrainConfig(epochs=1, batch_size=8, num_threads=1))


def test_near_ood_setup_and_ce_run_evaluate_and_summarise(tmp_path):
    from synthmix.core.io import read_json
    from synthmix.evaluation.evaluate import load_run_model
    from synthmix.evaluation.far_ood import build_far_ood
    from synthmix.training.contrastive_setups import run_setups

    real, syn = _dataset(tmp_path)
    build_far_ood(tmp_path / "far", size=16, crops_per_image=2, images=("astronaut", "coffee", "camera"))
    cfg = _cfg(real, syn, tmp_path / "far", ["in_dist_near_ood", "ce"], plots=False)
    s = run_setups(cfg, tmp_path / "out")
    assert list(s["setups"]) == ["in_dist_near_ood", "ce"]
    assert s["counts"]["near_held"] > 0 and s["counts"]["near_train"] > 0
    r3 = read_json(tmp_path / "out" / "in_dist_near_ood" / "seed-0" / "results.json")
    assert r3["counts"] == {"real": s["counts"]["train"], "in_dist": s["counts"]["in_dist"],
                            "near_ood_negatives": s["counts"]["near_train"]}
    assert set(r3["ood"]) == {"mixed", "syn_near_ood", "far_ood"}
    for m in r3["ood"]["far_ood"]["knn"].values():
        assert 0.0 <= m <= 1.0
    acc = s["setups"]["ce"]["accuracy"]
    assert acc["n"] == 2 and acc["lo"] is not None and 0 <= acc["mean"] <= 1
    assert (tmp_path / "out" / "summary.md").read_text().startswith("| setup")
    model, run_cfg, classes = load_run_model(tmp_path / "out" / "in_dist_near_ood" / "seed-1")
    assert classes == ["apple", "banana", "orange"] and run_cfg.train.model == "tiny_cnn"
    again = run_setups(cfg, tmp_path / "out")  # finished runs are skipped, results unchanged
    assert again["setups"]["ce"]["accuracy"]["values"] == acc["values"]


@pytest.mark.slow
def test_three_setups_and_ce_run_evaluate_and_summarise(tmp_path):
    from synthmix.core.io import read_json
    from synthmix.evaluation.evaluate import load_run_model
    from synthmix.evaluation.far_ood import build_far_ood
    from synthmix.training.contrastive_setups import run_setups

    real, syn = _dataset(tmp_path)
    far = tmp_path / "far"
    build_far_ood(far, size=16, crops_per_image=2, images=("astronaut", "coffee", "camera"))
    cfg = _cfg(real, syn, far, ["real_only", "in_dist", "in_dist_near_ood", "ce"], plots=True)
    s = run_setups(cfg, tmp_path / "out")
    assert list(s["setups"]) == ["real_only", "in_dist", "in_dist_near_ood", "ce"]
    assert s["counts"]["near_held"] > 0 and s["counts"]["near_train"] > 0
    r3 = read_json(tmp_path / "out" / "in_dist_near_ood" / "seed-0" / "results.json")
    assert r3["counts"] == {"real": s["counts"]["train"], "in_dist": s["counts"]["in_dist"],
                            "near_ood_negatives": s["counts"]["near_train"]}
    assert set(r3["ood"]) == {"mixed", "syn_near_ood", "far_ood"}
    for m in r3["ood"]["far_ood"]["knn"].values():
        assert 0.0 <= m <= 1.0
    acc = s["setups"]["real_only"]["accuracy"]
    assert acc["n"] == 2 and acc["lo"] is not None
    assert (tmp_path / "out" / "summary.md").read_text().startswith("| setup")
    assert (tmp_path / "out" / "real_only" / "seed-1" / "ood_scores.png").exists()
    # the run directory is one the evaluation code loads
    model, run_cfg, classes = load_run_model(tmp_path / "out" / "in_dist" / "seed-0")
    assert classes == ["apple", "banana", "orange"] and run_cfg.train.model == "tiny_cnn"
    # finished runs are skipped on a re-run (results unchanged)
    again = run_setups(cfg, tmp_path / "out")
    assert again["setups"]["ce"]["accuracy"]["values"] == s["setups"]["ce"]["accuracy"]["values"]


def test_synthetic_child_of_a_test_image_is_refused(tmp_path):
    from synthmix.core.errors import DataError
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.training.contrastive_setups import ThesisConfig, _split_rows

    real, syn = _dataset(tmp_path)
    test_id = next(r["id"] for r in read_manifest(real) if r["split"] == "test")
    rows = read_manifest(syn)
    rows[0]["parent_id"] = test_id
    write_manifest(syn, rows)
    with pytest.raises(DataError, match="not a real train image"):
        _split_rows(ThesisConfig(manifest=real, synthetic_manifests=[syn]))
