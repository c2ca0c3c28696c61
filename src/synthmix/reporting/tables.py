"""The study's answer as a table: every setup x headline metric, mean +- 95 % CI, best in bold,
difference to the reference (real-only) setup with its CI. Pure functions over summary.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

METRIC_NAMES = {
    "accuracy": "accuracy", "macro_f1": "macro-F1", "roc_auc": "ROC-AUC",
    "auroc": "AUROC", "fpr95": "FPR@95",
}
SET_NAMES = {"test": "test", "near_ood": "near-OOD", "far_ood": "far-OOD"}


def metric_title(key: str) -> str:
    """``test/accuracy`` -> ``test accuracy``; ``ood/near_ood/energy/auroc`` -> ``near-OOD AUROC (energy)``."""
    parts = key.split("/")
    if parts[0] == "ood" and len(parts) == 4:
        return f"{SET_NAMES.get(parts[1], parts[1])} {METRIC_NAMES.get(parts[3], parts[3])} ({parts[2]})"
    return " ".join([SET_NAMES.get(parts[0], parts[0])] + [METRIC_NAMES.get(p, p) for p in parts[1:]])


def fmt(x: float | None, digits: int = 3, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fmt_ci(stat: dict[str, Any] | None, digits: int = 3) -> str:
    """``0.912 ± 0.021`` (half the CI width; n = 1 has no interval: ``0.912``)."""
    if not stat or stat.get("mean") is None:
        return "–"
    lo, hi = stat.get("lo"), stat.get("hi")
    if lo is None or hi is None or stat.get("n", 0) < 2 or lo != lo or hi != hi:  # NaN-safe
        return fmt(stat["mean"], digits)
    return f"{fmt(stat['mean'], digits)} ± {fmt((hi - lo) / 2, digits)}"


def fmt_diff(stat: dict[str, Any] | None, digits: int = 3) -> str:
    """``Δ +0.031 [-0.010, +0.072]``."""
    if not stat or stat.get("mean") is None:
        return ""
    lo, hi = stat.get("lo"), stat.get("hi")
    if lo is None or hi is None or stat.get("n", 0) < 2 or lo != lo or hi != hi:
        return f"Δ {fmt(stat['mean'], digits, True)}"
    return f"Δ {fmt(stat['mean'], digits, True)} [{fmt(lo, digits, True)}, {fmt(hi, digits, True)}]"


@dataclass
class TableCell:
    metric: str
    text: str
    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    bold: bool = False
    diff: str = ""
    diff_mean: float | None = None
    significant: bool | None = None  # the diff's CI excludes 0


@dataclass
class TableRow:
    setup: str
    model: str
    n_done: int
    n_cells: int
    is_reference: bool
    cells: list[TableCell] = field(default_factory=list)


def answer_table(summary: dict[str, Any], digits: int = 3) -> tuple[list[str], list[TableRow]]:
    """(column metric keys, rows). Best per column (max, or min for lower-is-better) in bold,
    compared on the means rounded as displayed, so ties are all bold."""
    cols = summary.get("headline") or []
    lower = set(summary.get("lower_is_better", []))
    rows: list[TableRow] = []
    for s in summary.get("setups", []):
        row = TableRow(s["setup"], s["model"], s["n_done"], s["n_cells"], s["setup"] == summary.get("reference"))
        for k in cols:
            st = s["metrics"].get(k)
            d = s.get("diff", {}).get(k)
            sig = None
            if d and d.get("n", 0) >= 2 and d.get("lo") is not None and d.get("hi") is not None:
                sig = d["lo"] > 0 or d["hi"] < 0
            row.cells.append(TableCell(k, fmt_ci(st, digits), st.get("mean") if st else None,
                                       st.get("lo") if st else None, st.get("hi") if st else None,
                                       int(st.get("n", 0)) if st else 0, diff=fmt_diff(d, digits),
                                       diff_mean=d.get("mean") if d else None, significant=sig))
        rows.append(row)
    for j, k in enumerate(cols):
        vals = [round(r.cells[j].mean, digits) for r in rows if r.cells[j].mean is not None]
        if not vals:
            continue
        best = min(vals) if k in lower else max(vals)
        for r in rows:
            c = r.cells[j]
            c.bold = c.mean is not None and round(c.mean, digits) == best
    return cols, rows


def headline_sentence(summary: dict[str, Any], metric: str = "test/accuracy", digits: int = 3) -> str:
    """One sentence: the best setup on ``metric`` and its difference to the reference with CI."""
    return incomplete_sentence(summary) + _best_sentence(summary, metric, digits)


def incomplete_sentence(summary: dict[str, Any]) -> str:
    """'The answer is INCOMPLETE: ...' naming the cells without results (empty when complete)."""
    bad = summary.get("incomplete") or []
    if not bad:
        return ""
    n = len(summary.get("cells", [])) or len(bad)
    shown = "; ".join(f"{c['cell']} ({c['state']}" + (f" at {c['stage']}: {c['message']}" if c.get("message")
                                                        else "") + ")" for c in bad[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return f"The answer is INCOMPLETE: {len(bad)} of {n} cells have no result — {shown}{more}. "


def _best_sentence(summary: dict[str, Any], metric: str, digits: int) -> str:
    ref = summary.get("reference")
    rows = [s for s in summary.get("setups", []) if metric in s["metrics"]]
    if not rows:
        return "No cell has finished yet: no results to report."
    best = max(rows, key=lambda s: s["metrics"][metric]["mean"])
    text = (f"Best {metric_title(metric)}: {best['setup']} ({best['model']}) with "
            f"{fmt_ci(best['metrics'][metric], digits)} over {best['n_done']} seed(s).")
    if ref and best["setup"] != ref:
        d = best.get("diff", {}).get(metric)
        if d:
            sig = d.get("n", 0) >= 2 and (d["lo"] > 0 or d["hi"] < 0)
            text += (f" Compared with {ref}: {fmt_diff(d, digits)} (95 % CI, paired by seed) — "
                     + ("the interval excludes zero." if sig else "the interval includes zero: "
                        "no clear difference with this many seeds."))
    elif ref:
        text += f" That is the reference setup itself: no synthetic setup beat {ref}."
    return text


def markdown_table(summary: dict[str, Any], digits: int = 3, metrics: list[str] | None = None) -> str:
    """The answer table as Markdown (for READMEs and notes): mean ± CI half-width, Δ to the
    reference with its CI, best per column in bold. ``metrics`` picks columns (default: all)."""
    cols, rows = answer_table(summary, digits)
    keep = [j for j, k in enumerate(cols) if metrics is None or k in metrics]
    head = ["setup", "seeds"] + [metric_title(cols[j]) for j in keep]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for c in (r.cells[j] for j in keep):
            text = f"**{c.text}**" if c.bold and c.text else c.text
            if c.diff and not r.is_reference:
                text += f" ({c.diff})"
            cells.append(text)
        name = f"{r.setup} (reference)" if r.is_reference else r.setup
        lines.append("| " + " | ".join([name, f"{r.n_done}/{r.n_cells}", *cells]) + " |")
    return "\n".join(lines) + "\n"
