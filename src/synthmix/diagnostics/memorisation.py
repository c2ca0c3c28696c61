"""Memorisation: is a synthetic image (nearly) a copy of a real image?

For each synthetic image, its nearest real image (of a reference set: the real TRAIN images
for memorisation, the real TEST images for a leak that would inflate test accuracy):

- by feature cosine similarity (``nearest_cosine``: index [M], similarity [M]);
- by pixels at low resolution (``nearest_pixels``: the L2-nearest image of [M, P] vs [N, P]
  arrays of pixel values in [0, 1], reported as its mean absolute difference, 0 = identical).

``memorisation_summary`` turns them into shares above thresholds. A threshold in feature space
means little on its own, so the same test is applied to real held-out images (which cannot be
copies of the train images): ``reference_share`` is the share of real held-out images it flags.
"""

from __future__ import annotations

import numpy as np


def nearest_cosine(fake: np.ndarray, real: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """fake [M, D], real [N, D] -> (index [M] of the most cosine-similar real row, similarity [M])."""
    import torch

    if len(real) == 0:
        raise ValueError("nearest neighbour search needs at least one real image")
    f = torch.nn.functional.normalize(torch.as_tensor(np.ascontiguousarray(fake), dtype=torch.float32), dim=1)
    r = torch.nn.functional.normalize(torch.as_tensor(np.ascontiguousarray(real), dtype=torch.float32), dim=1)
    idx = np.empty(len(f), np.int64)
    sim = np.empty(len(f), np.float32)
    for s in range(0, len(f), block):
        v, i = (f[s:s + block] @ r.T).max(1)
        idx[s:s + block], sim[s:s + block] = i.numpy(), v.numpy()
    return idx, np.clip(sim, -1.0, 1.0)


def nearest_pixels(fake: np.ndarray, real: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """fake [M, P], real [N, P] pixel values in [0, 1] (flattened low-resolution images) ->
    (index [M] of the L2-nearest real image, its mean absolute difference [M] in [0, 1])."""
    import torch

    if len(real) == 0:
        raise ValueError("nearest neighbour search needs at least one real image")
    f = torch.as_tensor(np.ascontiguousarray(fake), dtype=torch.float32)
    r = torch.as_tensor(np.ascontiguousarray(real), dtype=torch.float32)
    r2 = (r * r).sum(1)
    idx = np.empty(len(f), np.int64)
    for s in range(0, len(f), block):
        fb = f[s:s + block]
        d = (fb * fb).sum(1)[:, None] + r2[None, :] - 2.0 * (fb @ r.T)
        idx[s:s + block] = d.argmin(1).numpy()
    mad = (f - r[torch.as_tensor(idx)]).abs().mean(1).numpy() if len(f) else np.zeros(0, np.float32)
    return idx, mad


def low_res(x_uint8, size: int = 16):
    """uint8 [N, 3, H, W] -> float32 [N, 3 * size * size] in [0, 1] (area downsampling)."""
    import torch

    x = torch.as_tensor(x_uint8).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = torch.nn.functional.adaptive_avg_pool2d(x, size) if len(x) else x.new_zeros(0, 3, size, size)
    return x.reshape(len(x), -1).numpy()


def flags(cos_sim: np.ndarray, pixel_mad: np.ndarray | None, cosine_threshold: float,
          pixel_threshold: float) -> np.ndarray:
    """bool [M]: cosine >= cosine_threshold, or (pixels given) mean abs difference <= pixel_threshold."""
    f = np.asarray(cos_sim) >= cosine_threshold
    if pixel_mad is not None:
        f |= np.asarray(pixel_mad) <= pixel_threshold
    return f


def memorisation_summary(cos_sim: np.ndarray, pixel_mad: np.ndarray | None, *, cosine_threshold: float,
                         pixel_threshold: float, ref_cos: np.ndarray | None = None,
                         ref_mad: np.ndarray | None = None) -> dict[str, float | int | None]:
    """Shares of synthetic images flagged as copies; ``ref_*`` are the same measures for real
    held-out images vs the same reference set (their flagged share is the false-alarm level)."""
    f = flags(cos_sim, pixel_mad, cosine_threshold, pixel_threshold)
    out: dict[str, float | int | None] = {
        "n": int(len(f)),
        "share_flagged": float(f.mean()) if len(f) else float("nan"),
        "share_cosine": float((np.asarray(cos_sim) >= cosine_threshold).mean()) if len(f) else float("nan"),
        "share_pixel": (float((np.asarray(pixel_mad) <= pixel_threshold).mean())
                        if pixel_mad is not None and len(f) else None),
        "median_cosine": float(np.median(cos_sim)) if len(f) else float("nan"),
        "max_cosine": float(np.max(cos_sim)) if len(f) else float("nan"),
        "min_pixel_mad": float(np.min(pixel_mad)) if pixel_mad is not None and len(f) else None,
        "reference_share": None,
    }
    if ref_cos is not None and len(ref_cos):
        out["reference_share"] = float(flags(ref_cos, ref_mad, cosine_threshold, pixel_threshold).mean())
    return out
