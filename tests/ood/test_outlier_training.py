"""Training with outliers: the loop (OE / energy, exact resume), cheap corrupted outliers, and the
``outliers:`` section of a training run."""

from __future__ import annotations

import pytest
import torch

from synthmix.core.errors import ConfigError
from synthmix.models import create_model
from synthmix.training.config import TrainConfig
from synthmix.training.loop import fit
from synthmix.training.outliers import OutlierConfig, OutlierLossConfig, corrupt_images


def _data(n=30, size=16, seed=0):
    """Two classes of flat colours (red / blue) with pixel noise; outliers are flat random colours
    (as noisy): near-OOD for this task, where a plain model is confident on many of them."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    base = torch.tensor([[200, 30, 30], [30, 30, 200]], dtype=torch.float)[y][:, :, None, None]
    x = (base + 20 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 255).to(torch.uint8)
    colours = torch.rand(n, 3, 1, 1, generator=g) * 255
    out = (colours + 20 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 255).to(torch.uint8)
    return x, y, out


def _cfg(**kw):
    base = dict(model="tiny_cnn", input_size=16, epochs=3, batch_size=6, lr=0.01, seed=5, device="cpu",
                augment={"hflip": 0.5, "brightness": 0.2}, model_kwargs={"dropout": 0.2})
    base.update(kw)
    return TrainConfig(**base)


def _model(cfg):
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, 2, **cfg.model_args())


def _scores(model, x):
    """(MSP [N], energy score logsumexp [N]) as numpy."""
    from synthmix.data.augment import normalize, to_float

    model.eval()
    with torch.no_grad():
        z = model(normalize(to_float(x), "imagenet"))
    return z.softmax(1).max(1).values.numpy(), z.logsumexp(1).numpy()


def _auroc(model, x_id, x_ood, which):
    from synthmix.evaluation.ood.metrics import ood_metrics

    return ood_metrics(_scores(model, x_id)[which], _scores(model, x_ood)[which])["auroc"]


@pytest.fixture(scope="module")
def plain_and_sets():
    x, y, out = _data()
    cfg = _cfg(epochs=6)
    plain = _model(cfg)
    fit(plain, (x, y), None, cfg, progress=False)
    x_test = _data(seed=1)[0]
    held_out = _data(n=200, seed=2)[2]  # outliers never trained on
    return (x, y, out), cfg, plain, x_test, held_out


def test_oe_flattens_the_softmax_of_outliers(plain_and_sets):
    (x, y, out), cfg, plain, x_test, held_out = plain_and_sets
    oe = _model(cfg)
    fit(oe, (x, y), None, cfg, progress=False, outliers=out, outlier_loss=OutlierLossConfig(loss="oe", weight=1.0))
    assert _scores(oe, held_out)[0].mean() < _scores(plain, held_out)[0].mean() - 0.1
    assert _scores(oe, x_test)[0].mean() > 0.85  # ID stays confident (two classes: 0.5 is uniform)
    assert _auroc(oe, x_test, held_out, 0) > _auroc(plain, x_test, held_out, 0) + 0.02


def test_energy_margin_separates_energies(plain_and_sets):
    (x, y, out), cfg, plain, x_test, held_out = plain_and_sets
    en = _model(cfg)
    fit(en, (x, y), None, cfg, progress=False, outliers=out,
        outlier_loss=OutlierLossConfig(loss="energy", weight=0.5, m_in=-6.0, m_out=-2.0))
    assert _auroc(en, x_test, held_out, 1) > _auroc(plain, x_test, held_out, 1) + 0.01
    # the held-out outliers' energies moved towards m_out (energy = -logsumexp)
    assert -_scores(en, held_out)[1].mean() > -_scores(plain, held_out)[1].mean() + 0.5


class Killed(Exception):
    pass


def test_resume_with_outliers_is_exact_and_config_change_is_refused(tmp_path):
    from synthmix.training.checkpoint import load_checkpoint

    x, y, out = _data()
    cfg = _cfg(epochs=3)
    ol = OutlierLossConfig(loss="oe", batch_ratio=0.5)
    full = _model(cfg)
    ref = fit(full, (x, y), (x, y), cfg, tmp_path / "full", progress=False, outliers=out, outlier_loss=ol)

    def kill(epoch, record):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        fit(_model(cfg), (x, y), (x, y), cfg, tmp_path / "cut", progress=False, on_epoch_end=kill,
            outliers=out, outlier_loss=ol)
    assert "outliers" in load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["rng"]
    resumed = _model(cfg)
    res = fit(resumed, (x, y), (x, y), cfg, tmp_path / "cut", progress=False, outliers=out, outlier_loss=ol)
    assert res.resumed_from_epoch == 1
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values(),
                                                 strict=True))
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref.history]
    with pytest.raises(ConfigError, match="different training config"):
        fit(_model(cfg), (x, y), None, cfg, tmp_path / "cut", progress=False, outliers=out,
            outlier_loss=OutlierLossConfig(loss="energy", m_in=-5, m_out=-1))
    with pytest.raises(ConfigError, match="different training config"):
        fit(_model(cfg), (x, y), None, cfg, tmp_path / "cut", progress=False)


def test_outliers_do_not_change_the_id_stream():
    """The outlier generator is separate: ID permutation/augmentation draws are those of the plain run
    (a weight-0 OE run ends with the plain run's weights)."""
    x, y, out = _data()
    cfg = _cfg(epochs=2, model_kwargs={"dropout": 0.0})
    a, b = _model(cfg), _model(cfg)
    fit(a, (x, y), None, cfg, progress=False)
    fit(b, (x, y), None, cfg, progress=False, outliers=out, outlier_loss=OutlierLossConfig(weight=0.0))
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)


