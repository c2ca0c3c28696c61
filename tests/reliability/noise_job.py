"""A generation job with a torch-free generator, run as a script by the kill tests.

``python noise_job.py OUT_DIR N [BATCH] [SIZE]`` plans ``N`` images and renders them with
:class:`NoiseGenerator` through the real protocol (``run_generation`` + ``ImageWriter``), so a
kill lands in the same code a real backend uses, but the child starts in well under a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FAIL_EVERY = 7  # every 7th planned row renders NaN: a failed row must survive kills too


class NoiseGenerator:
    """Seeded smooth noise, one ``numpy`` generator per row (image depends on the seed only)."""

    name = "noise"

    def __init__(self, size: int = 96):
        self.size = size

    def render(self, rows):
        out = []
        for r in rows:
            if r["seed"] % FAIL_EVERY == FAIL_EVERY - 1:
                out.append(np.full((self.size, self.size, 3), np.nan))
                continue
            rng = np.random.default_rng(r["seed"])
            out.append(rng.random((self.size, self.size, 3)))
        return out


def planned_rows(n: int) -> list[dict]:
    from synthmix.generation.protocol import planned_id

    return [dict(id=planned_id("noise-job", i), label=["apple", "banana", "orange"][i % 3], split="train",
                 source="noise", generator="noise", seed=i, role="unsorted", method="sample")
            for i in range(n)]


def _die_at_exact_points() -> None:
    """SIGKILL this process at an exact point of the write protocol, chosen by environment:

    ``KILL_BEFORE_ROW=k``: after the k-th image is renamed into place, before its row is
    appended; ``KILL_MID_IMAGE=k``: while the k-th image's temporary file is half written.
    (Polling from outside rarely hits these sub-millisecond windows; this hits them every time.)
    """
    import os
    import signal

    import synthmix.generation.writer as writer

    before_row = int(os.environ.get("KILL_BEFORE_ROW", 0))
    mid_image = int(os.environ.get("KILL_MID_IMAGE", 0))
    if before_row:
        real_append, calls = writer.append_rows, []

        def append_rows(path, rows):
            calls.append(1)
            if len(calls) == before_row:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_append(path, rows)
        writer.append_rows = append_rows
    if mid_image:
        from PIL import Image

        real_save, saves = Image.Image.save, []

        def save(self, fp, *a, **k):
            saves.append(1)
            if len(saves) == mid_image:
                real_save(self, fp, *a, **k)
                data = Path(fp).read_bytes()
                Path(fp).write_bytes(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(self, fp, *a, **k)
        Image.Image.save = save


def main(out_dir: str, n: str, batch: str = "3", size: str = "96") -> dict:
    from synthmix.generation.protocol import run_generation
    from synthmix.generation.writer import ImageWriter

    _die_at_exact_points()

    out = Path(out_dir)
    return run_generation(NoiseGenerator(int(size)), planned_rows(int(n)),
                          ImageWriter(out / "manifest.jsonl", out / "images"), batch_size=int(batch))


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
