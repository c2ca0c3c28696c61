"""The study's controlled verdict: does each synthetic setup help, against its strongest control?

Statistics (all from per-image arrays the evaluate stages saved, ``scores.npz``):

- **hierarchical paired bootstrap**: each replicate draws the seeds (with replacement) and the
  test images (and the OOD images) with replacement, the *same* draw for every cell, so a
  difference between two setups is paired by seed and by image. Test accuracy is recomputed from
  per-image correctness, OOD AUROC from per-image detector scores (Mann–Whitney form);
- **Δ** = mean over the paired seeds of (setup − control) on the full test set; 95 % percentile
  interval; two-sided bootstrap p-value;
- **Holm** correction over every (setup × metric) comparison of the study; the verdict is
  ``helps`` / ``hurts`` when the Holm-adjusted p is below ``verdict.alpha``, else
  ``no detectable effect`` (``too few seeds`` below ``verdict.min_seeds``);
- the **strongest control** of a metric is the equal-compute control with the best mean:
  the reference real-only setup or the classical-augmentation control;
- **worth N real images per class**: the more-real-data controls (nested real subsets) and the
  full real set give accuracy against real images per class; a fit ``acc = a + b ln n`` per
  bootstrap replicate is inverted at the setup's accuracy. N beyond the full set is an
  extrapolation and flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HELPS, HURTS, NO_EFFECT, FEW_SEEDS = "helps", "hurts", "no detectable effect", "too few seeds"


@dataclass
class CellArrays:
    """One cell's per-image arrays: test labels/predictions and detector scores by set."""

    seed: int
    labels: np.ndarray
    pred: np.ndarray
    scores: dict[str, np.ndarray]  # "test/energy", "near_ood/energy", ...

    @classmethod
    def load(cls, path: Path, seed: int) -> CellArrays:
        with np.load(path) as z:
            arrs = {k: z[k] for k in z.files}
        return cls(seed, arrs.pop("test/labels"), arrs.pop("test/pred"), arrs)


def metric_parts(metric: str) -> tuple[str, str | None, str | None]:
    """``test/accuracy`` -> ("accuracy", None, None); ``ood/near_ood/energy/auroc`` -> ("auroc", set, detector)."""
    parts = metric.split("/")
    if metric == "test/accuracy":
        return "accuracy", None, None
    if metric == "corruption/accuracy":
        return "corruption", None, None
    if len(parts) == 4 and parts[0] == "ood" and parts[3] == "auroc":
        return "auroc", parts[1], parts[2]
    raise ValueError(f"verdict metric {metric!r}: supported are test/accuracy, corruption/accuracy and "
                     "ood/<set>/<detector>/auroc")


def _pair_matrix(id_scores: np.ndarray, ood_scores: np.ndarray) -> np.ndarray:
    """C[i, j] = 1 if ID score i > OOD score j, 0.5 on ties, else 0 (AUROC = mean of C)."""
    d = id_scores[:, None] - ood_scores[None, :]
    return (d > 0) + 0.5 * (d == 0)


