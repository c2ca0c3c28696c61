"""Linear probe on frozen, cached features: one feature pass per (backbone, image, preprocessing),
then any number of setups x seeds train only a linear head.

- ``extract_cached(model, images, ids, cache_dir, *, preprocess_key, normalization, ...) ->
  float32 [N, D]``: ``model.forward_features`` of each image, stored on disk as
  ``cache_dir/<key>/<id>.npy`` where ``key`` hashes the backbone's weights
  (:func:`backbone_fingerprint`), the preprocessing description and the normalisation. Images
  already cached are not recomputed; ``images`` may be a tensor or a loader called with only
  the indices that are missing (so cached images are never decoded either).
- ``train_probe(f_train [N,D], y_train [N], cfg, val=(f, y) | None) -> ProbeResult``:
  multinomial logistic regression (cross-entropy + L2 on the weights, standardised features)
  fitted by full-batch L-BFGS, deterministic; ``ProbeResult.linear()`` is the head in the
  original feature space and ``attach(model)`` puts it on a :class:`Classifier` so the usual
  evaluation (metrics, OOD, corruptions) runs on the probed model.

Augmentation is not possible on cached features (one feature vector per image): a probe
compares setups by *which* images they train on, at equal (zero) augmentation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from synthmix.core.config import StrictModel
from synthmix.core.errors import ConfigError


class ProbeConfig(StrictModel):
    """Logistic-regression probe settings."""

    l2: float = Field(1e-3, ge=0, description="L2 penalty on the weights: l2/2 * ||W||^2 added to the mean CE "
                      "(sklearn's C = 1 / (l2 * N))")
    max_iter: int = Field(200, ge=1, description="L-BFGS iterations")
    standardize: bool = Field(True, description="z-score features with the training mean/std first")
    class_weight: str | None = Field(None, description="None or 'balanced' (weights n / (k * n_c))")


@dataclass
class ProbeResult:
    """A fitted probe: ``weight`` [C, D] and ``bias`` [C] in the standardised space, plus the
    standardisation (``mean``/``std`` [D]) and the fit history."""

    weight: Any
    bias: Any
    mean: Any
    std: Any
    history: dict[str, Any] = field(default_factory=dict)

    def logits(self, f):
        """float [N, D] features -> logits [N, C] (torch)."""
        import torch

        f = torch.as_tensor(np.asarray(f), dtype=torch.float32)
        return ((f - self.mean) / self.std) @ self.weight.T + self.bias

    def linear(self):
        """An ``nn.Linear`` on the *raw* features (standardisation folded into the weights)."""
        import torch

        w = self.weight / self.std
        b = self.bias - (self.weight * (self.mean / self.std)).sum(1)
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        return lin

    def attach(self, model):
        """Replace ``model.head`` (a :class:`Classifier`) by this probe's linear layer; returns model."""
        import torch

        lin = self.linear()
        if model.feature_dim != lin.in_features or model.num_classes != lin.out_features:
            raise ConfigError(f"probe: a {lin.in_features}->{lin.out_features} head does not fit a model with "
                              f"{model.feature_dim} features and {model.num_classes} classes")
        model.head = torch.nn.Sequential(torch.nn.Dropout(0.0), lin)
        return model


