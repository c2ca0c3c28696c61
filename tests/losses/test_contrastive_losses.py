"""Each loss equals a naive Python-loop version (to 1e-5), incl. class 0 and anchors without positives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from synthmix.training.losses import nt_xent_loss, supcon_hard_negative_loss, supcon_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive(z, labels, is_neg, parent, t, hard_weight=1.0):
    """Loop version of SupCon with negatives-only rows (is_neg) and hard-negative weights."""
    z = F.normalize(z.double(), dim=1)
    n = len(z)
    losses = []
    for i in range(n):
        if is_neg[i]:
            continue
        pos = [j for j in range(n) if j != i and not is_neg[j] and labels[j] == labels[i]]
        if not pos:
            continue
        denom = 0.0
        for a in range(n):
            if a == i:
                continue
            w = hard_weight if (is_neg[a] and parent[a] == labels[i]) else 1.0
            denom += w * math.exp(float(z[i] @ z[a]) / t)
        li = 0.0
        for p in pos:
            li += -math.log(math.exp(float(z[i] @ z[p]) / t) / denom)
        losses.append(li / len(pos))
    return sum(losses) / len(losses) if losses else 0.0


def _naive_ntxent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        p = (i + n) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[p]) / t) / denom)
    return total / n2


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("t", [0.07, 0.5])
def test_supcon_matches_naive_incl_class0_and_lonely_anchor(seed, t):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(9, 5, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])  # class 3: one anchor, no positive
    got = supcon_loss(z, labels, temperature=t)
    want = _naive(z, labels.tolist(), [False] * 9, labels.tolist(), t)
    assert got.item() == pytest.approx(want, abs=1e-5)
    assert torch.isfinite(got)


def test_supcon_anchor_never_its_own_positive():
    # Two identical rows with different labels and one pair: if the anchor counted itself, the
    # loss of a lone anchor would be finite and nonzero; here only the pair contributes.
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    got = supcon_loss(z, labels, temperature=1.0)
    # anchor 0: pos {1}, denom {1, 2}: -log(e / (e + 1)); same for anchor 1; anchor 2 dropped
    want = -math.log(math.e / (math.e + 1.0))
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_supcon_no_positive_anywhere_is_zero_not_nan():
    z = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("hard_weight", [1.0, 3.0])
def test_hard_negative_matches_naive(hard_weight):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(10, 6, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0, 5, 2, 0])  # labels of negative rows ignored
    is_neg = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    parent = torch.tensor([0, 0, 1, 1, 1, 2, 0, 1, 2, 2])
    got = supcon_hard_negative_loss(z, labels, is_neg, parent, temperature=0.2, hard_weight=hard_weight)
    want = _naive(z, labels.tolist(), is_neg.tolist(), parent.tolist(), 0.2, hard_weight)
    assert got.item() == pytest.approx(want, abs=1e-5)


def test_negatives_are_not_positives_even_with_equal_label():
    # Row 2 is a near-OOD child of class 0 carrying label 0: it must not pull anchors of class 0.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    is_neg = torch.tensor([False, False, True])
    got = supcon_hard_negative_loss(z, labels, is_neg, labels, temperature=1.0)
    want = _naive(z, [0, 0, 0], [False, False, True], [0, 0, 0], 1.0)
    assert got.item() == pytest.approx(want, abs=1e-6)
    # and it is in the denominator: removing it changes the loss
    without = supcon_loss(z[:2], labels[:2], temperature=1.0)
    assert abs(got.item() - without.item()) > 1e-3


def test_hard_negatives_push_parent_class_apart():
    # Gradient on the near-OOD row points away from its parent class anchors.
    z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [-1.0, 0.3], [-0.9, 0.2]], requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1])
    is_neg = torch.tensor([False, False, True, False, False])
    loss = supcon_hard_negative_loss(z, labels, is_neg, labels, temperature=0.1)
    loss.backward()
    # descent step moves row 2 away from the class-0 direction (1, 0)
    step = -z.grad[2]
    assert step[0] < 0


def test_queue_keys_match_naive_on_concatenation():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 4, generator=g)
    qz = torch.randn(5, 4, generator=g)
    lab = torch.tensor([0, 1, 2, 0, 1, 2])
    qlab = torch.tensor([0, 0, 1, 2, 1])
    qneg = torch.tensor([False, True, False, False, False])
    qpar = torch.tensor([0, 2, 1, 2, 1])
    got = supcon_hard_negative_loss(z, lab, torch.zeros(6, dtype=torch.bool), lab, 0.3, 2.0,
                                    queue_z=qz, queue_labels=qlab, queue_is_negative=qneg,
                                    queue_parent_label=qpar)
    # naive over the concatenation, with queue rows made non-anchors
    zz = F.normalize(torch.cat([z, qz]).double(), dim=1)
    alll, allneg, allpar = lab.tolist() + qlab.tolist(), [False] * 6 + qneg.tolist(), lab.tolist() + qpar.tolist()
    losses = []
    for i in range(6):
        pos = [j for j in range(11) if j != i and not allneg[j] and alll[j] == alll[i]]
        if not pos:
            continue
        den = sum((2.0 if allneg[a] and allpar[a] == alll[i] else 1.0) * math.exp(float(zz[i] @ zz[a]) / 0.3)
                  for a in range(11) if a != i)
        losses.append(sum(-math.log(math.exp(float(zz[i] @ zz[p]) / 0.3) / den) for p in pos) / len(pos))
    assert got.item() == pytest.approx(sum(losses) / len(losses), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_nt_xent_matches_naive(seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    got = nt_xent_loss(z1, z2, temperature=0.5)
    assert got.item() == pytest.approx(_naive_ntxent(z1, z2, 0.5), abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_small_temperature_are_stable(dtype):
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    ref = supcon_loss(z, labels, temperature=0.01)
    low = supcon_loss(z.to(dtype), labels, temperature=0.01)
    assert torch.isfinite(low) and low.dtype == torch.float32
    assert low.item() == pytest.approx(ref.item(), rel=0.05)
    assert torch.isfinite(nt_xent_loss(z[:4].to(dtype), z[4:].to(dtype), temperature=0.01))


def test_bad_shapes_and_temperature_raise():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="labels"):
        supcon_hard_negative_loss(z, torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.bool),
                                  torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(z, torch.tensor([0, 0, 1, 1]), temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent_loss(z, torch.randn(3, 3))
