"""evaluate_model's files, unlabelled sets, and cross-dataset class matching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthmix.core.errors import DataError
from synthmix.evaluation.crossdata import evaluate_folder, folder_rows
from synthmix.evaluation.evaluate import evaluate_model
from synthmix.models import create_model

PNG = b"\x89PNG\r\n\x1a\n"


def _data(n=12, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), np.arange(n) % 3


def test_evaluate_model_writes_every_file(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, input_size=32)
    x, y = _data()
    m = evaluate_model(model, x, y, ["a", "b", "c"], tmp_path, name="test", ids=[f"id{i}" for i in range(12)])
    d = tmp_path / "test"
    for f in ("roc.png", "pr.png", "confusion.png", "calibration.png", "gradcam.png"):
        assert (d / f).read_bytes()[:8] == PNG, f
    feats, logits = np.load(d / "features.npy"), np.load(d / "logits.npy")
    assert feats.shape == (12, model.feature_dim) and logits.shape == (12, 3)
    assert np.array_equal(np.load(d / "labels.npy"), y)
    assert json.loads((d / "ids.json").read_text())[3] == "id3"
    # the cached logits are the model's, and the metrics are computed from them
    with torch.no_grad():
        ref = model((x.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                    / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    assert np.allclose(logits, ref.numpy(), atol=1e-5)
    assert m["accuracy"] == pytest.approx(float((logits.argmax(1) == y).mean()))
    saved = json.loads((d / "metrics.json").read_text())
    assert saved["accuracy"] == m["accuracy"] and saved["n"] == 12


def test_unlabelled_set_caches_features_only(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, input_size=32)
    x, _ = _data(5)
    m = evaluate_model(model, x, None, ["a", "b", "c"], tmp_path, name="ood", gradcam=False)
    assert m["n_labelled"] == 0 and "accuracy" not in m
    assert np.load(tmp_path / "ood" / "features.npy").shape[0] == 5
    assert (np.load(tmp_path / "ood" / "labels.npy") == -1).all()
    assert not (tmp_path / "ood" / "roc.png").exists()


def test_cross_dataset_maps_classes_by_name(tmp_path):
    from conftest import make_imagefolder

    root = make_imagefolder(tmp_path / "other", per_class={"Apple": 2, "banana ": 2, "kiwi": 2},
                            splits=("train",))
    rows, mapping = folder_rows(root / "train", ["apple", "banana", "orange"])
    assert mapping["matched"] == {"Apple": "apple", "banana ": "banana"}
    assert mapping["extra"] == ["kiwi"] and mapping["missing"] == ["orange"]
    assert sorted(r["label"] for r in rows) == ["apple", "apple", "banana", "banana"]
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, input_size=32)
    res = evaluate_folder(model, root / "train", ["apple", "banana", "orange"], tmp_path / "eval",
                          input_size=32, gradcam=False)
    assert res["n"] == 4 and res["mapping"]["extra"] == ["kiwi"]
    assert (tmp_path / "eval" / "folder-train" / "mapping.json").exists()


def test_cross_dataset_without_overlap_is_a_clear_error(tmp_path):
    from conftest import make_imagefolder

    root = make_imagefolder(tmp_path / "other", per_class={"kiwi": 1}, splits=("train",))
    with pytest.raises(DataError, match="no class folder matches"):
        folder_rows(root / "train", ["apple", "banana"])


def test_set_name_cannot_escape_the_output_dir(tmp_path):
    import numpy as np
    import pytest

    from synthmix.core.errors import SynthmixError
    from synthmix.evaluation.evaluate import evaluate_model
    from synthmix.models import create_model

    model = create_model("tiny_cnn", 2)
    x = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    with pytest.raises(SynthmixError, match="escapes"):
        evaluate_model(model, x, np.array([0, 1]), ["a", "b"], tmp_path / "eval", name="../outside")
    assert not (tmp_path / "outside").exists()


def test_figure_splits_draw_only_the_chosen_splits_with_the_same_metrics(tmp_path):
    """A study's later seeds skip the figures (about a second of matplotlib per split): same metrics and
    arrays, no image files."""
    from synthmix.evaluation.evaluate import evaluate_splits

    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, input_size=32)
    x, y = _data()
    rows = [{"id": f"i{k}", "split": "val" if k < 6 else "test", "label": "abc"[y[k]]} for k in range(12)]

    def tensors(rs):
        idx = [int(r["id"][1:]) for r in rs]
        return x[idx], torch.as_tensor(y[idx])

    full = evaluate_splits(model, rows, ["a", "b", "c"], tmp_path / "all", ["val", "test"], tensors)
    part = evaluate_splits(model, rows, ["a", "b", "c"], tmp_path / "part", ["val", "test"], tensors,
                           figure_splits=["test"])
    assert part == full
    assert sorted(p.name for p in (tmp_path / "part" / "val").glob("*.png")) == []
    assert len(list((tmp_path / "part" / "test").glob("*.png"))) == 5
    for split in ("val", "test"):
        for f in ("logits.npy", "features.npy"):
            assert np.array_equal(np.load(tmp_path / "all" / split / f), np.load(tmp_path / "part" / split / f))


def test_inference_in_channels_last_gives_the_usual_outputs_and_layout_back():
    from synthmix.evaluation.features import conv_layout, extract
    from synthmix.evaluation.robustness import predict

    torch.manual_seed(0)
    model = create_model("small_cnn", 3, input_size=32).eval()
    x, _ = _data(n=20)
    xf = (x.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref_f, ref_z = model.forward_features(xf), model(xf)
    f, z = extract(model, x, batch_size=7)
    np.testing.assert_allclose(f, ref_f.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z, ref_z.numpy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(predict(model, x, batch_size=7), ref_z.argmax(1))
    assert all(p.is_contiguous() for p in model.parameters())  # the layout is restored
    with conv_layout(torch.nn.Linear(3, 2)) as layout:  # no convolution: nothing changes
        assert layout == torch.contiguous_format
