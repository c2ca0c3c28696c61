"""The controlled verdict in words, tables and plots (from ``summary["verdict"]`` only).

The answer a reader needs first: for each synthetic setup and headline metric, its verdict
against the strongest equal-compute control, the effect size with its interval, and what it is
worth in real images per class; then the caveats (compute, baseline convergence, sample sizes).
"""

from __future__ import annotations

from typing import Any

from synthmix.reporting.tables import fmt, metric_title


def _worth_text(w: dict[str, Any] | None) -> str:
    if not w:
        return ""
    if w.get("worth") is None:
        return ""  # said once, in the caveats
    flag = " — extrapolated beyond the measured range" if w.get("extrapolated") else ""
    return (f"; worth ≈ {w['worth']:.0f} real images per class [{w['lo']:.0f}, {w['hi']:.0f}] "
            f"(the full real set has {w['n_full']:.0f}{flag})")


def comparison_text(c: dict[str, Any], worth: dict[str, Any] | None = None) -> str:
    """``real+id · test accuracy: no detectable effect against real+aug1 (Δ +0.000 [-0.020, +0.020], ...)``."""
    p = f"Holm p {c['p_holm']:.3f}" if c.get("p_holm") is not None else f"{c['n']} paired seed(s)"
    text = (f"{c['setup']} · {metric_title(c['metric'])}: {c['verdict']} against {c['control']} "
            f"(Δ {fmt(c['delta'], 3, True)} [{fmt(c['lo'], 3, True)}, {fmt(c['hi'], 3, True)}], {p})")
    if c["metric"] == "test/accuracy":
        text += _worth_text(worth)
    return text


def verdict_summary(summary: dict[str, Any]) -> str:
    """``Of 21 comparisons (7 synthetic setups x 3 metrics): 0 help, 0 hurt, 21 no detectable effect.``"""
    comps = (summary.get("verdict") or {}).get("comparisons") or []
    if not comps:
        return ""
    from collections import Counter

    n = Counter(c["verdict"] for c in comps)
    setups = len({c["setup"] for c in comps})
    metrics = len({c["metric"] for c in comps})
    helps = sorted({f"{c['setup']} ({metric_title(c['metric'])})" for c in comps if c["verdict"] == "helps"})
    text = (f"Of {len(comps)} comparisons ({setups} synthetic setups × {metrics} metrics) against the strongest "
            f"equal-compute control: {n.get('helps', 0)} help, {n.get('hurts', 0)} hurt, "
            f"{n.get('no detectable effect', 0)} show no detectable effect"
            + (f", {n['too few seeds']} have too few seeds" if n.get("too few seeds") else "") + ".")
    if helps:
        text += " Helps: " + "; ".join(helps) + "."
    return text


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """One line per (synthetic setup, metric), in study order."""
    v = summary.get("verdict") or {}
    if not v.get("available"):
        return []
    worth = v.get("worth", {})
    return [comparison_text(c, worth.get(f"{c['setup']}|{c['model']}")) for c in v.get("comparisons", [])]


def caveats(summary: dict[str, Any]) -> list[str]:
    """Compute, baseline convergence and sample-size notes."""
    out = []
    if summary.get("compute_note"):
        out.append(summary["compute_note"])
    base = summary.get("baseline") or {}
    if base.get("text"):
        out.append(base["text"])
    v = summary.get("verdict") or {}
    d = summary.get("data") or {}
    flat = {k.split("|")[1] for k, w in (v.get("worth") or {}).items()
            if not k.startswith("curve|") and w.get("worth") is None}
    for model in sorted(flat):
        pts = (v.get("worth") or {}).get(f"curve|{model}", {})
        curve = ", ".join(f"{float(n):.0f}: {p['mean']:.3f}" for n, p in sorted(pts.items(), key=lambda x: float(x[0])))
        out.append(f"Worth in real images ({model}): not expressible — real-only test accuracy did not rise with "
                   f"more real images per class ({curve}), so no synthetic setup can be placed on that scale.")
    if v.get("available"):
        out.append(f"Intervals: {100 * (1 - v['alpha']):.0f} % paired bootstrap over seeds and {d.get('n_test', '?')} "
                   f"test images ({v['bootstrap']} replicates); verdicts Holm-corrected over {v['n_tests']} "
                   "comparisons (setups × metrics) against the strongest equal-compute control "
                   f"({', '.join(v.get('controls', []))}).")
    return out


