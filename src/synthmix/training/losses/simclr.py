"""SimCLR's NT-Xent loss (Chen et al. 2020): each view's positive is the other view of its image."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised-temperature cross entropy over 2N views.

    z1, z2: [N, D] embeddings of two views of the same N images (row i of z1 and z2 is one
    image; L2-normalised here again; computed in fp32). Returns a scalar: the mean over all
    2N anchors of -log( exp(s(i, i')/T) / sum_{k != i} exp(s(i, k)/T) ).
    """
    import torch
    import torch.nn.functional as F

    from synthmix.training.losses.supcon import contrastive_from_masks

    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2N, D]
    idx = torch.arange(2 * n, device=z.device)
    partner = (idx + n) % (2 * n)
    pos = torch.zeros(2 * n, 2 * n, dtype=torch.bool, device=z.device)
    pos[idx, partner] = True
    not_self = ~torch.eye(2 * n, dtype=torch.bool, device=z.device)
    return contrastive_from_masks(z, z, pos, not_self, temperature)
