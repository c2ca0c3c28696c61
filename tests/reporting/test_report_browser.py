"""The report in a real headless browser (Debian chromium): every <img> loads; a screenshot is saved."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_helpers import saved_run

from synthmix.reporting.html import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECKER = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  document.body.setAttribute('data-imgs', String(imgs.length));
  document.body.setAttribute('data-broken', String(broken.length));
  document.body.setAttribute('data-broken-alts', broken.join(' | '));
});
</script>"""

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                 "(apt-get install chromium) - the browser check cannot run")]


def chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={user_dir}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def check_in_browser(report: Path, shot: Path, work: Path) -> dict[str, str]:
    """Load ``report`` in chromium; return the body's data-* attributes set by CHECKER after load,
    and save a screenshot of the unmodified report to ``shot``."""
    probe = work / "probe.html"
    probe.write_text(report.read_text().replace("</body>", CHECKER + "</body>"))
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), user_dir=work / "profile1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(1)))
    res = chromium("--window-size=1280,2600", "--hide-scrollbars", f"--screenshot={shot}", report.as_uri(),
                   user_dir=work / "profile2")
    assert res.returncode == 0, res.stderr[-2000:]
    return attrs


@pytest.mark.slow
def test_report_renders_with_every_image_loaded(tmp_path):
    import numpy as np
    from PIL import Image

    report = build_report(saved_run(tmp_path))
    shot = tmp_path / "report.png"
    attrs = check_in_browser(report, shot, tmp_path)
    assert int(attrs["data-imgs"]) >= 10
    assert attrs["data-broken"] == "0", attrs.get("data-broken-alts")
    with Image.open(shot) as im:
        a = np.asarray(im.convert("L"), dtype=np.float32)
    assert a.shape[1] == 1280 and a.std() > 5  # a rendered page, not a blank one
    keep = os.environ.get("SYNTHMIX_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report-test.png")


def test_a_broken_image_is_detected(tmp_path):
    """The check itself can fail: an <img> with a bad source is reported as broken."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img alt="ok" src="data:image/png;base64,'
                    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==">'
                    '<img alt="missing" src="nowhere.png"></body></html>')
    attrs = check_in_browser(page, tmp_path / "bad.png", tmp_path)
    assert attrs["data-imgs"] == "2" and attrs["data-broken"] == "1" and attrs["data-broken-alts"] == "missing"
