"""OOD detectors as small functions over cached arrays (no model re-run).

Convention: every score is an *in-distribution* score — higher means "looks like training
data" (pytorch-ood's detectors return outlier scores, the negative of these). Detectors that
need fitting (kNN, Mahalanobis, ViM, ReAct) are fit on TRAIN features only. ViM, ReAct, GEN and
MaxLogit live in :mod:`synthmix.evaluation.ood.posthoc`; :class:`FittedDetectors` fits and scores
every registered name (:data:`DETECTOR_INFO`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from synthmix.evaluation.ood.posthoc import LinearHead, ReActDetector, ViMDetector


def msp_score(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability (Hendrycks & Gimpel 2017). logits [N, C] -> [N]."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p.max(axis=1) / p.sum(axis=1)).astype(np.float64)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T * logsumexp(logits / T) (Liu et al. 2020). logits [N, C] -> [N]."""
    import numpy as np
    from scipy.special import logsumexp

    return temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def _l2n(x: np.ndarray) -> np.ndarray:
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class KNNDetector:
    """Deep nearest neighbours (Sun et al. 2022): minus the distance of the L2-normalised feature
    to its k-th nearest L2-normalised train feature. bank: [M, D] normalised train features."""

    bank: np.ndarray
    k: int

    @classmethod
    def fit(cls, train_features: np.ndarray, k: int = 10) -> KNNDetector:
        if len(train_features) == 0:
            raise ValueError("KNNDetector.fit needs at least one train feature")
        return cls(_l2n(train_features), max(1, min(k, len(train_features))))

    def score(self, features: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """features [N, D] -> [N]. ``exclude_self``: the queries are the bank itself (skip the
        zero distance to oneself), for scoring train rows."""
        import numpy as np

        q = _l2n(features)
        out = np.empty(len(q))
        k = self.k + (1 if exclude_self else 0)
        for i in range(0, len(q), 1024):  # bounded memory: [1024, M] at a time
            d = np.sqrt(np.maximum(2.0 - 2.0 * q[i:i + 1024] @ self.bank.T, 0.0))
            kk = min(k, d.shape[1]) - 1
            out[i:i + 1024] = -np.partition(d, kk, axis=1)[:, kk]
        return out


@dataclass
class MahalanobisDetector:
    """Class-conditional Gaussians with one shared covariance (Lee et al. 2018), on features.
    Score: minus the smallest squared Mahalanobis distance to a class mean.

    The shared covariance is Ledoit-Wolf shrunk, ``(1 - a) S + a mu I`` (few samples, many
    dimensions), and is never formed: with centred train features X [n, D] = U s V^T, its
    inverse is ``V diag(1 / ((1 - a) s^2 / n + a mu)) V^T + (I - V V^T) / (a mu)``, so fitting
    costs an [n, D] SVD instead of a D x D inverse (minutes at D = 4096 on a CPU).
    means: [C, D]; basis: [k, D] (rows of V^T); inv_eig: [k]; inv_rest: 1 / (a mu)."""

    means: np.ndarray
    basis: np.ndarray
    inv_eig: np.ndarray
    inv_rest: float
    shrinkage: float
    normalize: bool = True

    @classmethod
    def fit(cls, train_features: np.ndarray, train_labels: np.ndarray,
            normalize: bool = True) -> MahalanobisDetector:
        """``normalize``: work on L2-normalised features (as SSD, Sehwag et al. 2021). Raw
        ReLU features let the feature norm dominate: on the fruits runs far-OOD AUROC was
        0.55 raw vs 0.996 normalised (docs/bench/contrastive.md)."""
        import numpy as np

        f = _l2n(train_features) if normalize else np.asarray(train_features, dtype=np.float64)
        y = np.asarray(train_labels)
        classes = np.unique(y)
        if len(classes) == 0:
            raise ValueError("MahalanobisDetector.fit needs labelled train features")
        means = np.stack([f[y == c].mean(axis=0) for c in classes])
        x = f - means[np.searchsorted(classes, y)]
        n, d = x.shape
        # Ledoit-Wolf shrinkage from the Gram matrix (sklearn's formula, assume_centered=True)
        g = x @ x.T
        s_fro2 = float((g**2).sum()) / n**2  # ||S||_F^2
        mu = float(np.trace(g)) / (n * d)
        delta = s_fro2 - mu**2 * d
        beta = (float((np.einsum("ij,ij->i", x, x) ** 2).sum()) - n * s_fro2) / n**2
        a = 1.0 if delta <= 0 else min(beta, delta) / delta
        # the SVD's right singular vectors from the small [n, n] Gram matrix: V^T = s^-1 U^T X
        ev, u = np.linalg.eigh(g)
        keep = ev > max(float(ev.max(initial=0.0)), 0.0) * 1e-10
        sv = np.sqrt(ev[keep])
        vt = (u[:, keep] / sv).T @ x
        lam = sv**2 / n
        rest = max(a * mu, 1e-12)
        return cls(means, vt, 1.0 / ((1 - a) * lam + rest), 1.0 / rest, a, normalize)

    def score(self, features: np.ndarray) -> np.ndarray:
        import numpy as np

        f = _l2n(features) if self.normalize else np.asarray(features, dtype=np.float64)
        d = []
        for m in self.means:
            c = f - m
            p = c @ self.basis.T  # coordinates in the span of the train features
            d.append((p**2) @ self.inv_eig + ((c**2).sum(axis=1) - (p**2).sum(axis=1)) * self.inv_rest)
        return -np.min(np.stack(d, axis=1), axis=1)


# The default set (what studies score unless told otherwise) and every registered name.
DETECTORS = ("msp", "energy", "knn", "mahalanobis")
# name -> (needs the model's head, description). ``vim`` / ``react`` need a LinearHead (fit with
# ``head=LinearHead.from_model(model)``); the others work from cached features / logits alone.
DETECTOR_INFO: dict[str, tuple[bool, str]] = {
    "msp": (False, "maximum softmax probability (Hendrycks & Gimpel 2017)"),
    "energy": (False, "negative free energy logsumexp(logits) (Liu et al. 2020)"),
    "maxlogit": (False, "maximum logit (Hendrycks et al. 2022)"),
    "gen": (False, "generalised entropy, gamma 0.1 (Liu et al. 2023)"),
    "knn": (False, "k-th nearest L2-normalised train feature, k 10 (Sun et al. 2022)"),
    "mahalanobis": (False, "class means, shared Ledoit-Wolf covariance, normalised features (Lee et al. 2018)"),
    "vim": (True, "virtual-logit matching on penultimate activations (Wang et al. 2022)"),
    "react": (True, "energy after clipping penultimate activations at the 90th train percentile (Sun et al. 2021)"),
}
ALL_DETECTORS = tuple(DETECTOR_INFO)


def available_detectors(with_head: bool = True) -> tuple[str, ...]:
    """Registered detector names (without the head-based ones when ``with_head`` is False)."""
    return tuple(n for n, (needs_head, _) in DETECTOR_INFO.items() if with_head or not needs_head)


@dataclass
class FittedDetectors:
    """Every detector, fit on train features/labels; :meth:`score` maps cached outputs to scores.

    ``fit(train_features [N, D], train_labels [N], k, head=None)``: with ``head`` (a
    :class:`~synthmix.evaluation.ood.posthoc.LinearHead`, e.g. ``LinearHead.from_model(model)``)
    ViM and ReAct are fitted too, on the train penultimate activations. :attr:`names` lists what
    :meth:`score` returns."""

    knn: KNNDetector
    mahalanobis: MahalanobisDetector
    head: LinearHead | None = None
    vim: ViMDetector | None = None
    react: ReActDetector | None = None
    gen_gamma: float = 0.1
    gen_m: int | None = None

    @classmethod
    def fit(cls, train_features: np.ndarray, train_labels: np.ndarray, k: int = 10, *,
            head: LinearHead | None = None, react_percentile: float = 90.0, vim_dim: int | None = None,
            gen_gamma: float = 0.1, gen_m: int | None = None) -> FittedDetectors:
        from synthmix.evaluation.ood.posthoc import ReActDetector, ViMDetector

        vim = react = None
        if head is not None:
            h = head.penultimate(train_features)
            vim = ViMDetector.fit(h, head, vim_dim)
            react = ReActDetector.fit(h, head, react_percentile)
        return cls(KNNDetector.fit(train_features, k), MahalanobisDetector.fit(train_features, train_labels),
                   head, vim, react, gen_gamma, gen_m)

    @property
    def names(self) -> tuple[str, ...]:
        return available_detectors(with_head=self.head is not None)

    def score(self, features: np.ndarray, logits: np.ndarray,
              names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """features [N, D], logits [N, C] -> {detector name: ID scores [N]} for ``names``
        (default: :attr:`names`). An unknown or unfitted name is a ValueError."""
        from synthmix.evaluation.ood.posthoc import gen_score, maxlogit_score

        names = self.names if names is None else tuple(names)
        bad = [n for n in names if n not in self.names]
        if bad:
            hint = " (vim / react need FittedDetectors.fit(..., head=LinearHead.from_model(model)))" \
                if set(bad) & {"vim", "react"} else ""
            raise ValueError(f"unknown or unfitted OOD detector(s) {bad}; available: {list(self.names)}{hint}")
        fns = {"msp": lambda: msp_score(logits), "energy": lambda: energy_score(logits),
               "maxlogit": lambda: maxlogit_score(logits),
               "gen": lambda: gen_score(logits, self.gen_gamma, self.gen_m),
               "knn": lambda: self.knn.score(features), "mahalanobis": lambda: self.mahalanobis.score(features)}
        h = self.head.penultimate(features) if self.head is not None and {"vim", "react"} & set(names) else None
        if h is not None:
            fns["vim"] = lambda: self.vim.score(h)
            fns["react"] = lambda: self.react.score(h)
        return {n: fns[n]() for n in names}
