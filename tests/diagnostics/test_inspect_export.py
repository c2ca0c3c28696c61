"""inspect_manifest end to end on a tiny real-trained run, the CLI commands, and the export that
Hugging Face ``datasets`` must load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny CE run on coloured discs + a manifest with synthetic rows of three kinds: byte copies
    of real TRAIN images (memorised), copies of real TEST images (a leak), new images."""
    from conftest import COLOURS, make_image, make_imagefolder
    from synthmix.data.manifest import new_row, read_manifest, write_manifest
    from synthmix.data.scan import scan_dataset
    from synthmix.training.config import TrainConfig
    from synthmix.training.train import TrainRunConfig, train_run

    tmp = tmp_path_factory.mktemp("diag")
    root = make_imagefolder(tmp / "ds", per_class={c: 12 for c in COLOURS}, test_per_class=4)
    scan_dataset(root, tmp / "data", val_fraction=0.25, seed=0)
    manifest = tmp / "data" / "manifest.jsonl"
    cfg = TrainRunConfig(manifest=manifest, eval_splits=[], gradcam=False,
                         train=TrainConfig(model="tiny_cnn", input_size=32, epochs=4, batch_size=8, lr=0.01,
                                           weight_decay=0.0, num_threads=1))
    train_run(cfg, tmp / "run", progress=False)
    rows = read_manifest(manifest)
    syn_dir = tmp / "gen" / "images"
    syn_dir.mkdir(parents=True)
    syn = []
    train = {c: [r for r in rows if r["label"] == c and r["split"] == "train"] for c in COLOURS}
    test = {c: [r for r in rows if r["label"] == c and r["split"] == "test"] for c in COLOURS}
    for c, col in COLOURS.items():
        for k, parent in enumerate(train[c][:2]):  # memorised: the parent itself, byte for byte
            shutil.copyfile(parent["path"], syn_dir / f"copy_{c}_{k}.jpg")
            syn.append(new_row(id=f"copy_{c}_{k}", path=f"images/copy_{c}_{k}.jpg", label=c, split="train",
                               source="standin", role="in_dist", parent_id=parent["id"], parent_label=c,
                               seed=k, strength=0.1, prompt=f"a photo of {c}", generator="standin"))
        shutil.copyfile(test[c][0]["path"], syn_dir / f"leak_{c}.jpg")
        syn.append(new_row(id=f"leak_{c}", path=f"images/leak_{c}.jpg", label=c, split="train",
                           source="standin", role="in_dist", seed=7, generator="standin"))
        for k in range(4):
            make_image(col, seed=5000 + 10 * k + len(c)).save(syn_dir / f"new_{c}_{k}.png")
            syn.append(new_row(id=f"new_{c}_{k}", path=f"images/new_{c}_{k}.png", label=c, split="train",
                               source="standin", role="in_dist", seed=100 + k, strength=0.8, generator="standin"))
    make_image((90, 90, 200), seed=9999).save(syn_dir / "nood.png")
    syn.append(new_row(id="nood", path="images/nood.png", label=None, parent_label="apple", split="train",
                       source="standin", role="near_ood", seed=1, generator="standin"))
    make_image((128, 128, 128), seed=9998).save(syn_dir / "rej.png")
    syn.append(new_row(id="rej", path="images/rej.png", label="apple", split="train", source="standin",
                       role="reject", generator="standin"))
    gen_manifest = tmp / "gen" / "synthetic.jsonl"  # generated rows only: real rows come from the run
    write_manifest(gen_manifest, syn)
    both = tmp / "gen" / "manifest.jsonl"  # real + synthetic in one manifest (paths relative to gen/)
    write_manifest(both, [{**r} for r in rows] + syn)
    return {"tmp": tmp, "run": tmp / "run", "synthetic": gen_manifest, "manifest": both, "classes": list(COLOURS)}


