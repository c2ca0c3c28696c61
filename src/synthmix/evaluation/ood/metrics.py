"""OOD metrics from in-distribution scores (higher = more in-distribution).

In-distribution is the positive class: AUROC is P(score(ID) > score(OOD)) (ties count 1/2),
AUPR-In / AUPR-Out are average precision with ID / OOD as positives, and FPR@95TPR is the
fraction of OOD samples accepted at the threshold that accepts 95 % of ID samples.
:func:`group_metrics` averages them over groups of OOD sets (near / far, OpenOOD v1.5) and
:func:`full_spectrum_metrics` pools covariate-shifted ID sets with the ID test set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """FPR of OOD at the highest threshold t with mean(id >= t) >= tpr. id [N], ood [M] -> float."""
    import numpy as np

    s = np.sort(np.asarray(id_scores, dtype=np.float64))
    if len(s) == 0 or len(ood_scores) == 0:
        raise ValueError("fpr_at_tpr needs ID and OOD scores")
    j = int(np.floor((1.0 - tpr) * len(s) + 1e-9))
    t = s[min(j, len(s) - 1)]
    return float(np.mean(np.asarray(ood_scores, dtype=np.float64) >= t))


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """{auroc, aupr_in, aupr_out, fpr95} for ID scores [N] vs OOD scores [M]."""
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    i = np.asarray(id_scores, dtype=np.float64)
    o = np.asarray(ood_scores, dtype=np.float64)
    if len(i) == 0 or len(o) == 0:
        raise ValueError(f"ood_metrics needs both sets non-empty (got {len(i)} ID, {len(o)} OOD)")
    if not (np.isfinite(i).all() and np.isfinite(o).all()):
        raise ValueError("ood_metrics: scores contain NaN or inf")
    y = np.r_[np.ones(len(i)), np.zeros(len(o))]
    s = np.r_[i, o]
    def unit(v: float) -> float:  # sklearn's AP can sum to 1 + 2e-16
        return float(min(1.0, max(0.0, v)))

    return {"auroc": unit(roc_auc_score(y, s)), "aupr_in": unit(average_precision_score(y, s)),
            "aupr_out": unit(average_precision_score(1 - y, -s)), "fpr95": fpr_at_tpr(i, o)}


def full_spectrum_metrics(id_scores: Sequence[np.ndarray], ood_scores: np.ndarray) -> dict[str, float]:
    """:func:`ood_metrics` with several ID sets pooled as in-distribution (full-spectrum OOD,
    Yang et al. 2022: covariate-shifted images of the known classes count as ID). id_scores: a list
    of [N_i] arrays (e.g. test + a shifted folder); ood_scores [M]."""
    import numpy as np

    if not len(id_scores):
        raise ValueError("full_spectrum_metrics needs at least one ID set")
    return ood_metrics(np.concatenate([np.asarray(s, dtype=np.float64) for s in id_scores]), ood_scores)


def group_metrics(per_set: Mapping[str, Mapping[str, float]],
                  groups: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Average per-set OOD metrics within each group (OpenOOD v1.5: near-OOD / far-OOD).

    per_set: {set name: {metric: value}} (e.g. :func:`ood_metrics` of each OOD set); groups:
    {group name: [set names]}. Returns {group: {metric: unweighted mean over the group's sets,
    ..., "n_sets": k}} for the metrics every set of the group has. A group naming a set missing
    from ``per_set``, or with no sets, is a ValueError (a silently smaller average misleads).
    """
    import numpy as np

    out: dict[str, dict[str, float]] = {}
    for g, names in groups.items():
        names = list(names)
        if not names:
            raise ValueError(f"group_metrics: group {g!r} has no OOD sets")
        missing = [n for n in names if n not in per_set]
        if missing:
            raise ValueError(f"group_metrics: group {g!r} names sets without metrics: {missing} "
                             f"(have {sorted(per_set)})")
        keys = [k for k in per_set[names[0]] if all(k in per_set[n] for n in names)]
        out[g] = {k: float(np.mean([float(per_set[n][k]) for n in names])) for k in keys}
        out[g]["n_sets"] = len(names)
    return out
