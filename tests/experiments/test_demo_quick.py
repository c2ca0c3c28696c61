"""`synthmix demo --quick` end to end: every stage, then the report's table equals the saved results."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from synthmix.core.io import read_json


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


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, "-m", "synthmix", "demo", "--quick", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    report = Path(res.stdout.strip().splitlines()[-1])
    assert report == (out / "report.html").resolve() and report.exists()

    plan = read_json(out / "plan.json")
    kinds = {s["kind"] for s in plan["stages"]}
    assert {"scan", "generator", "generate", "curate", "train", "evaluate", "far_ood"} <= kinds
    for s in plan["stages"]:  # every stage finished
        assert (out / "stages" / s["key"] / "done.json").exists(), s["label"]
    curated = read_json(out / "stages" / plan["shared"]["curate:embedded"] / "done.json")["summary"]
    assert curated["n_synthetic"] > 0

    summary = read_json(out / "results" / "summary.json")
    assert {"test/accuracy", "test/macro_f1", "test/roc_auc", "ood/near_ood/energy/auroc",
            "ood/near_ood/energy/fpr95", "ood/far_ood/energy/auroc"} <= set(summary["headline"])
    p = Cells()
    p.feed(report.read_text())
    rows = {r["setup"]: r for r in summary["setups"]}
    assert set(rows) == {"real", "mix-50-50"}
    assert len(p.cells) == 2 * len(summary["headline"])
    for c in p.cells:
        st = rows[c["setup"]]["metrics"][c["metric"]]
        assert float(c["mean"]) == pytest.approx(st["mean"], abs=1e-12)
        shown = float(c["text"].split("±")[0])
        assert shown == pytest.approx(round(st["mean"], 3), abs=5e-4)
        assert 0.0 <= st["mean"] <= 1.0
    # per-cell values in the summary are the evaluate stages' saved metrics
    for cell in summary["cells"]:
        saved = read_json(out / "stages" / cell["evaluate"] / "metrics.json")
        assert cell["metrics"]["test/accuracy"] == saved["test/accuracy"]
