"""`synthmix demo --quick` exactly as a user types it: from a folder with the default, RELATIVE
output directory, and from another folder with a relative ``--out``; then `synthmix check` (zero
failed/blocked cells, all seeds, synthetic setups trained on synthetic images, verdicts, a report
whose images load) and the report's tables against results/summary.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from synthmix.core.io import read_json, read_jsonl

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.row, self.td = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-setup" in a:
            self.row = a["data-setup"]
        if tag == "td" and "data-metric" in a:
            self.td = {"setup": self.row, "metric": a["data-metric"], "mean": a["data-mean"], "text": ""}
        if self.td is not None and tag == "span" and "diff" in (a.get("class") or ""):
            self.td["in_diff"] = True

    def handle_endtag(self, tag):
        if tag == "td" and self.td is not None:
            self.cells.append(self.td)
            self.td = None

    def handle_data(self, data):
        if self.td is not None and not self.td.get("in_diff"):
            self.td["text"] += data.strip()


def synthmix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthmix", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    """The quick demo run from a folder as a user's clone, default output ``runs/demo-quick``."""
    root = tmp_path_factory.mktemp("clone")
    res = synthmix("demo", "--quick", cwd=root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = root / "runs" / "demo-quick"
    assert Path(res.stdout.strip().splitlines()[-1]) == (run / "report.html").resolve()
    return run


@pytest.mark.slow
def test_quick_demo_from_the_repository_root_with_relative_paths(quick_run):
    res = synthmix("check", str(quick_run), cwd=quick_run.parent.parent)
    assert res.returncode == 0, res.stdout
    plan = read_json(quick_run / "plan.json")
    kinds = {s["kind"] for s in plan["stages"]}
    assert {"scan", "generator", "generate", "curate", "classical", "train", "evaluate", "far_ood"} <= kinds
    for s in plan["stages"]:  # every stage finished
        assert (quick_run / "stages" / s["key"] / "done.json").exists(), s["label"]
    curated = read_json(quick_run / "stages" / plan["shared"]["curate:embedded"] / "done.json")["summary"]
    assert curated["n_synthetic"] > 0 and curated["counts"].get("in_dist", 0) > 0
    # the report's OOD-by-detector tables: a value per setup and detector of the study, from the summary
    html = (quick_run / "report.html").read_text()
    summary = read_json(quick_run / "results" / "summary.json")
    table = summary["ood_by_detector"]
    assert table["groups"] == ["near", "far"] and set(table["detectors"]) == {"msp", "energy", "knn", "mahalanobis"}
    assert 'id="ood-near-table"' in html and 'id="ood-far-table"' in html
    real = next(r for r in table["rows"] if r["setup"] == "real")
    assert f"{real['ood']['near']['energy']['auroc']:.3f}" in html
    # no path in any manifest or summary is relative to the working directory: all resolve from the run
    for m in quick_run.rglob("*.jsonl"):
        if m.name in ("events.jsonl",) or m.parent.name == "tb":
            continue
        for line in m.read_text().splitlines():
            row = __import__("json").loads(line)
            if row.get("path"):
                p = Path(row["path"])
                assert p.is_absolute() or (m.parent / p).exists(), (m, row["path"])


@pytest.mark.slow
def test_quick_demo_controls_verdicts_and_curve_match_the_summary(quick_run):
    summary = read_json(quick_run / "results" / "summary.json")
    rows = {r["setup"]: r for r in summary["setups"]}
    # the automatic controls were added without a line of YAML
    assert {"real", "real+id", "mix-50-50", "real+aug1", "real@50%"} == set(rows)
    assert rows["real+aug1"]["control"] == "augment" and rows["real@50%"]["control"] == "more_real"
    # equal compute: every CE cell the same optimizer steps
    steps = {c["train_info"]["steps"] for c in summary["cells"]}
    assert len(steps) == 1, steps
    assert "Equal compute" in summary["compute_note"]
    assert rows["real+id"]["compute"]["n_synthetic"] > 0 and rows["real@50%"]["compute"]["n_real"] < \
        rows["real"]["compute"]["n_real"]
    v = summary["verdict"]
    comps = {(c["setup"], c["metric"]): c for c in v["comparisons"]}
    assert {s for s, _ in comps} == {"real+id", "mix-50-50"}
    for c in comps.values():
        assert c["control"] in ("real", "real+aug1") and c["lo"] <= c["delta"] <= c["hi"]
        assert c["verdict"] in ("helps", "hurts", "no detectable effect") and 0 < c["p_holm"] <= 1
        # Δ is the seed-paired difference of the per-cell metrics the summary holds
        if c["metric"] == "test/accuracy":
            a = {x["seed"]: x["metrics"]["test/accuracy"] for x in summary["cells"] if x["setup"] == c["setup"]}
            b = {x["seed"]: x["metrics"]["test/accuracy"] for x in summary["cells"] if x["setup"] == c["control"]}
            assert c["delta"] == pytest.approx(sum(a[s] - b[s] for s in a) / len(a), abs=1e-9)
    curve = v["worth"]["curve|small_cnn"]
    assert len(curve) == 2  # real@50% and the full real set
    html = (quick_run / "report.html").read_text()
    assert 'id="verdicts"' in html and "strongest control" in html and 'id="compute-table"' in html
    for c in comps.values():
        assert c["verdict"] in html
    p = Cells()
    p.feed(html)
    assert len(p.cells) == len(rows) * len(summary["headline"])
    for c in p.cells:
        st = rows[c["setup"]]["metrics"][c["metric"]]
        assert float(c["mean"]) == pytest.approx(st["mean"], abs=1e-12)
        assert float(c["text"].split("±")[0]) == pytest.approx(round(st["mean"], 3), abs=5e-4)
    for cell in summary["cells"]:  # per-cell values are the evaluate stages' saved metrics
        saved = read_json(quick_run / "stages" / cell["evaluate"] / "metrics.json")
        assert cell["metrics"]["test/accuracy"] == saved["test/accuracy"]


@pytest.mark.slow
def test_run_dir_moved_elsewhere_reports_audits_and_resumes(quick_run, tmp_path):
    """Copy the finished run to another folder, run from a third folder with relative paths: the
    report rebuilds, audit passes, and a re-run finds every stage done."""
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(quick_run, moved)
    other = tmp_path / "other"
    other.mkdir()
    rel = os.path.relpath(moved, other)
    res = synthmix("report", rel, cwd=other)
    assert res.returncode == 0, res.stderr[-2000:]
    res = synthmix("audit", rel, cwd=other)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    res = synthmix("demo", "--quick", "--out", rel, cwd=other)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    said = " ".join((res.stdout + res.stderr).split())  # rich wraps long lines
    assert ": 0 stages ran," in said and "0 failed, 0 blocked" in said, said[-600:]
    assert synthmix("check", rel, cwd=other).returncode == 0


@pytest.mark.slow
def test_two_worker_processes_give_the_serial_run_metric_for_metric(quick_run, tmp_path):
    """``--jobs 2`` (cells in two one-thread workers; the quick demo's threads: 1 everywhere) computes
    the same numbers as the serial run: every cell's metrics.json is identical."""
    res = synthmix("demo", "--quick", "--jobs", "2", "--out", str(tmp_path / "par"), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    pids = {e["pid"] for e in read_jsonl(tmp_path / "par" / "events.jsonl") if e.get("kind") == "train"}
    assert len(pids) == 2  # the cells did run in two processes

    def metrics(run: Path) -> dict[str, dict]:
        out = {}
        for d in (run / "stages").iterdir():
            if (d / "metrics.json").exists():
                out[d.name] = json.loads((d / "metrics.json").read_text())
        return out

    serial, par = metrics(quick_run), metrics(tmp_path / "par")
    assert serial and serial.keys() == par.keys()
    assert serial == par
