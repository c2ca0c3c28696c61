"""Outlier Exposure and energy-margin losses against naive per-sample loops and pytorch-ood."""

from __future__ import annotations

import math

import pytest
import torch

from synthmix.training.losses import energy_margin_loss, oe_loss


def _naive_oe(z, weight):
    total = 0.0
    for row in z.tolist():
        c = len(row)
        p = [math.exp(v) / sum(math.exp(u) for u in row) for v in row]
        total += -sum((1 / c) * math.log(pc) for pc in p)  # CE(uniform, softmax)
    return weight * total / len(z)


def _naive_energy(z_in, z_out, m_in, m_out, weight):
    def e(row):
        return -math.log(sum(math.exp(v) for v in row))

    a = sum(max(0.0, e(r) - m_in) ** 2 for r in z_in.tolist()) / len(z_in)
    b = sum(max(0.0, m_out - e(r)) ** 2 for r in z_out.tolist()) / len(z_out)
    return weight * (a + b)


@pytest.mark.parametrize("m,c,weight", [(1, 2, 0.5), (7, 3, 0.5), (5, 10, 1.3)])
def test_oe_loss_matches_naive_loop(m, c, weight):
    z = torch.randn(m, c, generator=torch.Generator().manual_seed(m * c), dtype=torch.float64) * 4
    assert oe_loss(z, weight).item() == pytest.approx(_naive_oe(z, weight), rel=1e-6)


def test_oe_loss_is_smallest_for_uniform_softmax_and_matches_pytorch_ood():
    from pytorch_ood.loss import OutlierExposureLoss

    # CE(uniform, p) = log C + KL(U || p): log C exactly when the softmax is uniform
    assert oe_loss(torch.full((4, 5), 3.0), 1.0).item() == pytest.approx(math.log(5), rel=1e-6)
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert oe_loss(z, 1.0).item() > math.log(4) + 1e-3
    # pytorch-ood: mean over the batch of CE(ID) + alpha * OE(outlier); with only outliers
    # (targets -1) the CE part is 0, so its mean equals ours.
    ref = OutlierExposureLoss(alpha=0.5)(z, torch.full((6,), -1))
    assert oe_loss(z, 0.5).item() == pytest.approx(ref.item(), rel=1e-6)


def test_oe_loss_gradient_flattens_the_softmax():
    z = torch.tensor([[4.0, 0.0, -1.0]], requires_grad=True)
    oe_loss(z).backward()
    assert z.grad[0, 0] > 0 and z.grad[0, 2] < 0  # a step against the gradient lowers the top logit


@pytest.mark.parametrize("m_in,m_out,weight", [(-25.0, -7.0, 0.1), (-3.0, -1.0, 1.0), (-12.0, -4.0, 0.1)])
def test_energy_margin_matches_naive_loop(m_in, m_out, weight):
    g = torch.Generator().manual_seed(3)
    z_in = torch.randn(9, 3, generator=g, dtype=torch.float64) * 5
    z_out = torch.randn(4, 3, generator=g, dtype=torch.float64) * 5
    got = energy_margin_loss(z_in, z_out, m_in, m_out, weight).item()
    assert got == pytest.approx(_naive_energy(z_in, z_out, m_in, m_out, weight), rel=1e-6)


def test_energy_margin_matches_pytorch_ood_regulariser():
    from pytorch_ood.loss import EnergyRegularizedLoss

    g = torch.Generator().manual_seed(4)
    z_in, z_out = torch.randn(8, 5, generator=g) * 6, torch.randn(5, 5, generator=g) * 6
    y = torch.randint(0, 5, (8,), generator=g)
    full = EnergyRegularizedLoss(alpha=0.1, margin_in=-3.0, margin_out=-1.0)(
        torch.cat([z_in, z_out]), torch.cat([y, torch.full((5,), -1)]))
    ce = torch.nn.functional.cross_entropy(z_in, y)
    assert energy_margin_loss(z_in, z_out, -3.0, -1.0, 0.1).item() == pytest.approx((full - ce).item(), rel=1e-5)


def test_energy_margin_zero_when_margins_hold_and_rejects_bad_input():
    z_in = torch.tensor([[30.0, 0.0]])  # E ~ -30 < m_in
    z_out = torch.tensor([[-10.0, -10.0]])  # E ~ 9.3 > m_out
    assert energy_margin_loss(z_in, z_out).item() == 0.0
    with pytest.raises(ValueError, match="m_in < m_out"):
        energy_margin_loss(z_in, z_out, m_in=-1.0, m_out=-2.0)
    with pytest.raises(ValueError, match="logits_out"):
        energy_margin_loss(z_in, torch.zeros(0, 2))
    with pytest.raises(ValueError, match="M >= 1"):
        oe_loss(torch.zeros(0, 3))
