"""Fréchet distance (FID) and kernel distance (KID) between two feature sets.

Formulas as in torchmetrics / torch-fidelity (Heusel et al. 2017; Bińkowski et al. 2018):

- FID = ||mu_r - mu_f||² + Tr(S_r + S_f - 2 (S_r S_f)^{1/2}), covariances with N - 1, in
  float64 (negative round-off eigenvalues are clipped to 0).
- KID = unbiased MMD² with the polynomial kernel k(x, y) = (x·y / D + 1)³, averaged over
  ``subsets`` random subsets of ``subset_size`` points drawn without replacement from each
  set (torch-fidelity defaults: 100 subsets of 1000); the spread over subsets is returned.

Both numbers depend on the feature space: an FID in a classifier's features is NOT comparable
to an Inception FID (the usual "FID"), nor across classifiers. Small sets bias FID upwards
(a 512-d covariance from 50 images is rank-deficient); KID is unbiased, prefer it per class.
"""

from __future__ import annotations

import numpy as np


def mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [N, D] -> (mean [D], covariance [D, D]) in float64 (N - 1 normalisation; N >= 2)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"FID needs [N, D] features with N >= 2, got shape {x.shape}")
    mu = x.mean(0)
    xc = x - mu
    return mu, (xc.T @ xc) / (len(x) - 1)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet distance between N(mu1 [D], s1 [D, D]) and N(mu2, s2).

    Tr((s1 s2)^{1/2}) = Tr((s1^{1/2} s2 s1^{1/2})^{1/2}): two symmetric eigendecompositions (faster
    and steadier than the general eigenvalues of s1 s2 that torchmetrics takes; same value)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    w, u = np.linalg.eigh((s1 + s1.T) / 2)
    r1 = (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T
    m = r1 @ s2 @ r1
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = np.sqrt(np.clip(ev, 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """real [N, D], fake [M, D] -> FID (>= 0 up to round-off; 0 for identical sets).

    With fewer images than dimensions (a classifier's 4096-d features of a few hundred images) the
    same value is computed in sample space: Tr((S_r S_f)^{1/2}) is the sum of the singular values
    of Xr_c Xf_c^T / sqrt((N - 1)(M - 1)) (centred features), an [N, M] matrix instead of two
    [D, D] eigendecompositions (minutes -> milliseconds at D = 4096)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(len(real), len(fake)) >= real.shape[1]:
        return max(0.0, frechet_distance(*mean_cov(real), *mean_cov(fake)))
    for x in (real, fake):
        mean_cov(x[:2, :1])  # the shape checks of mean_cov (N >= 2), without the [D, D] product
    mu_r, mu_f = real.mean(0), fake.mean(0)
    xr, xf = real - mu_r, fake - mu_f
    n, m = len(real), len(fake)
    tr_sqrt = np.linalg.svd(xr @ xf.T / np.sqrt((n - 1) * (m - 1)), compute_uv=False).sum()
    tr = (xr ** 2).sum() / (n - 1) + (xf ** 2).sum() / (m - 1)
    return max(0.0, float(((mu_r - mu_f) ** 2).sum() + tr - 2.0 * tr_sqrt))


def _kernel_sums(a, b, d: int) -> tuple[float, float]:
    """(sum of all entries, sum of the diagonal) of (a b^T / d + 1)^3, in place, summed in float64."""
    import torch

    k = a @ b.T
    k.div_(d).add_(1.0).pow_(3)
    return float(k.sum(dtype=torch.float64)), float(k.diagonal().sum(dtype=torch.float64))


def _mmd2_unbiased(x, y) -> float:
    """Unbiased MMD² with the cubic polynomial kernel; x, y torch [m, D] (same m).

    The kernel runs in the inputs' dtype; its sums in float64."""
    d, m = x.shape[1], x.shape[0]
    sxx, dxx = _kernel_sums(x, x, d)
    syy, dyy = _kernel_sums(y, y, d)
    sxy, _ = _kernel_sums(x, y, d)
    return ((sxx - dxx) + (syy - dyy)) / (m * (m - 1)) - 2 * sxy / (m * m)


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, dtype: str = "float32") -> dict[str, float]:
    """real [N, D], fake [M, D] -> {kid (mean over subsets), kid_std, subset_size, subsets}.

    ``subset_size`` is clamped to min(N, M) (>= 2). With subset_size = N = M every subset
    is the whole set, so the value equals one unbiased MMD² of the full sets. ``dtype`` is
    that of the kernel matrices (float32: several times faster than float64 on a CPU,
    relative error ~1e-6 of the kernel values; the sums are accumulated in float64).
    """
    import torch

    real, fake = np.asarray(real), np.asarray(fake)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 points per set, got {len(real)} real, {len(fake)} fake")
    rt = torch.as_tensor(real, dtype=getattr(torch, dtype))
    ft = torch.as_tensor(fake, dtype=getattr(torch, dtype))
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        ir = torch.randperm(len(real), generator=g)[:m]
        jf = torch.randperm(len(fake), generator=g)[:m]
        vals.append(_mmd2_unbiased(rt[ir], ft[jf]))
    v = np.array(vals)
    return {"kid": float(v.mean()), "kid_std": float(v.std()), "subset_size": m, "subsets": subsets}