def test_bad_outlier_tensor_is_refused():
    from synthmix.core.errors import TrainingError

    x, y, _ = _data()
    with pytest.raises(TrainingError, match="outliers"):
        fit(_model(_cfg()), (x, y), None, _cfg(), progress=False, outliers=torch.zeros(3, 3, 16, 16))
    with pytest.raises(TrainingError, match="outliers: 0 images"):
        fit(_model(_cfg()), (x, y), None, _cfg(), progress=False, outliers=torch.zeros(0, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TrainingError, match="outliers: expected a uint8 tensor"):
        fit(_model(_cfg()), (x, y), None, _cfg(), progress=False, outliers=[1, 2])


# ------------------------------------------------------------------ cheap corrupted outliers

def test_corrupt_images_deterministic_and_each_kind_does_what_it_says():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    a, kinds = corrupt_images(x, y, 10, seed=3)
    b, _ = corrupt_images(x, y, 10, seed=3)
    c, _ = corrupt_images(x, y, 10, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (10, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert kinds == ["jigsaw", "cutmix", "mixup", "blur", "noise"] * 2
    # jigsaw: the same pixels in another order (a permutation of 4x4 patches of one source image)
    jig = a[0]
    src = [i for i in range(6) if torch.equal(jig.flatten().sort().values, x[i].flatten().sort().values)]
    assert len(src) == 1 and not torch.equal(jig, x[src[0]])
    patches = {x[src[0]][:, r:r + 4, c:c + 4].numpy().tobytes() for r in range(0, 16, 4) for c in range(0, 16, 4)}
    assert {jig[:, r:r + 4, c:c + 4].numpy().tobytes() for r in range(0, 16, 4) for c in range(0, 16, 4)} == patches
    # cutmix: every pixel comes from one of two images of different classes
    cut = a[1]
    pairs = [(i, j) for i in range(6) for j in range(6) if y[i] != y[j]
             and bool(((cut == x[i]) | (cut == x[j])).all(0).all())
             and 0.2 < (cut == x[j]).all(0).float().mean() < 0.7]
    assert pairs
    # mixup: between two different-class images, pixelwise
    mix = a[2].int()
    assert any(bool(((mix >= torch.minimum(x[i], x[j]).int() - 1) & (mix <= torch.maximum(x[i], x[j]).int() + 1)).all())
               for i in range(6) for j in range(6) if y[i] != y[j])
    # blur is smooth, noise is not
    def tv(img):
        f = img.float()
        return (f[:, 1:] - f[:, :-1]).abs().mean().item()
    assert tv(a[3]) < 0.5 * min(tv(x[i]) for i in range(6))
    only, names = corrupt_images(x, y, 2, seed=0, kinds=["noise"])
    assert names == ["noise", "noise"]
    with pytest.raises(ValueError, match="unknown kinds"):
        corrupt_images(x, y, 2, seed=0, kinds=["rotate"])


def test_outlier_config_validation():
    with pytest.raises(ValueError, match="needs path"):
        OutlierConfig(source="folder")
    with pytest.raises(ValueError, match="m_in"):
        OutlierConfig(source="corrupted", loss="energy", m_in=-1, m_out=-3)
    assert OutlierConfig(source="corrupted").resolved_weight() == 0.5
    assert OutlierConfig(source="corrupted", loss="energy").resolved_weight() == 0.1
    assert OutlierConfig(source="synthetic_role", loss="energy", weight=0.3).loss_config() == \
        OutlierLossConfig(loss="energy", weight=0.3)


# ------------------------------------------------------------------ the outliers: section of a run

TRAIN = {"model": "tiny_cnn", "input_size": 32, "epochs": 2, "batch_size": 8, "device": "cpu"}


def _near_ood_manifest(root, per_class=4):
    from conftest import make_image
    from synthmix.data.manifest import new_row, write_manifest

    rows = []
    for c in ("apple", "banana", "orange"):
        for i in range(per_class):
            p = root / "img" / f"{c}_{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            make_image((120, 90, 160), size=(36, 36), seed=500 + 7 * i + len(c)).save(p)
            rows.append(new_row(id=f"nood-{c}-{i}", path=f"img/{p.name}", label=c, parent_label=c, split="train",
                                source="embedded", role="near_ood", method="vos", status="ok"))
    write_manifest(root / "manifest.jsonl", rows)
    return root / "manifest.jsonl"


def test_train_run_with_synthetic_role_outliers_records_counts(tiny_folder, tmp_path):
    import json

    from synthmix.core.config import load_config
    from synthmix.training.train import TrainRunConfig, train_run

    nood = _near_ood_manifest(tmp_path / "syn")
    cfg = TrainRunConfig(folder=tiny_folder, val_fraction=0.25, synthetic_manifests=[nood], train=TRAIN,
                         gradcam=False, eval_splits=["test"],
                         outliers={"source": "synthetic_role", "roles": ["near_ood"], "loss": "oe",
                                   "max_images": 10})
    run = tmp_path / "run"
    res = train_run(cfg, run, progress=False)
    assert res["outliers"]["n"] == 10 and res["outliers"]["roles"] == {"near_ood": 10}
    assert res["outliers"]["weight"] == 0.5 and res["outliers"]["loss"] == "oe"
    assert res["selection"]["n_synthetic"] == 0  # outliers are not training rows of the mix
    stored = json.loads((run / "outliers.json").read_text())
    assert len(stored["ids"]) == 10 and all(i.startswith("nood-") for i in stored["ids"])
    assert load_config(TrainRunConfig, run / "config.yaml").outliers.source == "synthetic_role"
    # the role is absent: a clear error, before training
    with pytest.raises(ConfigError, match="outlier set is empty.*role in \\['reject'\\]"):
        train_run(cfg.model_copy(update={"outliers": OutlierConfig(source="synthetic_role", roles=["reject"])}),
                  tmp_path / "run2", progress=False)


def test_train_run_with_corrupted_and_folder_outliers(tiny_folder, tmp_path):
    from conftest import make_image
    from synthmix.training.train import TrainRunConfig, train_run

    base = dict(folder=tiny_folder, val_fraction=0.25, train=TRAIN, gradcam=False, eval_splits=["test"])
    res = train_run(TrainRunConfig(**base, outliers={"source": "corrupted", "loss": "energy", "m_in": -6,
                                                     "m_out": -2}), tmp_path / "cor", progress=False)
    assert res["outliers"]["n"] == 18 and sum(res["outliers"]["kinds"].values()) == 18  # one per real image
    assert res["outliers"]["weight"] == 0.1 and res["fit"]["epochs_run"] == 2
    folder = tmp_path / "ood"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        make_image((10, 200, 10), size=(30, 30), seed=i).save(folder / "sub" / f"{i}.png")
    res = train_run(TrainRunConfig(**base, outliers={"source": "folder", "path": folder}), tmp_path / "fol",
                    progress=False)
    assert res["outliers"]["n"] == 3 and res["outliers"]["source"] == "folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="outlier set is empty"):
        train_run(TrainRunConfig(**base, outliers={"source": "folder", "path": empty}), tmp_path / "e",
                  progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["oe", "energy"])
def test_two_processes_with_outliers_follow_one_process_with_the_doubled_batch(tmp_path, loss):
    """Every rank draws the same global outlier batch and keeps its slice: 2 ranks x batch 3 train like
    1 process x batch 6 (the last, uneven batch included: ID and outlier slices split alike)."""
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent / "distributed"))
    sys.path.insert(0, str(here))
    from ddp_outlier_worker import outliers_and_loss
    from dist_helpers import torchrun, toy_config, toy_data, toy_model

    res = torchrun(2, str(here / "ddp_outlier_worker.py"), str(tmp_path), "3", loss)
    assert res.returncode == 0, res.stderr[-3000:]
    torch.set_num_threads(1)
    train, val = toy_data()
    cfg = toy_config(6)
    model = toy_model(cfg)
    x_out, ol = outliers_and_loss(loss)
    ref = fit(model, train, val, cfg, None, progress=False, outliers=x_out, outlier_loss=ol).history
    import json

    got = json.loads((tmp_path / "rank0.json").read_text())["history"]
    for a, b in zip(ref, got, strict=True):
        for k in ("train_loss", "val_loss", "val_acc"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (a["epoch"], k)
    w0 = torch.load(tmp_path / "rank0.pt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(w0[k], v, rtol=1e-4, atol=1e-5)