class Bootstrap:
    """Common random draws for every cell: image count matrices and seed draws."""

    def __init__(self, n_test: int, n_ood: dict[str, int], n_rep: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n_rep = n_rep
        self.test = rng.multinomial(n_test, np.full(n_test, 1 / n_test), size=n_rep).astype(np.float64)
        self.ood = {s: rng.multinomial(n, np.full(n, 1 / n), size=n_rep).astype(np.float64)
                    for s, n in sorted(n_ood.items()) if n > 0}
        self.rng = rng

    def values(self, cell: CellArrays, metric: str) -> tuple[float, np.ndarray]:
        """(full-sample value, [n_rep] replicate values) of ``metric`` for one cell."""
        kind, ood_set, det = metric_parts(metric)
        if kind in ("accuracy", "corruption"):
            correct = ((cell.pred == cell.labels) if kind == "accuracy"
                       else cell.scores["corruption/correct"]).astype(np.float64)
            return float(correct.mean()), self.test @ correct / len(correct)
        c = _pair_matrix(cell.scores[f"test/{det}"], cell.scores[f"{ood_set}/{det}"])
        n_i, n_o = c.shape
        full = float(c.mean())
        reps = np.einsum("bi,ij,bj->b", self.test, c, self.ood[ood_set], optimize=True) / (n_i * n_o)
        return full, reps

    def seed_draws(self, k: int) -> np.ndarray:
        """[n_rep, k] indices of seeds drawn with replacement (one fresh draw per call)."""
        return self.rng.integers(0, k, size=(self.n_rep, k))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def paired_difference(a: dict[int, tuple[float, np.ndarray]], b: dict[int, tuple[float, np.ndarray]],
                      boot: Bootstrap, alpha: float = 0.05) -> dict[str, Any] | None:
    """Δ = a − b paired by seed: estimate, (1 − alpha) percentile interval, bootstrap p, n seeds."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    full = np.array([a[s][0] - b[s][0] for s in seeds])
    reps = np.stack([a[s][1] - b[s][1] for s in seeds], axis=1)  # [n_rep, k]
    draws = boot.seed_draws(len(seeds))
    dist = np.take_along_axis(reps, draws, axis=1).mean(axis=1)
    ties = (dist == 0).mean()  # replicates with no difference count half to each side
    p = min(1.0, 2 * min((dist < 0).mean() + ties / 2, (dist > 0).mean() + ties / 2))
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return {"delta": float(full.mean()), "lo": float(lo), "hi": float(hi), "p": float(max(p, 1 / boot.n_rep)),
            "n": len(seeds), "per_seed": dict(zip(seeds, full.tolist(), strict=True))}


def worth_real(curve: dict[float, dict[int, tuple[float, np.ndarray]]], target: dict[int, tuple[float, np.ndarray]],
               boot: Bootstrap, alpha: float = 0.05) -> dict[str, Any] | None:
    """Real images per class a setup is worth: invert ``acc = a + b ln n`` fitted to ``curve``
    ({real images per class: {seed: (value, replicates)}}) at the setup's accuracy."""
    ns = sorted(curve)
    if len(ns) < 2:
        return None
    seeds = sorted(set(target).intersection(*[set(curve[n]) for n in ns]))
    if len(seeds) < 2:
        return None
    x = np.log(np.array(ns, dtype=np.float64))

    def invert(ys: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # ys [..., len(ns)], t [...] -> (N, slope); least squares per row
        xm = x.mean()
        slope = ((x - xm) * (ys - ys.mean(-1, keepdims=True))).sum(-1) / ((x - xm) ** 2).sum()
        inter = ys.mean(-1) - slope * xm
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            n = np.exp((t - inter) / slope)
        return n, slope

    ys_full = np.array([[curve[n][s][0] for n in ns] for s in seeds]).mean(0)
    t_full = np.mean([target[s][0] for s in seeds])
    n_hat, slope_hat = invert(ys_full, np.array(t_full))
    draws = boot.seed_draws(len(seeds))
    ys_rep = np.stack([np.stack([curve[n][s][1] for n in ns], -1) for s in seeds], 1)  # [B, k, len(ns)]
    ys_b = np.take_along_axis(ys_rep, draws[:, :, None], axis=1).mean(1)
    t_rep = np.stack([target[s][1] for s in seeds], 1)
    t_b = np.take_along_axis(t_rep, draws, axis=1).mean(1)
    n_b, slope_b = invert(ys_b, t_b)
    ok = (slope_b > 0) & np.isfinite(n_b)
    out: dict[str, Any] = {"n_full": ns[-1], "points": {str(n): float(ys_full[i]) for i, n in enumerate(ns)},
                           "slope": float(slope_hat), "target": float(t_full), "n_seeds": len(seeds)}
    if slope_hat <= 0 or ok.mean() < 0.9:
        out.update(worth=None, note="accuracy did not rise with more real images: not expressible in real images")
        return out
    lo, hi = np.quantile(n_b[ok], [alpha / 2, 1 - alpha / 2])
    out.update(worth=float(n_hat), lo=float(lo), hi=float(hi), extrapolated=bool(n_hat > ns[-1] or n_hat < ns[0]))
    return out


def study_verdict(run: Path, summary: dict[str, Any], study: dict[str, Any]) -> dict[str, Any]:
    """Verdicts, per-control differences, worth-N and the data-efficiency curve of a run (JSON-able)."""
    from synthmix.experiments.executor import stage_dir

    vcfg = study.get("verdict") or {}
    alpha = float(vcfg.get("alpha", 0.05))
    ref = summary.get("reference")
    cells = [c for c in summary.get("cells", []) if c["done"]]
    arrays: dict[str, dict[int, CellArrays]] = {}
    models = sorted({c["model"] for c in cells})
    for c in cells:
        p = stage_dir(run, c["evaluate"]) / "scores.npz"
        if p.exists():
            arrays.setdefault(f"{c['setup']}|{c['model']}", {})[c["seed"]] = CellArrays.load(p, c["seed"])
    if not arrays:
        return {"available": False, "reason": "no evaluated cell yet"}
    any_cell = next(iter(next(iter(arrays.values())).values()))
    metrics = vcfg.get("metrics") or default_metrics(study, any_cell)
    n_ood = {k.split("/")[0]: len(v) for k, v in any_cell.scores.items() if not k.startswith("test/")}
    boot = Bootstrap(len(any_cell.labels), n_ood, int(vcfg.get("bootstrap", 2000)), seed=0)
    min_seeds = int(vcfg.get("min_seeds", 3))
    info = {c["setup"]: c for c in summary.get("cells", [])}
    # Equal-compute controls: the real-only reference, classical augmentation, and real-only setups
    # trained with cheap (non-generated) outliers — diffusion outliers must beat those too.
    controls = [s for s, c in info.items() if s == ref or c.get("control") == "augment"
                or (not c.get("synthetic") and c.get("outliers") in ("corrupted", "folder"))]
    candidates = [s for s, c in info.items() if c.get("synthetic") and not c.get("control")]

    values: dict[tuple[str, str, str], dict[int, tuple[float, np.ndarray]]] = {}

    def vals(setup: str, model: str, metric: str) -> dict[int, tuple[float, np.ndarray]]:
        key = (setup, model, metric)
        if key not in values:
            cs = arrays.get(f"{setup}|{model}", {})
            try:
                values[key] = {s: boot.values(a, metric) for s, a in cs.items()}
            except KeyError:  # this cell has no such OOD set / detector
                values[key] = {}
        return values[key]

    comparisons, tests = [], []
    for model in models:
        for metric in metrics:
            lower = metric.endswith("fpr95")
            means = {c: np.mean([v[0] for v in vals(c, model, metric).values()]) for c in controls
                     if vals(c, model, metric)}
            if not means:
                continue
            strongest = (min if lower else max)(means, key=means.get)
            for setup in candidates:
                per_control = {c: paired_difference(vals(setup, model, metric), vals(c, model, metric), boot)
                               for c in means}
                d = per_control.get(strongest)
                if d is None:
                    continue
                comp = {"setup": setup, "model": model, "metric": metric, "control": strongest,
                        "vs": {c: v for c, v in per_control.items() if v is not None}, **d}
                comparisons.append(comp)
                if d["n"] >= min_seeds:
                    tests.append(comp)
    for comp, p_adj in zip(tests, holm([c["p"] for c in tests]), strict=True):
        comp["p_holm"] = p_adj
    for comp in comparisons:
        if "p_holm" not in comp:
            comp["verdict"] = FEW_SEEDS
            continue
        better = comp["delta"] < 0 if comp["metric"].endswith("fpr95") else comp["delta"] > 0
        comp["verdict"] = (HELPS if better else HURTS) if comp["p_holm"] < alpha else NO_EFFECT
    worth = _worth(summary, study, arrays, models, candidates, vals, boot, alpha)
    return {"available": True, "metrics": metrics, "alpha": alpha, "n_tests": len(tests),
            "bootstrap": boot.n_rep, "controls": controls, "comparisons": comparisons, "worth": worth}


def default_metrics(study: dict[str, Any], cell: CellArrays) -> list[str]:
    det = (study.get("evaluation") or {}).get("primary_detector", "energy")
    out = ["test/accuracy"]
    if f"near_ood/{det}" in cell.scores:
        out.append(f"ood/near_ood/{det}/auroc")
    if "corruption/correct" in cell.scores:
        out.append("corruption/accuracy")
    return out


def _worth(summary, study, arrays, models, candidates, vals, boot, alpha) -> dict[str, Any]:
    """Worth-N for test accuracy: the real-fraction controls + the reference give the curve."""
    ref = summary.get("reference")
    counts = (summary.get("data") or {}).get("real_train_counts") or {}
    per_class = float(np.mean(list(counts.values()))) if counts else None
    fractions = {c["setup"]: c.get("real_fraction") for c in summary.get("cells", [])
                 if c.get("control") == "more_real"}
    out: dict[str, Any] = {}
    if not per_class or not fractions or ref is None:
        return out
    for model in models:
        curve: dict[float, dict[int, tuple[float, np.ndarray]]] = {}
        for setup, f in fractions.items():
            v = vals(setup, model, "test/accuracy")
            if v and f:  # nested subsets keep ceil(f * n_c) images of each class
                curve[round(float(np.mean([math.ceil(f * n) for n in counts.values()])), 3)] = v
        v = vals(ref, model, "test/accuracy")
        if v:
            curve[float(per_class)] = v
        for setup in candidates:
            w = worth_real(curve, vals(setup, model, "test/accuracy"), boot, alpha)
            if w is not None:
                out[f"{setup}|{model}"] = w
        out[f"curve|{model}"] = {str(n): {"mean": float(np.mean([x[0] for x in v.values()])),
                                          "values": [x[0] for x in v.values()]} for n, v in sorted(curve.items())}
    return out
