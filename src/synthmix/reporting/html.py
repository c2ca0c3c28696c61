"""``synthmix report RUN_DIR``: one self-contained HTML page (images inline as base64 PNG).

Built only from files the run saved: results/summary.json (or the cells' metrics.json),
plan.json, study.yaml, manifests, and the PNG figures each evaluation stage wrote.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from pathlib import Path
from typing import Any

from synthmix.core.io import atomic_write_text, read_json
from synthmix.reporting import plots, verdict
from synthmix.reporting.tables import answer_table, headline_sentence, metric_title

REPORT_NAME = "report.html"
# Figure kinds by file-name keyword, in report order.
FIGURE_KINDS = (("curves", ("roc", "pr_curve", "pr")), ("confusion", ("confusion",)),
                ("gradcam", ("gradcam", "grad_cam", "cam")), ("ood", ("hist", "ood", "score")),
                ("calibration", ("calibration", "reliability")))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _file_uri(path: Path) -> str:
    return data_uri(path.read_bytes())


def figure_kind(path: Path) -> str:
    stem = path.stem.lower()
    for kind, words in FIGURE_KINDS:
        if any(stem == w or stem.startswith(w + "_") or stem.endswith("_" + w) or w in stem.split("_")
               for w in words):
            return kind
    return "other"


def _stage_dir(run: Path, key: str) -> Path:
    return run / "stages" / key


def _manifest_of(run: Path, key: str | None) -> Path | None:
    if not key:
        return None
    done = _stage_dir(run, key) / "done.json"
    if not done.exists():
        return None
    rel = read_json(done).get("summary", {}).get("manifest")
    return _stage_dir(run, key) / rel if rel else None


def _read_rows(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    from synthmix.data.manifest import read_manifest

    return read_manifest(path)


def sample_sections(run: Path, plan: dict[str, Any], per_class: int = 8) -> list[dict[str, Any]]:
    """Thumbnail grids: real train images per class, then each generator's images per class and role."""
    from synthmix.data.manifest import resolve_path

    out = []
    scan = _manifest_of(run, plan["shared"].get("scan"))
    real = [r for r in _read_rows(scan) if r.get("split") == "train" and r.get("source") == "real"]
    classes = sorted({r["label"] for r in real})
    groups = [(f"real · {c}", [resolve_path(scan, r["path"]) for r in sorted(real, key=lambda r: r["id"])
                               if r["label"] == c][:per_class]) for c in classes]
    for name, key in plan["shared"].items():
        kind, _, gen = name.partition(":")
        if kind not in ("curate", "generate") or (kind == "generate" and f"curate:{gen}" in plan["shared"]):
            continue
        m = _manifest_of(run, key)
        rows = [r for r in _read_rows(m) if r.get("source") != "real" and r.get("status") in (None, "ok")
                and r.get("path")]
        roles = sorted({r.get("role") or "unsorted" for r in rows})
        for role in roles:
            for c in sorted({r["label"] for r in rows}):
                paths = [resolve_path(m, r["path"]) for r in sorted(rows, key=lambda r: r["id"])
                         if r["label"] == c and (r.get("role") or "unsorted") == role][:per_class]
                groups.append((f"{gen} {role} · {c}", paths))
    png = plots.image_grid(groups)
    if png:
        rows = ", ".join(t for t, p in groups if p)
        out.append({"title": f"Real vs synthetic samples, one row per group: {rows}", "src": data_uri(png)})
    return out


