"""Sampler guarantees, views, memory queue, and contrastive training + resume on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from synthmix.training.contrastive import ContrastiveConfig, ContrastiveData, train_contrastive
from synthmix.training.memory_queue import MemoryQueue
from synthmix.training.samplers import ClassBalancedBatchSampler
from synthmix.training.views import STRONG_VIEWS, two_views

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sampler_every_anchor_has_a_positive_and_class0_works():
    labels = [0] * 5 + [1] * 3 + [2] * 7
    s = ClassBalancedBatchSampler(labels, m_per_class=2, classes_per_batch=2, num_batches=20, seed=1)
    for batch in s:
        counts = {}
        for i in batch:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
        assert len(counts) == 2 and all(c >= 2 for c in counts.values())
        assert len(set(batch)) == len(batch)


def test_sampler_keeps_families_together_and_negatives_are_not_anchors():
    # rows 0-3 real of class 0 and 1; rows 4,5 children of row 0 (5 is near-OOD, batched with class 0)
    labels = [0, 0, 1, 1, 0, 0]
    neg = [False, False, False, False, False, True]
    fam = ["a", "b", "c", "d", "a", "a"]
    s = ClassBalancedBatchSampler(labels, m_per_class=2, num_batches=10, seed=0, is_negative=neg, family=fam)
    for batch in s:
        assert (0 in batch) == (4 in batch) == (5 in batch)
        anchors0 = sum(1 for i in batch if labels[i] == 0 and not neg[i])
        assert anchors0 >= 2


def test_sampler_deterministic_per_epoch_and_rejects_lonely_class():
    s = ClassBalancedBatchSampler([0] * 10 + [1] * 10, m_per_class=2, num_batches=3, seed=5)
    a = list(s)
    assert a == list(s)
    s.set_epoch(1)
    assert list(s) != a  # a new epoch draws new batches
    with pytest.raises(ValueError, match=r"\[1\]"):
        ClassBalancedBatchSampler([0, 0, 1], m_per_class=2)


def test_two_views_differ_and_are_reproducible():
    x = (torch.rand(4, 3, 16, 16) * 255).to(torch.uint8)
    v1, v2 = two_views(x, torch.Generator().manual_seed(0))
    w1, w2 = two_views(x, torch.Generator().manual_seed(0))
    assert v1.shape == x.shape and v1.dtype == torch.float32
    assert torch.equal(v1, w1) and torch.equal(v2, w2) and not torch.equal(v1, v2)
    assert STRONG_VIEWS.has_geometry()


def test_memory_queue_fifo():
    q = MemoryQueue(size=3, dim=2)
    q.enqueue(torch.ones(2, 2), torch.tensor([0, 1]), torch.tensor([False, True]), torch.tensor([0, 0]))
    assert len(q) == 2
    q.enqueue(torch.full((2, 2), 2.0), torch.tensor([2, 3]), torch.tensor([False, False]), torch.tensor([2, 3]))
    k = q.keys()
    assert len(q) == 3 and k["queue_z"].shape == (3, 2)
    assert sorted(k["queue_labels"].tolist()) == [1, 2, 3]  # the oldest (label 0) was overwritten


def _data(n_per=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c, col in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        base = torch.tensor(col, dtype=torch.float32).view(1, 3, 1, 1)
        xs.append((base + 30 * torch.randn(n_per, 3, size, size, generator=g)).clamp(0, 255).to(torch.uint8))
        ys += [c] * n_per
    x = torch.cat(xs)
    y = torch.tensor(ys)
    neg = torch.zeros(len(y), dtype=torch.bool)
    neg[[0, n_per]] = True  # one near-OOD row each of class 0 and 1
    return ContrastiveData(x, y, neg, y.clone(), family=None), x[~neg], y[~neg]


def _cfg(**kw):
    base = dict(model="tiny_cnn", input_size=16, epochs=2, m_per_class=3, probe_epochs=2, proj_dim=8,
                proj_hidden=16, queue_size=16, batches_per_epoch=2)
    base.update(kw)
    return ContrastiveConfig(**base)


def test_train_contrastive_runs_and_resumes_to_same_weights(tmp_path):
    data, px, py = _data()
    full = train_contrastive(data, px, py, 3, _cfg())
    assert [h["stage"] for h in full.history] == ["pretrain"] * 2 + ["probe"] * 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in full.history)
    # interrupted after the pretraining stage: a first call with fewer probe epochs is not a
    # resume (config differs), so simulate the kill by copying the checkpoint mid-way instead
    ck = tmp_path / "ck.pt"
    cfg = _cfg()
    train_contrastive(data, px, py, 3, cfg, checkpoint=ck)
    st = torch.load(ck, weights_only=True)
    assert st["stage"] == "probe" and st["epoch"] == 2
    resumed = train_contrastive(data, px, py, 3, cfg, checkpoint=ck)  # nothing left: loads weights
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_from_mid_pretraining_matches(tmp_path):
    data, px, py = _data()
    ck = tmp_path / "ck.pt"
    full = train_contrastive(data, px, py, 3, _cfg(probe="finetune"))
    # run 1 epoch only by stopping after the first checkpoint write
    from synthmix.training import contrastive as mod

    real = mod.pretrain_epoch
    calls = {"n": 0}

    def once(*a, **k):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    mod.pretrain_epoch = once
    try:
        with pytest.raises(KeyboardInterrupt):
            train_contrastive(data, px, py, 3, _cfg(probe="finetune"), checkpoint=ck)
    finally:
        mod.pretrain_epoch = real
    resumed = train_contrastive(data, px, py, 3, _cfg(probe="finetune"), checkpoint=ck)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_resume_with_other_config_refused(tmp_path):
    from synthmix.core.errors import ConfigError

    data, px, py = _data()
    ck = tmp_path / "ck.pt"
    train_contrastive(data, px, py, 3, _cfg(epochs=1, probe_epochs=0), checkpoint=ck)
    with pytest.raises(ConfigError, match="different config"):
        train_contrastive(data, px, py, 3, _cfg(epochs=1, probe_epochs=0, temperature=0.5), checkpoint=ck)


def test_simclr_mode_runs():
    data, px, py = _data()
    res = train_contrastive(data, px, py, 3, _cfg(loss="simclr", queue_size=0, probe_epochs=1))
    assert res.history[0]["loss"] > 0
