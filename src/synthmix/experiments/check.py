"""``synthmix check RUN_DIR``: is a finished study run complete and sound?

Asserts (exit 1 with the reasons otherwise): zero failed, blocked or pending cells; every setup
has all its seeds; every setup that asks for synthetic images trained on more than zero of them;
the report exists and every image in it is an embedded PNG; verdicts exist for the synthetic
setups. The test suite and CI run it on the README's own commands.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path


def problems(run: Path) -> list[str]:
    from synthmix.experiments.results import aggregate

    out = []
    summary = aggregate(run)
    for c in summary["incomplete"]:
        out.append(f"cell {c['cell']} is {c['state']}: {c.get('message')}")
    for s in summary["setups"]:
        if s["n_done"] != s["n_cells"]:
            out.append(f"setup {s['setup']}: {s['n_done']} of {s['n_cells']} seeds done")
        # synthetic images enter a CE cell as training rows, or as Outlier Exposure outliers
        if s.get("synthetic") and s.get("loss") == "ce" and not (s["compute"].get("n_synthetic")
                                                                 or s["compute"].get("outliers")):
            out.append(f"setup {s['setup']} asks for synthetic images but trained on none")
    if any(s.get("synthetic") and not s.get("control") for s in summary["setups"]):
        if not (summary.get("verdict") or {}).get("comparisons"):
            out.append("no verdict for the synthetic setups")
    report = run / "report.html"
    if not report.exists():
        out.append(f"{report} is missing")
    else:
        html = report.read_text()
        srcs = re.findall(r'<img[^>]*src="([^"]*)"', html)
        if not srcs:
            out.append("the report has no image")
        for src in srcs:
            if not src.startswith("data:image/png;base64,") or \
                    not base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG"):
                out.append(f"the report has a missing or broken image: {src[:60]}")
    return out
