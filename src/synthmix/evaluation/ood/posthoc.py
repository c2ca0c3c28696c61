"""More post-hoc OOD detectors over cached arrays: ViM, ReAct (+ energy), GEN, MaxLogit.

Same convention as :mod:`synthmix.evaluation.ood.detectors`: every score is an ID score (higher =
more in-distribution; pytorch-ood returns the negatives), and whatever is fitted is fitted on
TRAIN features only.

ViM and ReAct work on the *penultimate* activations ``h`` (the input of the last linear layer,
``logits = h @ W.T + b``). A :class:`LinearHead` maps the cached backbone features (``features.npy``,
the output of ``forward_features``) to ``h`` with the head's layers before the last linear one
(the small CNN's head is ``fc -> ReLU -> dropout -> fc``: ``h`` is the ReLU output), so no model is
re-run on images. For a model whose head is one linear layer, ``h`` is the backbone feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _logsumexp(z: np.ndarray) -> np.ndarray:
    import numpy as np
    from scipy.special import logsumexp

    return logsumexp(np.asarray(z, dtype=np.float64), axis=1)


@dataclass
class LinearHead:
    """The classifier head as numpy: ``penultimate(f) -> h [N, D']`` then ``logits(h) = h W^T + b``.

    pre: the layers before the last linear one, each ``("linear", W [out, in], b [out])`` or
    ``("relu", None, None)``; W: [C, D']; b: [C]. Dropout / Identity are no-ops at evaluation."""

    W: np.ndarray
    b: np.ndarray
    pre: list[tuple[str, np.ndarray | None, np.ndarray | None]] = field(default_factory=list)

    @classmethod
    def from_model(cls, model) -> LinearHead:
        """From a :class:`synthmix.models.classifier.Classifier` (``model.head``: a Linear, or a
        Sequential of Linear / ReLU / Dropout / Identity ending in a Linear)."""
        import numpy as np
        from torch import nn

        head = getattr(model, "head", None)
        mods = list(head) if isinstance(head, nn.Sequential) else [head]
        layers: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []
        for m in mods:
            if isinstance(m, nn.Linear):
                bias = m.bias.detach().cpu().double().numpy() if m.bias is not None else np.zeros(m.out_features)
                layers.append(("linear", m.weight.detach().cpu().double().numpy(), bias))
            elif isinstance(m, nn.ReLU):
                layers.append(("relu", None, None))
            elif not isinstance(m, (nn.Dropout, nn.Identity)):
                raise ValueError(f"LinearHead.from_model: unsupported head layer {type(m).__name__} "
                                 "(Linear / ReLU / Dropout / Identity only)")
        if not layers or layers[-1][0] != "linear":
            raise ValueError("LinearHead.from_model: the head must end in a Linear layer")
        _, W, b = layers[-1]
        return cls(W, b, layers[:-1])

    def penultimate(self, features: np.ndarray) -> np.ndarray:
        """Backbone features [N, D] -> penultimate activations [N, D'] (float64)."""
        import numpy as np

        h = np.asarray(features, dtype=np.float64)
        for kind, w, b in self.pre:
            h = h @ w.T + b if kind == "linear" else np.maximum(h, 0.0)
        return h

    def logits(self, h: np.ndarray) -> np.ndarray:
        """Penultimate activations [N, D'] -> logits [N, C]."""
        import numpy as np

        return np.asarray(h, dtype=np.float64) @ self.W.T + self.b


def maxlogit_score(logits: np.ndarray) -> np.ndarray:
    """Maximum logit (Hendrycks et al. 2022). logits [N, C] -> [N]."""
    import numpy as np

    return np.asarray(logits, dtype=np.float64).max(axis=1)


def gen_score(logits: np.ndarray, gamma: float = 0.1, m: int | None = None) -> np.ndarray:
    """GEN (Liu et al., CVPR 2023): minus the generalised entropy of the softmax,
    ``-(1/M) sum_{j in top-M} p_j^gamma (1 - p_j)^gamma`` (probabilities clamped to [1e-7, 1 - 1e-7],
    the mean instead of the sum as pytorch-ood: the ranking is the same). logits [N, C] -> [N];
    ``m`` None = all classes."""
    import numpy as np
    from scipy.special import softmax

    if gamma <= 0:
        raise ValueError(f"gen_score: gamma must be > 0, got {gamma}")
    p = np.clip(softmax(np.asarray(logits, dtype=np.float64), axis=1), 1e-7, 1 - 1e-7)
    if m is not None:
        p = -np.sort(-p, axis=1)[:, :m]
    return -(p**gamma * (1 - p) ** gamma).mean(axis=1)


@dataclass
class ViMDetector:
    """Virtual-logit matching (Wang et al., CVPR 2022) on penultimate activations h [N, D'].

    Fit (train h only): origin ``u = -pinv(W) b``; the principal subspace = the ``d`` leading
    eigenvectors of the uncentred covariance of ``h - u``, computed as the leading right singular
    vectors of ``h - u`` (an N x D' SVD: cheap when N << D', e.g. 187 images x 4096 features);
    ``alpha = mean(max logit) / mean(||residual||)``. Score: ``logsumexp(logits) - alpha *
    ||residual(h - u)||``, the residual being what lies outside the principal subspace.

    With few train images the covariance has rank r < D': its eigenvectors past r are an arbitrary
    basis of the null space, and with d >= r every train image lies in the subspace (zero
    residuals, an infinite alpha). ``d`` is then capped at r // 2 (the paper's "about half",
    within the span of the train activations); ``d_requested`` keeps the asked value.
    principal_basis: [D', d]."""

    head: LinearHead
    u: np.ndarray
    principal_basis: np.ndarray
    alpha: float
    d: int
    d_requested: int

    @classmethod
    def fit(cls, train_h: np.ndarray, head: LinearHead, d: int | None = None) -> ViMDetector:
        """``d`` default: D'/2 (the paper keeps 1000 of 2048 and 512 of 768 dimensions)."""
        import numpy as np

        h = np.asarray(train_h, dtype=np.float64)
        if h.ndim != 2 or len(h) == 0:
            raise ValueError(f"ViMDetector.fit needs train activations [N, D'], got shape {h.shape}")
        dim = h.shape[1]
        d = max(1, dim // 2) if d is None else int(d)
        if not 0 < d < dim:
            raise ValueError(f"ViMDetector: d must be in [1, {dim - 1}] for {dim}-d activations, got {d}")
        u = -np.linalg.pinv(head.W) @ head.b
        x = h - u
        _, sv, vt = np.linalg.svd(x, full_matrices=False)  # sv descending; vt [min(N, D'), D']
        rank = int((sv > sv[0] * max(x.shape) * np.finfo(np.float64).eps).sum()) if sv.size and sv[0] > 0 else 0
        d_eff = d if d < rank else max(1, rank // 2)
        basis = vt[:d_eff].T
        alpha = float(head.logits(h).max(axis=1).mean() / max(_residual_norm(x, basis).mean(), 1e-12))
        return cls(head, u, basis, alpha, d_eff, d)

    def score(self, h: np.ndarray) -> np.ndarray:
        import numpy as np

        h = np.asarray(h, dtype=np.float64)
        vlogit = _residual_norm(h - self.u, self.principal_basis) * self.alpha
        return _logsumexp(self.head.logits(h)) - vlogit


def _residual_norm(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """||x - P x|| per row for P the projection onto the orthonormal columns of ``basis`` [D', d]."""
    import numpy as np

    sq = (x * x).sum(axis=1) - ((x @ basis) ** 2).sum(axis=1)
    return np.sqrt(np.maximum(sq, 0.0))


@dataclass
class ReActDetector:
    """ReAct (Sun et al., NeurIPS 2021) + energy: penultimate activations clipped at the
    ``percentile``-th percentile of all train activations, logits recomputed with the last linear
    layer, score = logsumexp(logits). Fit on train h only."""

    head: LinearHead
    threshold: float
    percentile: float

    @classmethod
    def fit(cls, train_h: np.ndarray, head: LinearHead, percentile: float = 90.0) -> ReActDetector:
        import numpy as np

        if not 0 < percentile <= 100:
            raise ValueError(f"ReActDetector: percentile must be in (0, 100], got {percentile}")
        h = np.asarray(train_h, dtype=np.float64)
        if h.size == 0:
            raise ValueError("ReActDetector.fit needs train activations")
        return cls(head, float(np.percentile(h.ravel(), percentile)), percentile)

    def score(self, h: np.ndarray) -> np.ndarray:
        import numpy as np

        return _logsumexp(self.head.logits(np.minimum(np.asarray(h, dtype=np.float64), self.threshold)))
