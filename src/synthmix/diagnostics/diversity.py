"""Diversity of a set: mean pairwise distance between its feature vectors.

A generator that repeats a few modes has a lower mean pairwise distance than the real
images of the same class; ``ratio`` = synthetic / real (1 = as varied as the real images).
"""

from __future__ import annotations

import numpy as np


def mean_pairwise_distance(x: np.ndarray, block: int = 1024, dtype: str = "float32") -> float:
    """x [N, D] -> mean Euclidean distance over the N (N - 1) ordered pairs i != j (NaN if N < 2).

    Blocks of distances in ``dtype`` (float32 is several times faster on a CPU), summed in float64."""
    import torch

    n = len(x)
    if n < 2:
        return float("nan")
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=getattr(torch, dtype))
    x2 = (xt * xt).sum(1)
    total = 0.0
    for s in range(0, n, block):
        d2 = (x2[s:s + block, None] + x2[None, :] - 2.0 * (xt[s:s + block] @ xt.T)).clamp_min_(0.0)
        idx = torch.arange(s, min(s + block, n))
        d2[idx - s, idx] = 0.0  # exact zeros on the diagonal (round-off would add sqrt(eps))
        total += float(d2.sqrt_().sum(dtype=torch.float64))
    return total / (n * (n - 1))


def diversity(real: np.ndarray, fake: np.ndarray, block: int = 1024) -> dict[str, float]:
    """real [N, D], fake [M, D] -> {diversity_real, diversity_synthetic, diversity_ratio}."""
    dr = mean_pairwise_distance(real, block)
    df = mean_pairwise_distance(fake, block)
    ratio = df / dr if dr == dr and dr > 0 else float("nan")
    return {"diversity_real": dr, "diversity_synthetic": df, "diversity_ratio": ratio}