def verdict_table(summary: dict[str, Any]) -> list[dict[str, str]]:
    """Rows for the report: setup, metric, control, Δ [CI], p, Holm p, verdict, and Δ vs each control."""
    v = summary.get("verdict") or {}
    rows = []
    for c in v.get("comparisons", []):
        vs = "; ".join(f"{name}: {fmt(d['delta'], 3, True)} [{fmt(d['lo'], 3, True)}, {fmt(d['hi'], 3, True)}]"
                       for name, d in c.get("vs", {}).items())
        rows.append({"setup": c["setup"], "model": c["model"], "metric": metric_title(c["metric"]),
                     "control": c["control"],
                     "delta": f"{fmt(c['delta'], 3, True)} [{fmt(c['lo'], 3, True)}, {fmt(c['hi'], 3, True)}]",
                     "p": f"{c['p']:.3f}", "p_holm": f"{c['p_holm']:.3f}" if c.get("p_holm") is not None else "–",
                     "verdict": c["verdict"], "vs": vs})
    return rows


def verdict_markdown(summary: dict[str, Any]) -> str:
    rows = verdict_table(summary)
    if not rows:
        return ""
    head = "| setup | metric | strongest control | Δ [95 % CI] | Holm p | verdict |\n|---|---|---|---|---|---|\n"
    return head + "".join(f"| {r['setup']} | {r['metric']} | {r['control']} | {r['delta']} | {r['p_holm']} | "
                          f"{r['verdict']} |\n" for r in rows)


def forest_plot(summary: dict[str, Any]) -> bytes | None:
    """Δ against the strongest control with its interval, one row per setup, one panel per metric."""
    from synthmix.reporting.plots import _png, _pyplot

    v = summary.get("verdict") or {}
    comps = v.get("comparisons") or []
    if not comps:
        return None
    plt = _pyplot()
    metrics = list(dict.fromkeys(c["metric"] for c in comps))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 0.45 * max(
        len([c for c in comps if c["metric"] == m]) for m in metrics) + 1.4), squeeze=False)
    colours = {"helps": "#0a6", "hurts": "#c33"}
    for ax, m in zip(axes[0], metrics, strict=True):
        cs = [c for c in comps if c["metric"] == m][::-1]
        for i, c in enumerate(cs):
            col = colours.get(c["verdict"], "#555")
            ax.plot([c["lo"], c["hi"]], [i, i], color=col, lw=2)
            ax.plot([c["delta"]], [i], "o", color=col)
        ax.axvline(0, color="#999", lw=1, ls="--")
        ax.set_yticks(range(len(cs)), [f"{c['setup']}\nvs {c['control']}" for c in cs], fontsize=8)
        ax.set_title(f"Δ {metric_title(m)}", fontsize=10)
        ax.set_xlabel("difference to the strongest control (95 % CI)", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def curve_plot(summary: dict[str, Any]) -> bytes | None:
    """Test accuracy against real images per class (nested real subsets), with each synthetic
    setup's accuracy as a horizontal line: where it crosses the curve is what it is worth."""
    from synthmix.reporting.plots import _png, _pyplot

    worth = (summary.get("verdict") or {}).get("worth") or {}
    curves = {k.split("|", 1)[1]: v for k, v in worth.items() if k.startswith("curve|")}
    if not curves or all(len(v) < 2 for v in curves.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for model, pts in curves.items():
        xs = sorted(float(n) for n in pts)
        ys = [pts[k]["mean"] for k in sorted(pts, key=float)]
        ax.plot(xs, ys, "o-", color="#1f77b4", label=f"real only ({model})")
        for k in sorted(pts, key=float):
            ax.plot([float(k)] * len(pts[k]["values"]), pts[k]["values"], ".", color="#1f77b4", alpha=.35)
        for key, w in worth.items():
            if key.startswith("curve|") or not key.endswith(f"|{model}"):
                continue
            ax.axhline(w["target"], color="#ff7f0e", lw=1, alpha=.7)
            ax.text(xs[0], w["target"], " " + key.split("|")[0], fontsize=7, va="bottom", color="#c60")
    ax.set_xscale("log")
    ax.set_xlabel("real training images per class (log scale)")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("Data efficiency: what a synthetic setup is worth in real images", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def answer_text(summary: dict[str, Any]) -> str:
    """The answer in one paragraph: incomplete first, then the controlled verdicts (or, when no
    synthetic setup has a verdict, the best setup's sentence)."""
    from synthmix.reporting.tables import headline_sentence, incomplete_sentence

    lines = verdict_lines(summary)
    if not lines:
        return headline_sentence(summary)
    return incomplete_sentence(summary) + verdict_summary(summary) + "\n" + "\n".join(f"- {line}" for line in lines)
