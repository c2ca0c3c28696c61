"""Fidelity helpers: accuracy tables and the strength choice from a measured sweep."""

from __future__ import annotations

import torch


def test_accuracy_report_per_class():
    from synthmix.generation.embedded.fidelity import accuracy_report

    pred = torch.tensor([0, 0, 1, 2, 2, 2])
    y = torch.tensor([0, 1, 1, 2, 2, 0])
    rep = accuracy_report(pred, y, ["a", "b", "c"])
    assert rep == {"accuracy": round(4 / 6, 4), "per_class": {"a": 0.5, "b": 0.5, "c": 1.0}, "n": 6}


def _row(s, acc, change, cos=0.9):
    return {"strength": s, "accuracy": acc, "mean_abs_change": change, "feature_cosine": cos,
            "per_class": {"a": acc, "b": acc}}


def test_pick_strengths_uses_the_measured_sweep():
    from synthmix.generation.embedded.fidelity import pick_strengths

    sweep = [_row(0.2, 1.0, 0.03), _row(0.4, 0.99, 0.06), _row(0.6, 0.97, 0.10),
             _row(0.8, 0.80, 0.18), _row(0.9, 0.70, 0.22), _row(1.0, 0.65, 0.25)]
    # in-dist: largest strength with fidelity >= 0.95 and a visible change; near-OOD: first
    # strength past it whose fidelity fell half-way (0.97 -> 0.81) to the sweep's lowest (0.65)
    assert pick_strengths(sweep) == {"in_dist": 0.6, "near_ood": 0.8}
    # no strength changes the image visibly: the largest faithful one
    assert pick_strengths(sweep, min_change_in_dist=0.5) == {"in_dist": 0.6, "near_ood": 0.8}
    assert pick_strengths(sweep, min_fidelity_in_dist=0.995) == {"in_dist": 0.2, "near_ood": 0.8}
    assert pick_strengths([]) == {"in_dist": None, "near_ood": None}


def test_pick_strengths_keeps_in_dist_images_close_to_their_parent():
    from synthmix.generation.embedded.fidelity import pick_strengths

    # fidelity never falls below 0.95 (a strong model): the parent similarity bounds in-dist
    sweep = [_row(0.4, 1.0, 0.05, 0.97), _row(0.8, 1.0, 0.10, 0.88), _row(0.9, 0.98, 0.14, 0.80 - 1e-3),
             _row(1.0, 0.95, 0.37, 0.45)]
    assert pick_strengths(sweep) == {"in_dist": 0.8, "near_ood": 1.0}


def test_measure_fidelity_end_to_end_on_a_tiny_model(tmp_path):
    """The whole measurement on a tiny generator: real splits loaded, every part reported."""
    from embedded_helpers import folder_manifest, tiny_train_config

    from conftest import make_imagefolder
    from synthmix.generation.embedded.fidelity import measure_fidelity, real_split_tensors
    from synthmix.generation.embedded.train import train_generator

    manifest = folder_manifest(make_imagefolder(tmp_path / "ds"), tmp_path / "manifest.jsonl")
    ckpt = train_generator(tiny_train_config(manifest, tmp_path / "model"), show_progress=False)
    classes = ["apple", "banana", "orange"]
    train, (xtr, ytr), (xte, yte) = real_split_tensors(str(manifest), classes, 16)
    assert len(train) == 24 and tuple(xtr.shape) == (24, 3, 16, 16) and tuple(xte.shape) == (9, 3, 16, 16)
    assert ytr.tolist() == sorted(ytr.tolist()) and set(yte.tolist()) == {0, 1, 2}

    rep = measure_fidelity(str(ckpt), str(manifest), per_class=2, strengths=(0.0, 1.0), parents_per_class=1,
                           steps=2, classifier_epochs=1)
    assert rep["classes"] == classes and rep["resolution"] == 16
    assert [s["strength"] for s in rep["strength_sweep"]] == [0.0, 1.0]
    for key in ("real_test", "fidelity", "synthetic_only_real_test"):
        assert 0.0 <= rep[key]["accuracy"] <= 1.0