def data_summary(run: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Counts per label x split of the scanned data and per label x role of each synthetic set."""
    scan = _manifest_of(run, plan["shared"].get("scan"))
    rows = _read_rows(scan)
    real = Counter((r["label"], r["split"]) for r in rows)
    splits = sorted({s for _, s in real})
    scan_info = read_json(_stage_dir(run, plan["shared"]["scan"]) / "done.json").get("summary", {}) \
        if scan else {}
    notes = ", ".join(f"{k.removeprefix('n_')}: {scan_info[k]}" for k in ("n_skipped", "n_problems") if k in scan_info)
    fixes = ", ".join(f"{k} {v}" for k, v in (scan_info.get("fix_counts") or {}).items())
    tables = [{"title": f"Real images ({scan.relative_to(run) if scan else 'not scanned yet'})"
               + (f" — files {notes}" if notes else "") + (f"; fixed on load: {fixes}" if fixes else ""),
               "columns": splits, "rows": [[lab] + [real.get((lab, s), 0) for s in splits]
                                           for lab in sorted({lab for lab, _ in real})]}]
    for name, key in plan["shared"].items():
        kind, _, gen = name.partition(":")
        if kind not in ("generate", "curate"):
            continue
        syn = Counter((r["label"], r.get("role") or "unsorted", r.get("status") or "ok")
                      for r in _read_rows(_manifest_of(run, key)))
        cols = sorted({(ro, st) for _, ro, st in syn})
        tables.append({"title": f"{kind} {gen}", "columns": [f"{ro} ({st})" for ro, st in cols],
                       "rows": [[lab] + [syn.get((lab, ro, st), 0) for ro, st in cols]
                                for lab in sorted({lab for lab, _, _ in syn})]})
    return {"tables": tables}


def cell_figures(run: Path, summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per kind (curves, confusion, gradcam, ood, other): the figures of the first done seed of
    every setup x model that has figures (a study draws them for its first seed), as {title, src}:
    the training run's test-set figures (not val) and the evaluation stage's (OOD histograms,
    extra folders)."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k, _ in FIGURE_KINDS}
    out["other"] = []
    seen: set[tuple[str, str]] = set()
    for c in sorted(summary.get("cells", []), key=lambda c: c["seed"]):
        if not c["done"] or (c["setup"], c["model"]) in seen:
            continue
        files = _figure_files(run, c)
        if not files:
            continue
        seen.add((c["setup"], c["model"]))
        for p, label in files:
            out[figure_kind(p)].append({"title": f"{c['setup']} / {c['model']} (seed {c['seed']}): {label}",
                                        "src": _file_uri(p), "setup": c["setup"]})
    return out


def _figure_files(run: Path, cell: dict[str, Any]) -> list[tuple[Path, str]]:
    """A cell's figures: its training run's own (``<run>/*.png``, ``<run>/eval/<set>/*.png`` except
    the val split) and its evaluation stage's (OOD histograms, extra folders). Image folders a
    stage keeps as data (e.g. far-OOD crops) are not figures."""
    files: list[tuple[Path, str]] = []
    train_dir = _stage_dir(run, cell["train"])
    done = train_dir / "done.json"
    run_rel = read_json(done).get("summary", {}).get("run") if done.exists() else None
    if run_rel:
        rd = train_dir / run_rel
        files += [(p, p.stem) for p in sorted(rd.glob("*.png"))]
        files += [(p, f"{p.parent.name}/{p.stem}") for p in sorted(rd.glob("eval/*/*.png"))
                  if p.parent.name != "val"]
    ed = _stage_dir(run, cell["evaluate"])
    files += [(p, p.stem) for p in sorted(ed.glob("*.png"))]
    files += [(p, f"{p.parent.name}/{p.stem}") for p in sorted(ed.glob("eval/*/*.png"))]
    return files


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``out``) and return its path."""
    import jinja2

    from synthmix.experiments.results import aggregate
    from synthmix.experiments.status import study_status

    run = Path(run_dir)
    if not (run / "plan.json").exists():
        from synthmix.core.errors import SynthmixError

        raise SynthmixError(f"{run}: not a run directory (no plan.json); run `synthmix run CONFIG` first")
    plan = read_json(run / "plan.json")
    # Re-aggregated from the cells' saved metrics, so a report of a run still in progress (or
    # resumed elsewhere) is current; the last run's timing comes from results/summary.json.
    summary = aggregate(run)
    saved = run / "results" / "summary.json"
    if saved.exists():
        summary["run"] = read_json(saved).get("run", {})
    cols, rows = answer_table(summary)
    status = study_status(run)
    env = jinja2.Environment(loader=jinja2.PackageLoader("synthmix.reporting", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    bars = plots.metric_bars(summary, cols)
    forest, curve = verdict.forest_plot(summary), verdict.curve_plot(summary)
    html = env.get_template("report.html.j2").render(
        study=summary.get("study") or plan.get("study"),
        description=_study_field(run, "description"),
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        incomplete=summary.get("incomplete") or [],
        verdict_lines=verdict.verdict_lines(summary),
        verdict_summary=verdict.verdict_summary(summary),
        sentence=headline_sentence(summary),
        caveats=verdict.caveats(summary),
        verdict_rows=verdict.verdict_table(summary),
        forest=data_uri(forest) if forest else None,
        curve=data_uri(curve) if curve else None,
        compute=compute_rows(summary),
        synthetic_sections=synthetic_sections(run, plan, summary),
        corruptions=summary.get("corruptions") or {},
        ood_table=summary.get("ood_by_detector") or {},
        columns=[(c, metric_title(c)) for c in cols],
        rows=rows, reference=summary.get("reference"),
        multi_model=len({r.model for r in rows}) > 1,
        bars=data_uri(bars) if bars else None,
        figures=cell_figures(run, summary),
        samples=sample_sections(run, plan),
        data=data_summary(run, plan),
        status=status,
        run_info=summary.get("run", {}),
        config_text=(run / "study.yaml").read_text() if (run / "study.yaml").exists() else "",
    )
    target = Path(out) if out else run / REPORT_NAME
    atomic_write_text(target, html)
    return target


def synthetic_sections(run: Path, plan: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """'The synthetic images': each generator's diagnostics (inspect stage) and, with two or more
    generators, how each diagnostic relates to the setups' controlled Δ accuracy."""
    from markupsafe import Markup

    from synthmix.diagnostics.inspect import headline
    from synthmix.reporting.synthetic_section import relation_html, synthetic_section_html

    out, diags = [], {}
    for name, key in plan["shared"].items():
        kind, _, gen = name.partition(":")
        d = _stage_dir(run, key) / "diagnostics"
        if kind != "inspect" or not (d / "diagnostics.json").exists():
            continue
        out.append(Markup(synthetic_section_html(d, f"The synthetic images · {gen}")))
        diags[gen] = headline(read_json(d / "diagnostics.json"))
    if len(diags) >= 2:
        gen_of = {c["setup"]: c.get("generator") for c in summary.get("cells", [])}
        effects, by_setup = {}, {}
        for c in (summary.get("verdict") or {}).get("comparisons", []):
            if c["metric"] == "test/accuracy" and gen_of.get(c["setup"]) in diags:
                effects[c["setup"]] = c["delta"]
                by_setup[c["setup"]] = diags[gen_of[c["setup"]]]
        html = relation_html(by_setup, effects, "Δ test accuracy vs the strongest control")
        if html:
            out.append(Markup(html))
    return out


def compute_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per setup: what each cell trained on and how long (means over its finished seeds)."""
    out = []
    for s in summary.get("setups", []):
        c = s.get("compute") or {}
        kind = ("control: " + s["control"]) if s.get("control") else ("synthetic" if s.get("synthetic") else "real")
        out.append({"setup": s["setup"], "model": s["model"], "kind": kind, "mix": s.get("mix") or "",
                    "loss": s.get("loss") or "", **{k: (f"{c[k]:.0f}" if k in c else "–")
                                                     for k in ("steps", "images_seen", "n_real", "n_synthetic")},
                    **{k: (f"{c[k]:.1f}" if k in c else "–") for k in ("seconds", "cpu_seconds")}})
    return out


def _study_field(run: Path, name: str) -> str:
    import yaml

    p = run / "study.yaml"
    return (yaml.safe_load(p.read_text()) or {}).get(name, "") if p.exists() else ""
