"""OOD detectors as small functions over cached arrays (no model re-run).

Convention: every score is an *in-distribution* score — higher means "looks like training
data" (pytorch-ood's detectors return outlier scores, the negative of these). Detectors that
need fitting (kNN, Mahalanobis) are fit on TRAIN features only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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
    Score: minus the smallest squared Mahalanobis distance to a class mean. means: [C, D];
    precision: [D, D] (inverse of the Ledoit-Wolf-shrunk shared covariance: few samples, many dims)."""

    means: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, train_features: np.ndarray, train_labels: np.ndarray) -> MahalanobisDetector:
        import numpy as np
        from sklearn.covariance import LedoitWolf

        f = np.asarray(train_features, dtype=np.float64)
        y = np.asarray(train_labels)
        classes = np.unique(y)
        if len(classes) == 0:
            raise ValueError("MahalanobisDetector.fit needs labelled train features")
        means = np.stack([f[y == c].mean(axis=0) for c in classes])
        centred = f - means[np.searchsorted(classes, y)]
        lw = LedoitWolf(assume_centered=True).fit(centred)
        return cls(means, lw.precision_)

    def score(self, features: np.ndarray) -> np.ndarray:
        import numpy as np

        f = np.asarray(features, dtype=np.float64)
        d = np.stack([(((f - m) @ self.precision) * (f - m)).sum(axis=1) for m in self.means], axis=1)
        return -d.min(axis=1)


DETECTORS = ("msp", "energy", "knn", "mahalanobis")


@dataclass
class FittedDetectors:
    """All four detectors, fit on train features/labels; :meth:`score` maps cached outputs to scores."""

    knn: KNNDetector
    mahalanobis: MahalanobisDetector

    @classmethod
    def fit(cls, train_features: np.ndarray, train_labels: np.ndarray, k: int = 10) -> FittedDetectors:
        return cls(KNNDetector.fit(train_features, k), MahalanobisDetector.fit(train_features, train_labels))

    def score(self, features: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
        """features [N, D], logits [N, C] -> {detector name: ID scores [N]}."""
        return {"msp": msp_score(logits), "energy": energy_score(logits),
                "knn": self.knn.score(features), "mahalanobis": self.mahalanobis.score(features)}