def test_inspect_flags_copies_and_leaks_and_writes_relative_paths(study, tmp_path):
    from synthmix.diagnostics.inspect import InspectConfig, MemorisationConfig, headline, inspect_manifest

    out = tmp_path / "diag"
    cfg = InspectConfig(kid_subsets=5, memorisation=MemorisationConfig(pairs=8))
    d = inspect_manifest(study["synthetic"], study["run"], out, cfg)
    assert set(d["groups"]) == {"in_dist", "near_ood"}  # reject is not inspected by default
    g = d["groups"]["in_dist"]
    assert g["overall"]["n"] == 3 * (2 + 1 + 4)
    # 6 byte copies of train images among 21 rows: flagged by the pixel test, nearest = own parent
    assert g["overall"]["memorised_train_pixel"] == pytest.approx(6 / 21)
    assert g["overall"]["memorised_train"] >= 6 / 21
    assert g["overall"]["nearest_is_parent"] == pytest.approx(1.0)  # only the copies name a parent
    assert g["overall"]["leak_test_pixel"] == pytest.approx(3 / 21)
    closest = {p["id"] for p in g["closest_train"][:6]}
    assert closest == {f"copy_{c}_{k}" for c in study["classes"] for k in range(2)}
    assert all(p["pixel_mad"] == pytest.approx(0.0, abs=1e-6) and p["flagged"] for p in g["closest_train"][:6])
    assert {p["id"] for p in g["closest_test"][:3]} == {f"leak_{c}" for c in study["classes"]}
    for c in study["classes"]:
        pc = g["per_class"][c]
        assert pc["n"] == 7 and pc["memorised_train_pixel"] == pytest.approx(2 / 7)
        assert 0 <= pc["precision"] <= 1 and 0 <= pc["recall"] <= 1 and pc["fid"] >= 0
    # the reference group: real validation images. The cosine threshold is their 99th percentile, so
    # with 9 images it flags at most the single most similar one; none is a copy in pixels.
    ref = d["reference"]["real_val"]["overall"]
    assert ref["n"] == d["real"]["val"] > 0 and ref["memorised_train"] <= 1 / ref["n"] + 1e-9
    assert d["feature_space"]["kind"] == "classifier" and "not comparable" in d["feature_space"]["note"]
    # paths relative to out_dir, files present
    for p in (d["manifest"], d["classifier_run"]):
        assert not p.startswith("/") and (out / p).exists()
    for name in g["grids"].values():
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "diagnostics.json").read_text())["groups"]["in_dist"]["overall"]["n"] == 21
    from synthmix.reporting.synthetic_section import synthetic_section_html

    html = synthetic_section_html(out)  # the report fragment reads the saved folder only
    n_grids = sum(v is not None for grp in d["groups"].values() for v in grp["grids"].values())
    assert html.count("data:image/png;base64,") == n_grids >= 4 and "classifier penultimate" in html
    near = {r["id"]: r for r in map(json.loads, (out / d["files"]["nearest"]).read_text().splitlines())}
    assert len(near) == 22 and near["copy_apple_0"]["train_copy"] and near["copy_apple_0"]["train_pixel_mad"] == 0
    assert near["leak_banana"]["test_copy"] and near["nood"]["role"] == "near_ood"
    h = headline(d)
    from synthmix.diagnostics.inspect import headlines

    assert headlines({"setup-a": out}) == {"setup-a": h}
    assert set(h) >= {"precision", "recall", "fid", "kid", "agreement", "memorised_train"}
    # the same from a manifest with real + synthetic rows (relative synthetic paths)
    cas_runs = []
    for seed, acc in enumerate((0.5, 0.7)):  # synthetic-only runs, as the study would train them
        m = tmp_path / f"syn-only-{seed}" / "eval" / "test"
        m.mkdir(parents=True)
        (m / "metrics.json").write_text(json.dumps({"accuracy": acc, "n_labelled": 12,
                                                    "per_class": {"apple": {"recall": acc}}}))
        cas_runs.append(m.parents[1])
    d2 = inspect_manifest(study["manifest"], study["run"], tmp_path / "d2", cfg, cas_runs=cas_runs)
    assert d2["groups"]["in_dist"]["overall"]["memorised_train_pixel"] == pytest.approx(6 / 21)
    assert d2["cas"]["cas"] == pytest.approx(0.6) and d2["cas"]["per_class"] == {"apple": pytest.approx(0.6)}
    assert d2["cas"]["runs"] == ["../syn-only-0", "../syn-only-1"] and headline(d2)["cas"] == pytest.approx(0.6)


def test_identical_set_through_inspect_has_full_precision_recall(study, tmp_path):
    """Synthetic rows that ARE the real train images: precision = recall = 1, FID ~ 0, all memorised."""
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.diagnostics.inspect import InspectConfig, inspect_manifest

    rows = read_manifest(study["tmp"] / "data" / "manifest.jsonl")
    same = [{**r, "id": "s" + r["id"], "source": "standin", "role": "in_dist", "split": "train"}
            for r in rows if r["split"] == "train"]
    write_manifest(tmp_path / "same.jsonl", same)
    d = inspect_manifest(tmp_path / "same.jsonl", study["run"], tmp_path / "out", InspectConfig(kid_subsets=3))
    o = d["groups"]["in_dist"]["overall"]
    assert o["precision"] == 1.0 and o["recall"] == 1.0 and o["coverage"] == 1.0
    assert o["fid"] == pytest.approx(0.0, abs=1e-3)
    assert o["memorised_train"] == 1.0 and o["diversity_ratio"] == pytest.approx(1.0)


