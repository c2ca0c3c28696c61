"""Data-parallel training: 2 processes (torchrun, gloo) == 1 process with the doubled batch; resume.

Toy data: 23 train / 9 val samples, so the last global batch and the validation set split
unevenly over the ranks (the weighting and the no-padding evaluation are exercised).
"""

from __future__ import annotations

import json

import pytest
import torch
from dist_helpers import HERE, torchrun, torchrun_start, toy_config, toy_data, toy_model

from synthmix.distributed import World
from synthmix.training.ddp import DataParallel
from synthmix.training.loop import fit

KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def test_local_slices_cover_a_batch_once():
    for n in (0, 1, 5, 6, 23):
        parts = [DataParallel(World(rank=r, world_size=3)).local_slice(n) for r in range(3)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
        assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1
    x, y = torch.arange(5).view(5, 1), torch.arange(5)
    weights = []
    for r in range(2):
        _, yb, k, w = DataParallel(World(rank=r, world_size=2)).local_batch(x, y)
        weights.append(w)
        assert k == len(yb) == (3 if r == 0 else 2)
    assert sum(weights) / 2 == pytest.approx(1.0)  # DDP's mean of weighted means == global mean
    _, yb, k, w = DataParallel(World(rank=1, world_size=2)).local_batch(x[:1], y[:1])
    assert (len(yb), k, w) == (1, 0, 0.0)  # empty slice: a weight-0 sample keeps DDP in step


def _launch(out, batch, *extra):
    out.mkdir(parents=True, exist_ok=True)
    res = torchrun(2, str(HERE / "ddp_worker.py"), str(out), str(batch), *extra)
    return res


@pytest.fixture(scope="module")
def two_proc(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    res = _launch(out, 3)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_processes_follow_one_process_with_the_doubled_batch(two_proc):
    torch.set_num_threads(1)
    train, val = toy_data()
    cfg = toy_config(6)
    model = toy_model(cfg)
    ref = fit(model, train, val, cfg, None, progress=False).history
    runs = [json.loads((two_proc / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in runs] == [2, 2]
    # reduced metrics agree on every rank (wall time aside)
    assert [{k: e[k] for k in KEYS} for e in runs[0]["history"]] == [{k: e[k] for k in KEYS} for e in runs[1]["history"]]
    got = runs[0]["history"]
    assert len(got) == len(ref) == cfg.epochs
    for a, b in zip(ref, got, strict=True):
        for k in KEYS:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (a["epoch"], k)
    assert got[-1]["train_loss"] < got[0]["train_loss"] / 5  # it did learn
    w0, w1 = (torch.load(two_proc / f"rank{r}.pt") for r in range(2))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # DDP kept the replicas identical
    for k, v in model.state_dict().items():
        torch.testing.assert_close(w0[k], v, rtol=1e-4, atol=1e-5)
    # only rank 0 wrote TensorBoard and the checkpoint
    assert len(list((two_proc / "run" / "tb").glob("events.*"))) == 1
    assert (two_proc / "run" / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_killed_ddp_run_resumes_to_the_same_result(two_proc, tmp_path):
    out = tmp_path / "ddp"
    res = _launch(out, 3, "1")  # every rank exits after epoch 2's checkpoint
    assert res.returncode != 0 and not list(out.glob("rank*.json"))
    res = _launch(out, 3)
    assert res.returncode == 0, res.stderr[-3000:]
    done = json.loads((out / "rank0.json").read_text())
    assert done["resumed"] == 2
    want = json.loads((two_proc / "rank0.json").read_text())["history"]
    for a, b in zip(want, done["history"], strict=True):
        for k in KEYS:
            assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), (a["epoch"], k)
    w, w_ref = torch.load(out / "rank0.pt"), torch.load(two_proc / "rank0.pt")
    assert all(torch.equal(w[k], w_ref[k]) for k in w)


@pytest.mark.slow
def test_synthmix_train_under_torchrun_matches_one_process(tmp_path):
    """``torchrun -m synthmix train CONFIG`` (2 x batch 4) == ``train_run`` (1 x batch 8): same loss
    curve and test metrics; rank 0 alone wrote results, weights and evaluation."""
    import yaml

    from conftest import make_imagefolder
    from synthmix.training.train import TrainRunConfig, train_run

    root = make_imagefolder(tmp_path / "ds")
    cfgs = {b: {"folder": str(root), "val_fraction": 0.25, "gradcam": False,
                "train": {"model": "tiny_cnn", "input_size": 32, "epochs": 3, "batch_size": b, "device": "cpu",
                          "lr": 0.01, "seed": 1}} for b in (4, 8)}
    (tmp_path / "b4.yaml").write_text(yaml.safe_dump(cfgs[4]))
    proc = torchrun_start(2, "-m", "synthmix", "train", str(tmp_path / "b4.yaml"), "--out", str(tmp_path / "two"),
                          "--no-progress")
    try:  # the one-process reference runs here meanwhile
        torch.set_num_threads(1)
        ref = train_run(TrainRunConfig(**cfgs[8]), tmp_path / "one", progress=False)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    got = json.loads((tmp_path / "two" / "results.json").read_text())
    for a, b in zip(ref["fit"]["history"], got["fit"]["history"], strict=True):
        for k in KEYS:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (a["epoch"], k)
    for k, v in ref["eval"]["test"].items():
        assert got["eval"]["test"][k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    assert (tmp_path / "two" / "checkpoints" / "final.pt").is_file()


class _TwoRankStub:
    """Looks like a 2-process hook to ``fit`` up to its first collective (the resume check comes before)."""

    world_size, rank, is_main = 2, 0, True

    def wrap(self, model):
        return model


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    from synthmix.core.errors import ConfigError

    train, val = toy_data()
    cfg = toy_config(6, epochs=1)
    fit(toy_model(cfg), train, val, cfg, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="written by 1 process.*this run has 2"):
        fit(toy_model(cfg), train, val, cfg, tmp_path, progress=False, dist=_TwoRankStub())
