"""run_study with the real stages on a tiny folder: metrics of the test split, an extra
cross-dataset folder, an extra OOD folder and the near-OOD class; status and aggregation."""

from __future__ import annotations

import pytest
from study_helpers import study_dict, tiny_dataset

from conftest import make_imagefolder
from synthmix.core.io import read_json
from synthmix.experiments.load import parse_study
from synthmix.experiments.runner import run_study
from synthmix.experiments.status import study_status


@pytest.mark.slow
def test_real_run_with_extra_folders(tmp_path):
    data = tiny_dataset(tmp_path / "data", per_class=5, test_per_class=2)
    cross = make_imagefolder(tmp_path / "cross", per_class={"apple": 2, "orange": 2, "kiwi": 1}, splits=("test",),
                             test_per_class=2, size=(30, 30)) / "test"
    ood = make_imagefolder(tmp_path / "ood", per_class={"stone": 3}, splits=("test",), test_per_class=3) / "test"
    d = study_dict(data, seeds=[0])
    d["evaluation"].update(extra=[{"name": "cross", "path": str(cross)},
                                  {"name": "stones", "path": str(ood), "ood": True}],
                           detectors=["msp", "energy"], primary_detector="energy")
    summary = run_study(parse_study(d), tmp_path / "run", verbose=False, threads=1)
    assert summary["run"]["failed"] == 0 and summary["run"]["blocked"] == 0
    cell = summary["cells"][0]
    m = cell["metrics"]
    for key in ("test/accuracy", "test/macro_f1", "cross/accuracy", "ood/near_ood/energy/auroc",
                "ood/near_ood/msp/fpr95", "ood/stones/energy/auroc"):
        assert key in m and 0.0 <= m[key] <= 1.0, key
    assert "ood/far_ood/energy/auroc" not in m and not any("knn" in k for k in m)
    # the test accuracy is the training run's own evaluation of the test split
    run_eval = read_json(tmp_path / "run" / "stages" / cell["train"] / "run" / "eval" / "test" / "metrics.json")
    assert m["test/accuracy"] == run_eval["accuracy"]
    mapping = read_json(tmp_path / "run" / "stages" / cell["evaluate"] / "eval" / "cross" / "mapping.json")
    assert mapping["extra"] == ["kiwi"]
    assert summary["headline"][:2] == ["test/accuracy", "test/macro_f1"]
    assert "cross/accuracy" in summary["headline"] and "ood/stones/energy/auroc" in summary["headline"]
    assert study_status(tmp_path / "run")["counts"]["done"] == 1
    again = run_study(parse_study(d), tmp_path / "run", verbose=False)
    assert again["run"]["ran"] == 0 and again["cells"][0]["metrics"] == m
    assert not any(k.startswith("ood_fs") for k in m)  # full-spectrum is opt-in

    # full-spectrum: the cross-dataset folder's images of known classes count as ID
    import numpy as np

    from synthmix.evaluation.ood.metrics import ood_metrics

    d["evaluation"]["full_spectrum"] = True
    fs = run_study(parse_study(d), tmp_path / "fs", verbose=False, threads=1)["cells"][0]
    ev = tmp_path / "fs" / "stages" / fs["evaluate"]
    scores = np.load(ev / "scores.npz")
    test_dir = tmp_path / "fs" / "stages" / fs["train"] / "run" / "eval" / "test"
    z_cross = np.load(ev / "eval" / "cross" / "logits.npy")
    # msp by hand: the max softmax of the cached logits
    msp = np.exp(z_cross - z_cross.max(1, keepdims=True))
    msp = (msp / msp.sum(1, keepdims=True)).max(1)
    pooled = np.r_[scores["test/msp"], msp]
    assert len(scores["test/msp"]) == len(np.load(test_dir / "labels.npy"))
    for name in ("near_ood", "stones"):
        want = ood_metrics(pooled, scores[f"{name}/msp"])
        assert fs["metrics"][f"ood_fs/{name}/msp/auroc"] == pytest.approx(want["auroc"])
        assert fs["metrics"][f"ood_fs/{name}/msp/fpr95"] == pytest.approx(want["fpr95"])
    assert fs["metrics"]["ood_fs_group/near/msp/auroc"] == pytest.approx(fs["metrics"]["ood_fs/near_ood/msp/auroc"])


@pytest.mark.slow
def test_a_timm_backbone_runs_through_the_study(tmp_path):
    """models: [timm:resnet10t] (random init: no weights file) trains, evaluates and reports."""
    data = tiny_dataset(tmp_path / "data", per_class=4, test_per_class=2)
    d = study_dict(data, seeds=[0])
    d["models"] = [{"name": "timm:resnet10t"}]
    d["evaluation"] = {"far_ood": False, "gradcam": True}
    summary = run_study(parse_study(d), tmp_path / "run", verbose=False, threads=1)
    assert not summary["incomplete"], summary["incomplete"]
    m = summary["cells"][0]["metrics"]
    assert 0 <= m["test/accuracy"] <= 1 and "ood/near_ood/energy/auroc" in m
