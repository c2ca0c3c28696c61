"""Report figures (matplotlib, Agg) returned as PNG bytes. Inputs are saved results only."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthmix.reporting.tables import metric_title


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_bars(summary: dict[str, Any], metrics: Sequence[str]) -> bytes | None:
    """One panel per metric: a bar per setup (x model) at the mean, whiskers at the 95 % CI."""
    rows = summary.get("setups", [])
    metrics = [m for m in metrics if any(m in r["metrics"] for r in rows)]
    if not rows or not metrics:
        return None
    plt = _pyplot()
    n = len(metrics)
    ncol = min(3, n)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 0.35 * len(rows) * nrow + 1.6 * nrow),
                             squeeze=False)
    labels = [r["setup"] if len({x["model"] for x in rows}) == 1 else f"{r['setup']} / {r['model']}"
              for r in rows]
    for ax, m in zip(axes.flat, metrics, strict=False):
        means, errs, colours = [], [[], []], []
        for r in rows:
            st = r["metrics"].get(m)
            mean = st["mean"] if st else float("nan")
            lo = st.get("lo") if st else None
            hi = st.get("hi") if st else None
            means.append(mean)
            ok = lo is not None and hi is not None and lo == lo and hi == hi
            errs[0].append(mean - lo if ok else 0.0)
            errs[1].append(hi - mean if ok else 0.0)
            colours.append("#7f7f7f" if r["setup"] == summary.get("reference") else "#1f77b4")
        y = range(len(rows))
        ax.barh(list(y), means, xerr=errs, color=colours, capsize=3)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric_title(m), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def image_grid(groups: Sequence[tuple[str, Sequence[Path]]], cell: int = 64, per_row: int = 8) -> bytes | None:
    """Rows of thumbnails, one row per (title, image paths) group; unreadable files are shown blank."""
    groups = [(t, list(p)[:per_row]) for t, p in groups if p]
    if not groups:
        return None
    import numpy as np
    from PIL import Image

    plt = _pyplot()
    fig, axes = plt.subplots(len(groups), 1, figsize=(per_row * 0.9 + 1.5, 1.0 * len(groups) + 0.3),
                             squeeze=False)
    for ax, (title, paths) in zip(axes[:, 0], groups, strict=True):
        strip = np.full((cell, per_row * (cell + 2), 3), 255, dtype=np.uint8)
        for i, p in enumerate(paths):
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    # fit the cell both ways: 16-32 px synthetic images are enlarged (nearest: no blur
                    # that would flatter them), large photos are shrunk
                    scale = cell / max(im.size)
                    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
                    a = np.asarray(im.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS))
            except OSError:
                continue
            y0, x0 = (cell - a.shape[0]) // 2, i * (cell + 2) + (cell - a.shape[1]) // 2
            strip[y0:y0 + a.shape[0], x0:x0 + a.shape[1]] = a
        ax.imshow(strip)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.tight_layout()
    return _png(fig)