def test_inspect_errors_name_the_problem(study, tmp_path):
    from synthmix.core.errors import ConfigError, DataError
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.diagnostics.features import FeatureSpaceConfig
    from synthmix.diagnostics.inspect import InspectConfig, inspect_manifest

    real_only = [r for r in read_manifest(study["manifest"]) if r["source"] == "real"]
    write_manifest(tmp_path / "real.jsonl", real_only)
    with pytest.raises(DataError, match="no synthetic rows"):
        inspect_manifest(tmp_path / "real.jsonl", study["run"], tmp_path / "o")
    with pytest.raises(DataError, match="not a finished training run"):
        inspect_manifest(study["synthetic"], tmp_path, tmp_path / "o")
    with pytest.raises(ConfigError, match="pt_inception.*never downloads"):
        inspect_manifest(study["synthetic"], study["run"], tmp_path / "o",
                         InspectConfig(features=FeatureSpaceConfig(kind="inception", weights=tmp_path / "x.pth")))


def test_inspect_and_export_cli(study, tmp_path):
    from typer.testing import CliRunner

    from synthmix.cli.app import _register, app

    _register()
    r = CliRunner().invoke(app, ["inspect", str(study["synthetic"]), "--run", str(study["run"]),
                                 "--out", str(tmp_path / "d"), "--markdown"])
    assert r.exit_code == 0, r.output
    assert "| in_dist | all | 21 |" in r.output and "classifier penultimate features" in r.output
    assert (tmp_path / "d" / "diagnostics.json").exists()
    r = CliRunner().invoke(app, ["inspect", str(study["synthetic"]), "--run", str(study["run"]),
                                 "--out", str(tmp_path / "d2"), "--features", "bogus"])
    assert r.exit_code != 0 and "features.kind" in str(r.exception)  # a ConfigError naming the field
    r = CliRunner().invoke(app, ["export", str(study["manifest"]), "--out", str(tmp_path / "e"), "--near-ood"])
    assert r.exit_code == 0, r.output
    assert "train: in_dist 21" in r.output and (tmp_path / "e" / "near_ood" / "apple" / "nood.png").exists()


def test_export_loads_with_hf_datasets(study, tmp_path):
    import datasets
    import pandas as pd

    from synthmix.diagnostics.export import ExportConfig, export_dataset

    out = tmp_path / "export"
    s = export_dataset(study["manifest"], out, ExportConfig(near_ood=True))
    n_real = {sp: sum(1 for r in _real(study) if r["split"] == sp) for sp in ("train", "val", "test")}
    assert s["counts"]["train"] == {"real": n_real["train"], "in_dist": 21}
    assert s["counts"]["near_ood"] == {"near_ood": 1} and "reject" not in json.dumps(s["counts"])
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "hf"))
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].num_rows == n_real["train"] + 21 and ds["test"].num_rows == n_real["test"]
    tr = ds["train"].to_pandas().drop(columns=["image"])
    copy = tr[tr["id"] == "copy_apple_0"].iloc[0]
    assert copy["role"] == "in_dist" and copy["label"] == "apple" and copy["seed"] == "0"
    assert copy["strength"] == pytest.approx(0.1) and copy["prompt"] == "a photo of apple"
    assert copy["parent_id"] and copy["generator"] == "standin"
    real = tr[tr["role"] == "real"].iloc[0]
    assert real["source"] == "real" and real["seed"] == "" and np.isnan(real["strength"])
    img = ds["train"][0]["image"]
    assert img.size[0] > 0
    # exported bytes are the original bytes
    src = study["tmp"] / "gen" / "images" / "copy_apple_0.jpg"
    assert (out / "train" / "apple" / "copy_apple_0.jpg").read_bytes() == src.read_bytes()
    pq = pd.read_parquet(out / "manifest.parquet")
    assert len(pq) == s["n"] and set(pq["file"].str.split("/").str[0]) == {"train", "val", "test", "near_ood"}
    assert all((out / f).is_file() for f in pq["file"])
    near = datasets.load_dataset("imagefolder", data_dir=str(out / "near_ood"), cache_dir=str(tmp_path / "hf2"))
    assert near["train"][0]["label"] == "apple" and near["train"][0]["role"] == "near_ood"


