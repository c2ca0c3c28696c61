"""Losses that train on outlier images next to the in-distribution batch (pure functions).

* :func:`oe_loss` — Outlier Exposure (Hendrycks et al., ICLR 2019): cross-entropy from the
  softmax of each outlier to the uniform distribution, ``logsumexp(z) - mean(z)`` per outlier
  (the form of the authors' code and of pytorch-ood's ``OutlierExposureLoss``).
* :func:`energy_margin_loss` — energy-bounded learning (Liu et al., NeurIPS 2020): squared
  hinges that push the free energy ``E(x) = -logsumexp(z)`` of ID samples below ``m_in`` and of
  outliers above ``m_out``.

Both return only the regulariser (already multiplied by ``weight``); the caller adds it to the
cross-entropy of the ID batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Defaults. OE: lambda = 0.5 as in the paper. Energy: lambda = 0.1 and the CIFAR margins of the
# paper's code (m_in = -25, m_out = -7). Those margins assume 10-100 classes and large logits: the
# 3-class small CNN lost 32-35 points of accuracy with them, 2-4 with ENERGY_MARGINS_SMALL
# (docs/bench/ood.md; docs/ood.md says how to pick margins for a model).
OE_WEIGHT = 0.5
ENERGY_WEIGHT = 0.1
ENERGY_MARGINS_CIFAR = (-25.0, -7.0)
ENERGY_MARGINS_SMALL = (-4.0, -1.0)


def oe_loss(logits_out: torch.Tensor, weight: float = OE_WEIGHT) -> torch.Tensor:
    """Outlier Exposure term.

    logits_out: [M, C] logits of M outlier images (M >= 1). Returns the scalar
    ``weight * mean_m( logsumexp_c(z_mc) - mean_c(z_mc) )``, which is the cross-entropy
    ``-sum_c (1/C) log softmax(z_m)_c`` averaged over the outliers: ``weight * (log C + KL(U || p))``,
    smallest (``weight * log C``) when every softmax is uniform. Computed in fp32.
    """
    import torch

    if logits_out.ndim != 2 or logits_out.shape[0] == 0:
        raise ValueError(f"oe_loss: logits_out must be [M, C] with M >= 1, got {tuple(logits_out.shape)}")
    z = logits_out.float()
    return weight * (torch.logsumexp(z, dim=1) - z.mean(dim=1)).mean()


def energy(logits: torch.Tensor) -> torch.Tensor:
    """Free energy E = -logsumexp(logits). logits [N, C] -> [N] (fp32); lower = more ID."""
    import torch

    return -torch.logsumexp(logits.float(), dim=1)


def energy_margin_loss(logits_in: torch.Tensor, logits_out: torch.Tensor,
                       m_in: float = ENERGY_MARGINS_CIFAR[0], m_out: float = ENERGY_MARGINS_CIFAR[1],
                       weight: float = ENERGY_WEIGHT) -> torch.Tensor:
    """Energy-bounded margin term.

    logits_in: [N, C] logits of the ID batch; logits_out: [M, C] of the outliers (N, M >= 1);
    m_in < m_out are energy margins. Returns the scalar
    ``weight * ( mean_n relu(E_n - m_in)^2 + mean_m relu(m_out - E_m)^2 )`` with
    ``E = -logsumexp(logits)`` (each part averaged over its own samples, as in the paper).
    """
    import torch

    for name, z in (("logits_in", logits_in), ("logits_out", logits_out)):
        if z.ndim != 2 or z.shape[0] == 0:
            raise ValueError(f"energy_margin_loss: {name} must be [N, C] with N >= 1, got {tuple(z.shape)}")
    if not m_in < m_out:
        raise ValueError(f"energy_margin_loss: need m_in < m_out, got m_in={m_in}, m_out={m_out}")
    e_in, e_out = energy(logits_in), energy(logits_out)
    return weight * (torch.relu(e_in - m_in).pow(2).mean() + torch.relu(m_out - e_out).pow(2).mean())
