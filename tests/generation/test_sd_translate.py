"""Inter-class translation (Diff-Mix): rows with two labels and a soft label, soft-label CE training,
the translation role through curation and mixes. Tiny random-weight SD, offline."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sd_helpers import real_manifest, single_thread

from synthmix.core.errors import ConfigError, DataError
from synthmix.data.manifest import read_manifest, train_rows
from synthmix.generation.jobs import GenerateConfig, run_generate

assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("model") / "tiny-sd")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return real_manifest(tmp_path_factory.mktemp("data"), {"apple": 2, "banana": 1, "orange": 1})


def gen_cfg(model, **over):
    g = {"type": "diffmix", "model": str(model), "steps": 4, "width": 32, "height": 32, "guidance": 5.0,
         "strengths": [0.5, 0.9], "seed": 2, "gamma": 0.5,
         "lora": {"rank": 2, "steps": 1, "batch_size": 2, "resolution": 32, "per_class": False}}
    g.update(over)
    return g


@pytest.mark.parametrize(("s", "gamma", "w_target"), [(0.49, 0.5, 0.7), (0.7, 0.8, 0.7 ** 0.8), (1.0, 0.5, 1.0),
                                                      (0.25, 1.0, 0.25)])
def test_translation_weights_follow_diffmix(s, gamma, w_target):
    from synthmix.generation.sd.translate import soft_label, translation_weights

    w_src, w_tgt = translation_weights(s, gamma)
    assert w_tgt == pytest.approx(w_target) and w_src + w_tgt == pytest.approx(1.0)
    assert soft_label("apple", "banana", s, gamma) == pytest.approx({"banana": w_target, "apple": 1 - w_target})


def test_diffmix_job_rows_carry_both_labels_and_the_soft_label(tmp_path, tiny_model, manifest):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=8, generator=gen_cfg(tiny_model))
    counts = run_generate(cfg)
    assert counts == {"planned": 8, "skipped": 0, "ok": 8, "failed": 0}  # 4 real x 1 target x 2 strengths
    real = {r["id"]: r for r in train_rows(read_manifest(manifest))}
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    for r in rows:
        parent = real[r["parent_id"]]
        assert (r["source"], r["role"], r["method"], r["status"]) == ("diffmix", "translation", "img2img", "ok")
        assert r["parent_label"] == parent["label"] != r["label"]
        w = r["strength"] ** 0.5
        assert r["soft_label"] == pytest.approx({r["label"]: w, parent["label"]: 1 - w})
        assert r["prompt"] == f"a photo of a <{r['label']}> {r['label']}"
        assert r["checkpoint"] == "lora/all.safetensors" and r["recipe"]["gamma"] == 0.5
    assert (tmp_path / "out/lora/all.safetensors").is_file()
    # targets are deterministic per seed and the same at every strength
    by_parent = {}
    for r in rows:
        by_parent.setdefault(r["parent_id"], set()).add(r["label"])
    assert all(len(v) == 1 for v in by_parent.values())
    assert run_generate(cfg)["skipped"] == 8


def test_diffmix_plan_errors_and_base_model_mode(manifest):
    from synthmix.core.config import parse_config
    from synthmix.generation.sd.translate import DiffMixConfig, plan_diffmix

    real = train_rows(read_manifest(manifest))
    cfg = parse_config(DiffMixConfig, {"model": "m", "targets_per_real": 3, "steps": 10})
    with pytest.raises(ConfigError, match="only 2 other classes"):
        plan_diffmix(cfg, real, ["apple", "banana", "orange"], None)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        plan_diffmix(cfg, real[:1], ["apple"], None)
    base = parse_config(DiffMixConfig, {"model": "m", "lora": None, "steps": 10, "targets_per_real": 2,
                                        "prompts": {"templates": ["a photo of a {name}"]}})
    rows = plan_diffmix(base, real, ["apple", "banana", "orange"], None)
    assert len(rows) == len(real) * 2 and all(r["checkpoint"] is None for r in rows)
    assert {(r["parent_id"], r["label"]) for r in rows} == {
        (p["id"], c) for p in real for c in ("apple", "banana", "orange") if c != p["label"]}
    with pytest.raises(ConfigError, match="lora is null"):
        parse_config(DiffMixConfig, {"model": "m", "lora": None}, source="generator")


def _rows(labels, soft=None):
    return [{"id": f"r{i}", "label": c, "path": f"x{i}.png", "soft_label": (soft or {}).get(i)}
            for i, c in enumerate(labels)]


def test_soft_target_tensor():
    from synthmix.training.soft_labels import soft_target_tensor

    classes = ["apple", "banana", "orange"]
    assert soft_target_tensor(_rows(["apple", "banana"]), classes) is None  # no soft row: nothing changes
    t = soft_target_tensor(_rows(["apple", "banana"], {1: {"banana": 0.7, "apple": 0.3}}), classes)
    np.testing.assert_allclose(t.numpy(), [[1, 0, 0], [0.3, 0.7, 0]], atol=1e-7)
    with pytest.raises(DataError, match="sum to 1"):
        soft_target_tensor(_rows(["apple"], {0: {"apple": 0.5, "banana": 0.4}}), classes)
    with pytest.raises(DataError, match="mixed"):
        soft_target_tensor(_rows(["apple"], {0: {"apple": 0.5, "mixed": 0.5}}), classes)


def _fit_first_loss(x, y, soft, smoothing, seed=0):
    import copy

    import torch

    from synthmix.models import create_model
    from synthmix.training.config import TrainConfig
    from synthmix.training.loop import fit

    torch.manual_seed(seed)
    model = create_model("tiny_cnn", 3, input_size=8)
    init = copy.deepcopy(model)
    cfg = TrainConfig(epochs=1, batch_size=len(y), lr=0.1, label_smoothing=smoothing, augment={"hflip": 0.0},
                      normalization="none", input_size=8, device="cpu", seed=seed)
    res = fit(model, (x, y) if soft is None else (x, y, soft), None, cfg, None, progress=False)
    return res.history[0]["train_loss"], init, model


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_labels_reach_the_loss(smoothing):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 1])
    soft = torch.tensor([[1.0, 0, 0], [0.3, 0.7, 0], [0, 0, 1.0], [0, 0.6, 0.4]])
    loss, init, _ = _fit_first_loss(x, y, soft, smoothing)
    # by hand: the initial model's logits (no augmentation, no normalization), targets mixed with
    # the uniform distribution, then -sum p log q averaged over the batch
    init.train()
    with torch.no_grad():
        logits = init(x.float() / 255)
    target = soft * (1 - smoothing) + smoothing / 3
    expected = -(target * torch.log_softmax(logits, 1)).sum(1).mean().item()
    assert loss == pytest.approx(expected, rel=1e-5)
    hard_loss, _, _ = _fit_first_loss(x, y, None, smoothing)
    hard_target = torch.nn.functional.one_hot(y, 3).float() * (1 - smoothing) + smoothing / 3
    assert hard_loss == pytest.approx(-(hard_target * torch.log_softmax(logits, 1)).sum(1).mean().item(), rel=1e-5)
    assert abs(hard_loss - loss) > 1e-4  # the soft rows changed the loss (far beyond the 1e-5 tolerance)


def test_one_hot_targets_train_like_hard_labels():
    import torch

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (6, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    hard_loss, _, hard = _fit_first_loss(x, y, None, 0.1)
    soft_loss, _, soft = _fit_first_loss(x, y, torch.nn.functional.one_hot(y, 3).float(), 0.1)
    assert soft_loss == pytest.approx(hard_loss, rel=1e-6)
    for k, v in hard.state_dict().items():
        torch.testing.assert_close(soft.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_translation_role_in_mixes_and_curation():
    from synthmix.curation.sort import translation_role
    from synthmix.training.mixes import MixConfig, select_training_rows, synthetic_rows

    real = [{"id": f"r{i}", "label": c, "split": "train", "source": "real"} for i, c in enumerate(["a", "a", "b", "b"])]
    tr = [{"id": f"t{i}", "label": c, "parent_label": p, "split": "train", "source": "diffmix", "role": "translation",
           "status": "ok", "soft_label": {c: 0.8, p: 0.2}} for i, (c, p) in enumerate([("b", "a"), ("b", "a"),
                                                                                         ("a", "b"), ("a", "b")])]
    assert synthetic_rows(real + tr, ["a", "b"], MixConfig().synthetic_roles) == []  # not selected by default
    sel = select_training_rows(real + tr, MixConfig(kind="ratio", real_fraction=0.5, total=8,
                                                    synthetic_roles=["translation"]), seed=0)
    assert sel.n_synthetic == 4 and {r["role"] for r in sel.rows if r["source"] != "real"} == {"translation"}
    assert translation_role("in_dist", "ok")[0] == "translation"
    assert translation_role("near_ood", "predicted other class")[0] == "translation"
    assert translation_role("reject", "black image") == ("reject", "black image")


def test_train_run_feeds_soft_labels_of_selected_translations(tiny_folder, tmp_path, monkeypatch):
    """``synthmix train`` with translated rows: fit receives (x, y, soft) whose rows are the selection's."""
    import json

    import torch

    from conftest import COLOURS, make_image
    from synthmix.data.manifest import new_row, write_manifest
    from synthmix.training import loop
    from synthmix.training.train import TrainRunConfig, train_run

    rows, classes = [], sorted(COLOURS)
    for i, (src, tgt) in enumerate([(a, b) for a in classes for b in classes if a != b] * 2):
        p = tmp_path / "syn/img" / f"t{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        make_image(COLOURS[tgt], size=(36, 36), seed=500 + i).save(p)
        s = 0.5 if i % 2 else 0.9
        rows.append(new_row(id=f"tr-{i}", path=f"img/{p.name}", label=tgt, parent_label=src, split="train",
                            source="diffmix", role="translation", status="ok", strength=s,
                            soft_label={tgt: s ** 0.5, src: 1 - s ** 0.5}))
    write_manifest(tmp_path / "syn/manifest.jsonl", rows)
    seen = []
    real_fit = loop.fit

    def spy(model, train, *args, **kwargs):
        seen.append(train)
        return real_fit(model, train, *args, **kwargs)

    monkeypatch.setattr(loop, "fit", spy)
    train = {"model": "tiny_cnn", "input_size": 16, "epochs": 1, "batch_size": 8, "device": "cpu"}
    cfg = TrainRunConfig(folder=tiny_folder, val_fraction=0.25, synthetic_manifests=[tmp_path / "syn/manifest.jsonl"],
                         mix={"kind": "ratio", "real_fraction": 0.5, "synthetic_roles": ["translation"]},
                         train=train, gradcam=False)
    res = train_run(cfg, tmp_path / "run", progress=False)
    assert res["selection"]["n_synthetic"] == 9
    (x, y, soft), = seen
    sel = [json.loads(line) for line in (tmp_path / "run/selection.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert soft.shape == (len(sel), 3) and torch.allclose(soft.sum(1), torch.ones(len(sel)))
    for i, r in enumerate(sel):
        if r["source"] == "real":
            assert soft[i].tolist() == torch.nn.functional.one_hot(y[i], 3).float().tolist()
        else:
            want = by_id[r["id"]]["soft_label"]
            assert r["soft_label"] == want and r["parent_label"] == by_id[r["id"]]["parent_label"]  # audit trail
            assert soft[i].tolist() == pytest.approx([want.get(c, 0.0) for c in classes])
            assert classes[int(y[i])] == by_id[r["id"]]["label"]
