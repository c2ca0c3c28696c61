"""k-NN manifold metrics between real and synthetic feature sets.

precision / recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
assessing generative models") and density / coverage (Naeem et al. 2020, "Reliable fidelity
and diversity metrics for generative models"). Each real point r_i has a ball of radius
``radius_real[i]`` = distance to its k-th nearest *other* real point; likewise for synthetic.

- precision = share of synthetic points inside at least one real ball;
- recall    = share of real points inside at least one synthetic ball;
- density   = (1 / (k M)) * sum over synthetic j of #{real balls containing j};
- coverage  = share of real points whose nearest synthetic point lies inside their ball.

Distances are Euclidean, computed block by block as ||a||² + ||b||² - 2 a·b (a matrix product
per block, ``block`` rows at a time), so 10,000 x 10,000 points never hold an N x M matrix.
The same formula is used for radii and cross distances, so identical sets give precision =
recall = 1 exactly.
"""

from __future__ import annotations

import numpy as np


def _t(x, dtype):
    import torch

    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)


def _sqdist(a, b, a2, b2):
    """Squared distances [n, m] from row blocks a [n, D], b [m, D] and their squared norms."""
    return (a2[:, None] + b2[None, :] - 2.0 * (a @ b.T)).clamp_min_(0.0)


def knn_radii(x: np.ndarray, k: int = 5, block: int = 1024, dtype: str = "float32") -> np.ndarray:
    """x: [N, D] -> [N] distance of each point to its k-th nearest *other* point.

    ``k`` is clamped to N - 1 (a set of N points has N - 1 neighbours); N < 2 is an error.
    """
    import torch

    n = len(x)
    if n < 2:
        raise ValueError(f"k-NN radii need at least 2 points, got {n}")
    k = min(k, n - 1)
    dt = getattr(torch, dtype)
    xt = _t(x, dt)
    x2 = (xt * xt).sum(1)
    out = torch.empty(n, dtype=dt)
    for s in range(0, n, block):
        d = _sqdist(xt[s:s + block], xt, x2[s:s + block], x2)
        # the point itself is at distance ~0: the (k+1)-th smallest is the k-th other point
        out[s:s + block] = d.topk(k + 1, dim=1, largest=False).values[:, -1]  # ~10x faster than kthvalue
    return out.sqrt().numpy()


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, block: int = 1024,
         dtype: str = "float32") -> dict[str, float]:
    """real [N, D], fake [M, D] -> {precision, recall, density, coverage, k, n_real, n_fake}.

    ``k`` (the paper's default: 5 for P/R/D/C) is clamped to each set's size - 1.
    """
    import torch

    real, fake = np.asarray(real), np.asarray(fake)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real {real.shape} and fake {fake.shape} must be [N, D] with the same D")
    n, m = len(real), len(fake)
    r_real = _t(knn_radii(real, k, block, dtype), getattr(torch, dtype))
    r_fake = _t(knn_radii(fake, k, block, dtype), getattr(torch, dtype))
    k_eff = min(k, n - 1)
    dt = getattr(torch, dtype)
    rt, ft = _t(real, dt), _t(fake, dt)
    r2, f2 = (rt * rt).sum(1), (ft * ft).sum(1)
    rr2, rf2 = r_real.square(), r_fake.square()
    in_real_ball = torch.zeros(m, dtype=torch.bool)
    n_real_balls = torch.zeros(m, dtype=torch.float64)
    real_recalled = torch.zeros(n, dtype=torch.bool)
    nearest_fake = torch.full((n,), float("inf"), dtype=dt)
    for s in range(0, m, block):
        d = _sqdist(ft[s:s + block], rt, f2[s:s + block], r2)          # [b, N]
        inside = d <= rr2[None, :]                                     # fake j in real ball i
        in_real_ball[s:s + block] = inside.any(1)
        n_real_balls[s:s + block] = inside.sum(1).double()
        real_recalled |= (d <= rf2[s:s + block, None]).any(0)          # real i in fake ball j
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {
        "precision": float(in_real_ball.double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(n_real_balls.sum() / (k_eff * m)),
        "coverage": float((nearest_fake <= rr2).double().mean()),
        "k": k_eff, "n_real": n, "n_fake": m,
    }
