"""Report section "The synthetic images", built from a saved ``diagnostics.json`` only.

``synthetic_section_html(diag_dir, title=None) -> str``: an HTML fragment (``<section>``, images
inline as base64 PNG, text escaped) with the feature space named above the per-set, per-class
table, the copy test, CAS when present, the sample grid per class x role and the closest pairs
against the real train and test images. Uses the class names ``fig``, ``wide``, ``cap``, ``sub``
of the main report's stylesheet.

``relation_html(diagnostics_by_setup, effects, effect_name) -> str``: "does it predict
usefulness" — the Spearman table of ``diagnostics.relate.relate`` (marked descriptive under 5
setups) and a scatter per diagnostic (``relation_png``).
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path
from typing import Any

COLUMNS = (("n", "n"), ("precision", "precision"), ("recall", "recall"), ("density", "density"),
           ("coverage", "coverage"), ("fid", "FID"), ("kid", "KID"), ("diversity_ratio", "diversity (syn/real)"),
           ("agreement", "label agreement"), ("memorised_train", "copy of train"), ("leak_test", "copy of test"))


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return str(v) if isinstance(v, int) else f"{v:.3f}"


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    return (f'<div class="fig wide"><img src="{_uri(path.read_bytes())}" alt="{escape(alt)}">'
            f'<div class="cap">{escape(alt)}</div></div>')


def diagnostics_table_html(diag: dict[str, Any]) -> str:
    """The per-set, per-class table (real validation images as the reference rows)."""
    cols = COLUMNS
    if any("clip_score" in d["overall"] for d in diag["groups"].values()):
        cols = (*COLUMNS, ("clip_score", "CLIP score"))
    head = "".join(f"<th>{escape(t)}</th>" for _, t in cols)
    body = []
    sets = [(g, d, False) for g, d in diag["groups"].items()]
    sets += [(f"{g} (reference)", d, True) for g, d in (diag.get("reference") or {}).items()]
    for g, d, is_ref in sets:
        for cls, m in [("all", d["overall"]), *d["per_class"].items()]:
            cells = "".join(f"<td>{_fmt(m.get(k))}</td>" for k, _ in cols)
            cls_attr = ' class="ref"' if is_ref else ""
            body.append(f'<tr{cls_attr}><td class="name">{escape(g)}</td><td class="name">{escape(cls)}</td>'
                        f"{cells}</tr>")
    return (f'<table class="diagnostics"><thead><tr><th class="name">set</th><th class="name">class</th>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


def synthetic_section_html(diag_dir: str | Path, title: str | None = None) -> str:
    """The section for one ``inspect_manifest`` output folder (see the module docstring)."""
    from synthmix.core.io import read_json

    diag_dir = Path(diag_dir)
    diag = read_json(diag_dir / "diagnostics.json")
    fs, ct = diag["feature_space"], diag["copy_test"]
    real = diag["real"]
    parts = [f'<section class="synthetic"><h2 id="synthetic">{escape(title or "The synthetic images")}</h2>',
             f'<p class="sub">Each set of synthetic images against the real training images of the same class '
             f'({real["train"]} train, {real["val"]} validation, {real["test"]} test images). Feature space: '
             f'<b>{escape(fs["name"])}</b>. {escape(fs["note"])}</p>',
             diagnostics_table_html(diag),
             '<p class="sub">precision / density: synthetic images inside the real images\' k-NN balls '
             "(fidelity); recall / coverage: real images covered by the synthetic ones (variety); FID / KID: "
             "distance between the two feature distributions (lower is closer; per class they rest on few "
             "images, KID is unbiased, FID is not); diversity: mean pairwise feature distance, synthetic / real; "
             "label agreement: the real-trained classifier predicts the intended class. Copy test: feature "
             f"cosine ≥ {ct['cosine_threshold']:.3f} ({escape(ct['cosine_threshold_source'])}) or mean pixel "
             f"difference ≤ {ct['pixel_threshold']} at {ct['pixel_size']} px to the nearest real image. The "
             "reference rows put real validation images through the same computation.</p>"]
    if diag.get("cas"):
        c = diag["cas"]
        parts.append(f'<p>Classification Accuracy Score (trained on synthetic images only, tested on real '
                     f'test images): <b>{c["cas"]:.3f}</b> over {len(c["per_run"])} run(s).</p>')
    for w in diag.get("warnings") or []:
        parts.append(f'<p class="sub">Note: {escape(w)}</p>')
    for g, d in diag["groups"].items():
        grids = d.get("grids") or {}
        if grids.get("samples"):
            parts.append(_img(diag_dir / grids["samples"], f"{g}: samples, one row per class "
                              f"({', '.join(d['per_class'])})"))
        if grids.get("pairs_train"):
            parts.append(_img(diag_dir / grids["pairs_train"], f"{g}: the synthetic images closest in pixels to "
                              "a real TRAINING image (each pair: synthetic, then its nearest real image)"))
        if grids.get("pairs_test"):
            parts.append(_img(diag_dir / grids["pairs_test"], f"{g}: the synthetic images closest to a real "
                              "TEST image (a near-copy here would inflate test accuracy)"))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def relation_png(diagnostics_by_setup: dict[str, dict[str, float]], effects: dict[str, float],
                 effect_name: str = "Δ accuracy", names: list[str] | None = None) -> bytes | None:
    """One scatter per diagnostic: its value per setup (x) vs the setup's effect (y), rho in the title."""
    from synthmix.diagnostics.relate import relate

    rows = [r for r in relate(diagnostics_by_setup, effects) if r["n"] >= 2]
    if names is not None:
        rows = [r for r in rows if r["diagnostic"] in names]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = min(4, len(rows))
    nrow = (len(rows) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    for ax, r in zip(axes.flat, rows, strict=False):
        xs = [diagnostics_by_setup[s][r["diagnostic"]] for s in r["setups"]]
        ys = [effects[s] for s in r["setups"]]
        ax.scatter(xs, ys, color="#1f77b4")
        for x, y, s in zip(xs, ys, r["setups"], strict=True):
            ax.annotate(s, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.axhline(0, color="#999", lw=0.8)
        tag = " (descriptive)" if r["descriptive"] else ""
        ax.set_title(f"{r['diagnostic']}: ρ = {r['spearman']:+.2f}, n = {r['n']}{tag}", fontsize=8)
        ax.set_ylabel(effect_name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def relation_html(diagnostics_by_setup: dict[str, dict[str, float]], effects: dict[str, float],
                  effect_name: str = "Δ accuracy") -> str:
    """'Does it predict usefulness?': Spearman table + scatter plots, descriptive under 5 setups."""
    from synthmix.diagnostics.relate import relate

    rows = relate(diagnostics_by_setup, effects)
    if not rows:
        return ""
    n_max = max(r["n"] for r in rows)
    body = "".join(
        f'<tr><td class="name">{escape(r["diagnostic"])}</td><td>{_fmt(r["spearman"])}</td><td>{r["n"]}</td>'
        f'<td>{"descriptive" if r["descriptive"] else _fmt(r["p_value"])}</td></tr>' for r in rows)
    png = relation_png(diagnostics_by_setup, effects, effect_name)
    warn = (f"Only {n_max} setup(s): the correlations describe these setups, they do not test anything."
            if n_max < 5 else "p-values are uncorrected for the number of diagnostics tried.")
    return (f'<h3 id="synthetic-vs-gain">Does a diagnostic predict the gain?</h3><p class="sub">Spearman rank '
            f"correlation between each diagnostic of a setup's synthetic images and its {escape(effect_name)} "
            f"(controlled, vs real only). {escape(warn)}</p>"
            f'<table class="relation"><thead><tr><th class="name">diagnostic</th><th>Spearman ρ</th><th>n</th>'
            f"<th>p</th></tr></thead><tbody>{body}</tbody></table>"
            + (f'<div class="fig wide"><img src="{_uri(png)}" alt="diagnostics vs {escape(effect_name)}"></div>'
               if png else ""))
