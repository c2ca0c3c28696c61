"""The HTML report: built from saved results only; its table shows exactly the saved numbers."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import pytest
from report_helpers import saved_run

from synthmix.experiments.results import aggregate
from synthmix.reporting.html import build_report
from synthmix.reporting.tables import fmt_ci, fmt_diff


class Collect(HTMLParser):
    """<img> sources and the results table's <td data-metric> cells (text, bold, attributes)."""

    def __init__(self):
        super().__init__()
        self.imgs, self.cells, self.row, self._td, self._bold = [], [], None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "tr" and "data-setup" in a:
            self.row = (a["data-setup"], a["data-model"])
        if tag == "td" and "data-metric" in a and self.row:
            self._td = {"setup": self.row[0], "model": self.row[1], **a, "value": "", "diff": "", "bold": False}
        if self._td is not None and tag == "b":
            self._td["bold"] = True
        if self._td is not None and tag == "span" and "diff" in (a.get("class") or ""):
            self._td["_in_diff"] = True

    def handle_endtag(self, tag):
        if tag == "td" and self._td is not None:
            self.cells.append(self._td)
            self._td = None
        if tag == "span" and self._td is not None:
            self._td.pop("_in_diff", None)

    def handle_data(self, data):
        if self._td is not None:
            self._td["diff" if self._td.get("_in_diff") else "value"] += data.strip()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = saved_run(tmp_path_factory.mktemp("report"))
    path = build_report(run)
    return run, path, path.read_text()


def test_table_shows_the_saved_results(report):
    run, _, html = report
    summary = aggregate(run)
    p = Collect()
    p.feed(html)
    rows = {r["setup"]: r for r in summary["setups"]}
    assert len(p.cells) == len(rows) * len(summary["headline"]) == 2 * 7
    for c in p.cells:
        st = rows[c["setup"]]["metrics"][c["data-metric"]]
        assert float(c["data-mean"]) == pytest.approx(st["mean"], abs=1e-12)
        assert c["value"] == fmt_ci(st)
        assert c["diff"] == fmt_diff(rows[c["setup"]]["diff"].get(c["data-metric"]))
    by = {(c["setup"], c["data-metric"]): c for c in p.cells}
    # real-long is 0.04 better on accuracy (over its 2 done seeds) and lower on FPR@95: bold
    assert by[("real-long", "test/accuracy")]["bold"] and not by[("real", "test/accuracy")]["bold"]
    assert by[("real-long", "ood/near_ood/energy/fpr95")]["bold"]
    assert by[("real", "ood/far_ood/energy/auroc")]["bold"] and by[("real-long", "ood/far_ood/energy/auroc")]["bold"]
    assert by[("real-long", "test/accuracy")]["diff"].startswith("Δ +0.040 [")
    assert by[("real", "test/accuracy")]["diff"] == ""


def test_every_image_is_an_embedded_png(report):
    from PIL import Image

    _, _, html = report
    p = Collect()
    p.feed(html)
    assert len(p.imgs) >= 1 + 2 * 4 + 1  # bars, 4 figures per setup, samples
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.verify()


def test_report_sections_and_failures(report):
    _, _, html = report
    for text in ("The answer", "ROC and precision-recall curves", "Confusion matrices", "OOD score histograms",
                 "Grad-CAM", "Samples", "Resolved configuration", "real (reference)", "real · apple"):
        assert text in html
    assert "TrainingError: non-finite loss" in html  # the failed cell and its one-line error
    assert "eval/val" not in html and "val/roc" not in html and "crop_00" not in html


def test_report_of_a_directory_without_a_run_is_an_error(tmp_path):
    from synthmix.core.errors import SynthmixError

    with pytest.raises(SynthmixError, match="not a run directory"):
        build_report(tmp_path)