def test_export_from_a_run_and_refusals(study, tmp_path):
    from synthmix.core.errors import ConfigError, DataError
    from synthmix.diagnostics.export import export_dataset

    s = export_dataset(study["run"], tmp_path / "e")
    sel = [json.loads(line) for line in (study["run"] / "selection.jsonl").read_text().splitlines()]
    assert s["counts"]["train"] == {"real": len(sel)} and s["source_kind"] == "run"
    again = export_dataset(study["run"], tmp_path / "e")  # a previous export is replaced
    assert again["n"] == s["n"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a synthmix export"):
        export_dataset(study["manifest"], tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="not a training run directory"):
        export_dataset(tmp_path / "mine", tmp_path / "x")


def _real(study):
    from synthmix.data.manifest import read_manifest

    return [r for r in read_manifest(study["manifest"]) if r["source"] == "real"]


@pytest.mark.slow  # importing transformers dominates
def test_hf_feature_space_from_a_local_folder(study, tmp_path):
    """A tiny random-weight DINOv2 saved locally: the distances use its features, named as such."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from synthmix.core.errors import ConfigError
    from synthmix.diagnostics.features import FeatureSpaceConfig
    from synthmix.diagnostics.inspect import InspectConfig, inspect_manifest

    folder = tmp_path / "tiny-dinov2"
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                             image_size=32, patch_size=8)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    cfg = InspectConfig(kid_subsets=3, features=FeatureSpaceConfig(kind="hf", weights=folder, batch_size=16))
    d = inspect_manifest(study["synthetic"], study["run"], tmp_path / "out", cfg)
    assert d["feature_space"]["kind"] == "hf" and d["feature_space"]["dim"] == 16
    with pytest.raises(ConfigError, match="cannot load it offline"):  # never a download
        inspect_manifest(study["synthetic"], study["run"], tmp_path / "o",
                         InspectConfig(features=FeatureSpaceConfig(kind="hf", model_id="nobody/no-such-model")))
    assert d["feature_space"]["name"].startswith("Dinov2Model")
    o = d["groups"]["in_dist"]["overall"]
    assert o["memorised_train_pixel"] == 6 / 21 and 0 <= o["precision"] <= 1 and o["fid"] >= 0


@pytest.mark.slow  # importing transformers dominates
def test_clip_feature_space_gives_a_clip_score(study, tmp_path):
    """A tiny random-weight CLIP with a hand-made tokenizer, saved locally: image features for the
    distances and an image-text CLIP score per class (100 * max(cos, 0))."""
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from synthmix.diagnostics.features import FeatureSpaceConfig
    from synthmix.diagnostics.inspect import InspectConfig, inspect_manifest, markdown_table

    folder = tmp_path / "tiny-clip"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + " .,-_":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    small = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=dict(vocab_size=len(vocab), max_position_embeddings=32, eos_token_id=1,
                                          bos_token_id=0, pad_token_id=1, **small),
                         vision_config=dict(image_size=32, patch_size=8, **small), projection_dim=8)
              ).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    cfg = InspectConfig(kid_subsets=3, features=FeatureSpaceConfig(kind="hf", weights=folder, batch_size=16))
    d = inspect_manifest(study["synthetic"], study["run"], tmp_path / "out", cfg)
    assert d["feature_space"]["dim"] == 8 and d["feature_space"]["clip_prompt"] == "a photo of a {label}"
    g = d["groups"]["in_dist"]
    assert 0 <= g["overall"]["clip_score"] <= 100
    assert all(0 <= m["clip_score"] <= 100 for m in g["per_class"].values())
    assert "clip_score" in markdown_table(d)


@pytest.mark.slow  # an Inception v3 forward pass at 299 px
def test_inception_feature_space_from_a_local_weights_file(tmp_path, monkeypatch):
    """torch-fidelity's FID Inception v3 with random weights written to a local file (the real file
    cannot be fetched offline): 2048-d features, named as Inception; no file -> a clear error."""
    pytest.importorskip("torch_fidelity")
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from synthmix.core.errors import ConfigError
    from synthmix.diagnostics.features import FeatureSpaceConfig, feature_space

    with monkeypatch.context() as m:  # build the network without loading (or downloading) weights
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        m.setattr(fe.torch, "load", lambda *a, **k: {})
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    space = feature_space(FeatureSpaceConfig(kind="inception", weights=tmp_path / "inception.pth"))
    assert space.name.startswith("inception-v3") and space.image_size == 299
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    f = space.encode(x)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    with pytest.raises(ConfigError, match="never downloads"):
        feature_space(FeatureSpaceConfig(kind="inception", weights=None))
