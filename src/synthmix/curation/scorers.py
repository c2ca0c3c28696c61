"""Per-image curation scores from cached arrays (no model inside: features/logits come in).

- image statistics: blank / black / white / NaN / low-variance detection;
- classifier confidence for the image's intended class;
- cosine distance of its feature to the intended class's centroid of REAL TRAIN features;
- cosine distance to its parent image's feature (img2img children).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def image_stats(x: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """x: [N,3,H,W] uint8 (0-255) or float (0-1). Returns per image [N] arrays: ``mean``,
    ``std`` (pixel std over all channels, 0-1 scale), ``dark_frac`` (pixels with all channels
    < 0.04), ``bright_frac`` (all > 0.96), ``nan_frac`` (non-finite values)."""
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    n = a.shape[0]
    flat = a.reshape(n, -1)
    finite = np.isfinite(flat)
    nan_frac = 1.0 - finite.mean(axis=1)
    clean = np.where(np.isfinite(a), a, 0.0)
    cf = clean.reshape(n, -1)
    return {
        "mean": cf.mean(axis=1),
        "std": cf.std(axis=1),
        "dark_frac": (clean < 0.04).all(axis=1).reshape(n, -1).mean(axis=1),
        "bright_frac": (clean > 0.96).all(axis=1).reshape(n, -1).mean(axis=1),
        "nan_frac": nan_frac,
    }


def degenerate_reason(stats: dict[str, np.ndarray], i: int, min_std: float = 0.02,
                      max_dark: float = 0.9, max_bright: float = 0.9) -> str | None:
    """Why image ``i`` is unusable on its pixels alone (NaN, black, white, blank), else None."""
    if stats["nan_frac"][i] > 0:
        return "non-finite pixels (NaN/inf)"
    if stats["dark_frac"][i] > max_dark:
        return f"black: {stats['dark_frac'][i]:.0%} of pixels dark"
    if stats["bright_frac"][i] > max_bright:
        return f"white: {stats['bright_frac'][i]:.0%} of pixels bright"
    if stats["std"][i] < min_std:
        return f"blank: pixel std {stats['std'][i]:.4f} < {min_std}"
    return None


def _l2n(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)


def class_centroids(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean of L2-normalised features per class, re-normalised. features [N, D], labels [N]
    -> [C, D]; a class without rows is an error (its distances would be meaningless)."""
    f = _l2n(features)
    y = np.asarray(labels)
    missing = [c for c in range(num_classes) if not (y == c).any()]
    if missing:
        raise ValueError(f"class_centroids: classes {missing} have no real train features")
    return _l2n(np.stack([f[y == c].mean(axis=0) for c in range(num_classes)]))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def model_scores(features: np.ndarray, logits: np.ndarray, intended: np.ndarray, centroids: np.ndarray,
                 parent_features: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """features [N, D], logits [N, C], intended [N] class indices, centroids [C, D] (from
    :func:`class_centroids`), parent_features [N, D] with NaN rows where there is no parent.
    Returns [N] arrays: ``confidence`` (softmax prob of the intended class), ``predicted``,
    ``centroid_dist`` (1 - cosine to the intended centroid, in [0, 2]), ``parent_dist``
    (1 - cosine to the parent, NaN without a parent)."""
    f = _l2n(features)
    y = np.asarray(intended, dtype=np.int64)
    p = softmax(logits)
    out = {"confidence": p[np.arange(len(y)), y], "predicted": p.argmax(axis=1),
           "centroid_dist": 1.0 - np.einsum("nd,nd->n", f, centroids[y])}
    if parent_features is None:
        out["parent_dist"] = np.full(len(y), np.nan)
    else:
        pf = np.asarray(parent_features, dtype=np.float64)
        has = np.isfinite(pf).all(axis=1)
        d = np.full(len(y), np.nan)
        if has.any():
            d[has] = 1.0 - np.einsum("nd,nd->n", f[has], _l2n(pf[has]))
        out["parent_dist"] = d
    return out
