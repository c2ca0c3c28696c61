"""supcon_run: a SupCon run with train_run's layout, rows by role, loud failures, equal budgets."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def _dataset(tmp, roles=("in_dist", "near_ood")):
    """Real coloured discs (8 per class + 2 `mixed`) and one synthetic child per role per train image."""
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
        for role in roles:
            if role == "in_dist":
                img = make_image(COLOURS[r["label"]], seed=500 + i)
            else:
                img = Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8))
            p = d / f"{role}_{i}.png"
            img.save(p)
            syn.append(new_row(id=f"{role}-{i}", path=p.name, label=r["label"], split="train", source="standin",
                               role=role, parent_id=r["id"], parent_label=r["label"], status="ok"))
    write_manifest(d / "manifest.jsonl", syn)
    return tmp / "data" / "manifest.jsonl", d / "manifest.jsonl"


def _cfg(real, syn=None, **kw):
    from synthmix.training.contrastive import ContrastiveConfig
    from synthmix.training.supcon_run import SupConRunConfig

    c = ContrastiveConfig(model="tiny_cnn", input_size=16, epochs=1, m_per_class=3, probe_epochs=1,
                          proj_dim=8, proj_hidden=8, probe_batch_size=8)
    return SupConRunConfig(manifest=real, synthetic_manifests=[syn] if syn else [], contrastive=c,
                           eval_splits=["test"], gradcam=False, **kw)


def test_run_layout_is_a_training_run(tmp_path):
    from synthmix.core.errors import ConfigError
    from synthmix.core.io import read_json
    from synthmix.training.rundir import evaluate_run, load_run_model
    from synthmix.training.supcon_run import supcon_run

    real, syn = _dataset(tmp_path)
    run = tmp_path / "run"
    res = supcon_run(_cfg(real, syn, near_ood_negatives=True), run)
    model, run_cfg, classes = load_run_model(run)
    assert classes == ["apple", "banana", "orange"] == res["classes"]
    assert run_cfg.train.model == "tiny_cnn" and run_cfg.train.input_size == 16
    assert run_cfg.manifest == real.resolve() and run_cfg.exclude_classes == ["mixed"]
    assert not (run / "config.yaml").read_text().count(str(tmp_path / "run"))  # portable: nothing absolute inside
    sel = res["selection"]
    assert sel["n_real"] == 18 and sel["n_synthetic_positives"] == 18 and sel["n_near_ood_negatives"] == 18
    assert (run / "selection.jsonl").read_text().count("\n") == 54
    fit = res["fit"]
    assert fit["steps"] == fit["pretrain_steps"] + fit["probe_steps"] > 0 and fit["images_seen"] > 0
    # evaluation wrote what the study's evaluate stage reads, and it matches a re-evaluation
    assert (run / "eval" / "test" / "features.npy").exists()
    again = evaluate_run(run, split="test", name="test-again", gradcam=False)
    assert again["accuracy"] == res["eval"]["test"]["accuracy"]
    assert read_json(run / "results.json") == res
    assert supcon_run(_cfg(real, syn, near_ood_negatives=True), run) == res  # finished: returned as is
    with pytest.raises(ConfigError, match="different config"):
        supcon_run(_cfg(real, syn), run)


def test_no_in_dist_rows_is_an_error_naming_the_role(tmp_path):
    from synthmix.core.errors import DataError
    from synthmix.training.supcon_run import supcon_run

    real, syn = _dataset(tmp_path, roles=("near_ood",))
    with pytest.raises(DataError, match=r"role 'in_dist'.*near_ood: 18"):
        supcon_run(_cfg(real, syn), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained
    # the same rows are fine when the run asks only for negatives, or does not insist
    supcon_run(_cfg(real, syn, positives=[], near_ood_negatives=True), tmp_path / "neg")
    res = supcon_run(_cfg(real, syn, require_synthetic=False), tmp_path / "lax")
    assert res["selection"]["n_synthetic"] == 0


def test_no_near_ood_rows_is_an_error(tmp_path):
    from synthmix.core.errors import DataError
    from synthmix.training.supcon_run import supcon_run

    real, syn = _dataset(tmp_path, roles=("in_dist",))
    with pytest.raises(DataError, match=r"role 'near_ood'.*in_dist: 18"):
        supcon_run(_cfg(real, syn, near_ood_negatives=True), tmp_path / "run")


def test_near_ood_in_positives_or_without_manifests_is_a_config_error(tmp_path):
    from pydantic import ValidationError

    real, syn = _dataset(tmp_path, roles=())
    with pytest.raises(ValidationError, match="negatives only"):
        _cfg(real, syn, positives=["in_dist", "near_ood"])
    with pytest.raises(ValidationError, match="needs synthetic_manifests"):
        _cfg(real, None, near_ood_negatives=True)


def test_near_ood_rows_are_only_negatives(tmp_path, monkeypatch):
    import synthmix.training.contrastive as contrastive
    from synthmix.training.supcon_run import supcon_run

    real, syn = _dataset(tmp_path)
    seen = {}
    original = contrastive.train_contrastive

    def spy(data, probe_x, probe_y, num_classes, cfg, checkpoint=None):
        seen.update(data=data, probe_x=probe_x, probe_y=probe_y)
        return original(data, probe_x, probe_y, num_classes, cfg, checkpoint=checkpoint)

    monkeypatch.setattr(contrastive, "train_contrastive", spy)
    res = supcon_run(_cfg(real, syn, near_ood_negatives=True), tmp_path / "run")
    data = seen["data"]
    n_real, n_pos, n_neg = 18, 18, 18
    assert len(data.labels) == n_real + n_pos + n_neg
    # negatives are exactly the near_ood rows, labelled with their parent class
    assert data.is_negative.tolist() == [False] * (n_real + n_pos) + [True] * n_neg
    import json

    lines = [json.loads(x) for x in (tmp_path / "run" / "selection.jsonl").read_text().splitlines()]
    assert [r["role"] == "near_ood" for r in lines] == data.is_negative.tolist()
    classes = res["classes"]
    assert [classes[i] for i in data.labels.tolist()] == [r["label"] for r in lines]
    # the probe never sees a near-OOD row
    assert len(seen["probe_y"]) == n_real + n_pos
    assert seen["probe_x"].shape[0] == n_real + n_pos


def test_synthetic_child_of_a_test_image_is_refused(tmp_path):
    from synthmix.core.errors import DataError
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.training.supcon_run import supcon_run

    real, syn = _dataset(tmp_path)
    test_id = next(r["id"] for r in read_manifest(real) if r["split"] == "test")
    rows = read_manifest(syn)
    rows[0]["parent_id"] = test_id
    write_manifest(syn, rows)
    with pytest.raises(DataError, match="not a real train image"):
        supcon_run(_cfg(real, syn), tmp_path / "run")


def test_equal_steps_with_and_without_synthetic_rows(tmp_path):
    from synthmix.training.supcon_run import supcon_run

    real, syn = _dataset(tmp_path)
    a = supcon_run(_cfg(real), tmp_path / "real")["fit"]
    b = supcon_run(_cfg(real, syn, near_ood_negatives=True), tmp_path / "syn")["fit"]
    # 18 real anchors, 3 per class x 3 classes per batch -> 2 batches; 18 probe rows / 8 -> 3 batches
    assert (a["pretrain_steps"], a["probe_steps"]) == (2, 3) == (b["pretrain_steps"], b["probe_steps"])
    assert a["steps"] == b["steps"] == 5
    assert b["images_seen"] > a["images_seen"]  # families: a batch holds children beside their parents


def test_probe_batches_per_epoch_cuts_and_repeats_passes():
    import torch

    from synthmix.models import create_model
    from synthmix.training.contrastive import ContrastiveConfig, probe_epoch

    x = torch.randint(0, 255, (10, 3, 16, 16), dtype=torch.uint8)
    y = torch.tensor([0, 1] * 5)
    # 10 rows in batches of 3: a pass is 3+3+3+1; None = one pass; 7 = a pass and 3 batches of the next
    for batches, (want_steps, want_images) in ((None, (4, 10)), (2, (2, 6)), (7, (7, 19))):
        cfg = ContrastiveConfig(model="tiny_cnn", input_size=16, probe_batch_size=3, probe="finetune",
                                probe_batches_per_epoch=batches)
        model = create_model("tiny_cnn", 2, input_size=16)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        _, steps, images = probe_epoch(model, x, y, cfg, opt, torch.Generator().manual_seed(0))
        assert (steps, images) == (want_steps, want_images)