def backbone_fingerprint(model) -> str:
    """sha256 (16 hex) of the backbone's parameters and buffers (names, shapes, dtypes, bytes):
    the same weights give the same key wherever they were loaded from."""
    import torch

    backbone = getattr(model, "backbone", model)
    h = hashlib.sha256()
    for name, t in sorted(backbone.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def cache_key(fingerprint: str, preprocess_key: str, normalization: str) -> str:
    """The folder name of one (backbone, preprocessing, normalisation) feature cache."""
    return hashlib.sha256(f"{fingerprint}|{preprocess_key}|{normalization}".encode()).hexdigest()[:16]


def extract_cached(model, images, ids: Sequence[str], cache_dir: str | Path, *, preprocess_key: str,
                   normalization: str = "imagenet", batch_size: int = 128, device: str = "cpu",
                   fingerprint: str | None = None) -> np.ndarray:
    """Features float32 [N, D] of ``ids`` (``model.forward_features``, eval mode, no grad).

    ``images``: uint8 [N,3,S,S] aligned with ``ids``, or ``load(indices: list[int]) -> uint8
    [len(indices),3,S,S]`` called once with the indices not yet cached. ``preprocess_key``
    must describe everything that made the pixels (size, resize mode, ...): it is part of the
    key. ``fingerprint`` defaults to :func:`backbone_fingerprint` (pass one to skip hashing).
    Files are written atomically; a corrupt cached file is an error naming it.
    """
    import torch

    from synthmix.data.augment import normalize, to_float

    if len(set(ids)) != len(ids):
        raise ValueError("extract_cached: ids must be unique")
    folder = Path(cache_dir) / cache_key(fingerprint or backbone_fingerprint(model), preprocess_key,
                                         normalization)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i}.npy" for i in ids]
    missing = [k for k, p in enumerate(paths) if not p.exists()]
    if missing:
        x = images(missing) if callable(images) else images[missing]
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[0] != len(missing):
            raise ValueError(f"extract_cached: need uint8 [{len(missing)},3,S,S] images, got "
                             f"{x.dtype} {tuple(x.shape)}")
        was = model.training
        model.eval()
        model.to(device)
        try:
            with torch.no_grad():
                for s in range(0, len(missing), batch_size):
                    xb = normalize(to_float(x[s:s + batch_size].to(device)), normalization)
                    f = model.forward_features(xb).float().cpu().numpy()
                    for k, row in zip(missing[s:s + batch_size], f, strict=True):
                        _save_npy(paths[k], row)
        finally:
            model.train(was)
    out = []
    for p in paths:
        try:
            out.append(np.load(p, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{p}: unreadable cached feature ({err}); delete it to recompute") from None
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    os.replace(tmp, path)


def train_probe(f_train, y_train, cfg: ProbeConfig | None = None, *, num_classes: int | None = None,
                val: tuple[Any, Any] | None = None,
                on_step: Callable[[int, float], None] | None = None) -> ProbeResult:
    """Multinomial logistic regression on features ``f_train`` [N, D] with labels [N] (0..C-1).

    Minimises mean_i w_i * CE(W z_i + b, y_i) + l2/2 * ||W||^2 over (W, b), z the standardised
    features, by full-batch L-BFGS (strong Wolfe line search) from zeros: deterministic, no
    seed. ``val=(f, y)`` adds ``val_loss`` / ``val_acc`` to the history."""
    import torch
    import torch.nn.functional as F

    cfg = cfg or ProbeConfig()
    f = torch.as_tensor(np.asarray(f_train), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y_train)).long()
    if f.ndim != 2 or y.ndim != 1 or f.shape[0] != y.shape[0] or f.shape[0] == 0:
        raise ValueError(f"train_probe: features [N, D] and labels [N], got {tuple(f.shape)} and {tuple(y.shape)}")
    c = int(num_classes if num_classes is not None else int(y.max()) + 1)
    if int(y.max()) >= c or int(y.min()) < 0:
        raise ValueError(f"train_probe: labels must be in 0..{c - 1}")
    if cfg.standardize:
        mean, std = f.mean(0), f.std(0, unbiased=False)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
    else:
        mean, std = torch.zeros(f.shape[1], dtype=f.dtype), torch.ones(f.shape[1], dtype=f.dtype)
    z = (f - mean) / std
    sw = torch.ones(len(y), dtype=f.dtype)
    if cfg.class_weight == "balanced":
        counts = torch.bincount(y, minlength=c).to(f.dtype)
        sw = (len(y) / (c * counts.clamp(min=1)))[y]
    elif cfg.class_weight is not None:
        raise ConfigError(f"probe.class_weight: None or 'balanced', got {cfg.class_weight!r}")
    w = torch.zeros(c, f.shape[1], dtype=f.dtype, requires_grad=True)
    b = torch.zeros(c, dtype=f.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=cfg.max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")
    calls = [0]

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(z @ w.T + b, y, reduction="none") * sw).sum() / sw.sum() + 0.5 * cfg.l2 * (w * w).sum()
        loss.backward()
        calls[0] += 1
        if on_step is not None:
            on_step(calls[0], float(loss))
        return loss

    opt.step(closure)
    with torch.no_grad():
        logits = z @ w.T + b
        hist: dict[str, Any] = {"train_loss": float(F.cross_entropy(logits, y)),
                                "train_acc": float((logits.argmax(1) == y).double().mean()),
                                "evaluations": calls[0], "n_train": len(y)}
    res = ProbeResult(weight=w.detach().float(), bias=b.detach().float(), mean=mean.float(), std=std.float(),
                      history=hist)
    if val is not None:
        fv, yv = val
        yv = torch.as_tensor(np.asarray(yv)).long()
        with torch.no_grad():
            lv = res.logits(fv)
            hist["val_loss"] = float(F.cross_entropy(lv, yv))
            hist["val_acc"] = float((lv.argmax(1) == yv).double().mean())
    return res
