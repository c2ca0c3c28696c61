"""Outlier synthesis in conditioning space (VOS / Dream-OOD style) for the embedded generator.

VOS (Du et al., ICLR 2022) samples low-likelihood points of class-conditional feature Gaussians;
Dream-OOD (Du et al., NeurIPS 2023) does it in the text-embedding space of a diffusion model and
decodes the points into images. Here the conditioning space is the embedded generator's class
embedding table ``E`` [C + 1, D] (row C = the null class), and a near-OOD condition for class c is

    z = e_c + radius * s_c * u,   u ~ uniform on the unit sphere of R^D (seeded per row),

with ``s_c`` the distance from ``e_c`` to the nearest other class embedding. Under the isotropic
Gaussian N(e_c, (s_c^2 / D) I) that puts the nearest other class at Mahalanobis distance sqrt(D),
``z`` sits at Mahalanobis distance ``radius * sqrt(D)``: ``radius`` ~ 0.3-0.6 leaves the class but
stays closer to it than to any other class (a *near* outlier); ``radius`` >= 1 is as far from the
class as the next class is. The row records the radius, the distance to every class embedding and
the nearest class (``parent_label``).

:class:`EmbeddingConditioned` lets :func:`~synthmix.generation.embedded.diffusion.denoise` run on
such free embeddings without changing it: each row's condition is an int index into a per-batch
table ``[z_0 .. z_{N-1}, e_null]`` (index N = the null class for guidance).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from synthmix.core.seeding import derive_seed


def class_scales(table: torch.Tensor, num_classes: int) -> torch.Tensor:
    """s_c: distance from each class embedding to the nearest other one (to the null embedding when
    there is one class). table [C + 1, D] -> [C]."""
    e = table[:num_classes].float()
    if num_classes == 1:
        return (e[0] - table[num_classes].float()).norm().reshape(1)
    d = torch.cdist(e, e)
    d.fill_diagonal_(float("inf"))
    return d.min(dim=1).values


def vos_embeddings(table: torch.Tensor, num_classes: int, labels: Sequence[int], radii: Sequence[float],
                   seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Near-OOD conditions ``z`` [N, D] (see the module docstring) and their distances [N, C] to every
    class embedding. labels: class index per row; radii: radius per row (>= 0); seeds: the rows'
    seeds (the direction uses ``derive_seed(seed, "vos")``, independent of the noise stream)."""
    if not (len(labels) == len(radii) == len(seeds)):
        raise ValueError("vos_embeddings: labels, radii and seeds must have the same length")
    e = table.detach().float().cpu()
    scales = class_scales(e, num_classes)
    out = []
    for c, r, s in zip(labels, radii, seeds, strict=True):
        if r < 0:
            raise ValueError(f"vos_embeddings: radius must be >= 0, got {r}")
        g = torch.Generator().manual_seed(derive_seed(int(s), "vos"))
        u = torch.randn(e.shape[1], generator=g)
        out.append(e[int(c)] + float(r) * scales[int(c)] * u / u.norm())
    z = torch.stack(out) if out else torch.zeros(0, e.shape[1])
    return z, torch.cdist(z, e[:num_classes])


class EmbeddingConditioned(nn.Module):
    """A :class:`~synthmix.generation.embedded.unet.ClassConditionalUNet` conditioned on free
    embeddings z [N, D]: int condition i < N selects z_i, N the model's null embedding."""

    def __init__(self, model: nn.Module, z: torch.Tensor):
        super().__init__()
        self.inner = model
        null = model.class_embed.weight[model.num_classes].detach()
        self.register_buffer("table", torch.cat([z.to(null), null[None]]), persistent=False)
        self.num_classes = z.shape[0]  # so denoise's null label (num_classes) selects the null row

    @property
    def unet(self):
        return self.inner.unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.inner.unet(x, t, class_labels=self.table[cond]).sample
