"""Synthetic-data diagnostics at scale: every metric of ``synthmix inspect`` on N synthetic and
N real random feature vectors (default 10,000 x 512-d), timed one by one, plus a side-by-side
check of the batched matrix-product k-NN against the usual full-distance-matrix implementation
(sklearn ``pairwise_distances`` + ``np.partition``, as in the reference ``prdc`` package) on a
smaller subset that fits that implementation's memory.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/diagnostics.py [--n 10000] [--dim 512]
        [--threads 2] [--ref-n 3000] [--md docs/bench/diagnostics.md]

Target (issue 18): all metrics on 10,000 x 512-d in under a minute on 2 CPU cores. On a shared
machine the wall time mostly measures the other jobs; the CPU seconds the process used (all its
threads) barely depend on them: on an idle machine the wall time lies between CPU / threads and CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def reference_prdc(real, fake, k):
    """Full-matrix P/R/D/C (the reference ``prdc`` package's approach), for the comparison."""
    import numpy as np
    from sklearn.metrics import pairwise_distances

    def radii(x):
        d = pairwise_distances(x, x)
        return np.partition(d, k, axis=1)[:, k]

    rr, rf = radii(real), radii(fake)
    d = pairwise_distances(real, fake)  # [N, M]
    return {"precision": float((d < rr[:, None]).any(0).mean()),
            "recall": float((d < rf[None, :]).any(1).mean()),
            "density": float((d < rr[:, None]).sum(0).mean() / k),
            "coverage": float((d.min(1) < rr).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref-n", type=int, default=3000, help="size of the side-by-side k-NN comparison")
    ap.add_argument("--pixel-size", type=int, default=16, help="side of the low-res pixel copies")
    ap.add_argument("--md", default=None, help="append a markdown record to this file")
    a = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from synthmix.diagnostics.diversity import diversity
    from synthmix.diagnostics.fid import fid, kid
    from synthmix.diagnostics.manifold import prdc
    from synthmix.diagnostics.memorisation import memorisation_summary, nearest_cosine, nearest_pixels

    rng = np.random.default_rng(0)
    real = rng.normal(size=(a.n, a.dim)).astype(np.float32)
    fake = (rng.normal(size=(a.n, a.dim)) * 1.1 + 0.05).astype(np.float32)
    p = 3 * a.pixel_size ** 2
    real_px = rng.random((a.n, p), dtype=np.float32)
    fake_px = rng.random((a.n, p), dtype=np.float32)

    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    out: dict[str, object] = {}

    def timed(name, fn):
        t0, c0 = time.perf_counter(), time.process_time()
        out[name] = fn()
        times[name] = time.perf_counter() - t0
        cpu[name] = time.process_time() - c0  # all threads of this process: barely depends on the load

    timed("precision/recall/density/coverage (k=5)", lambda: prdc(real, fake, k=5))
    timed("FID", lambda: fid(real, fake))
    timed("KID (100 subsets x 1000)", lambda: kid(real, fake))
    timed("diversity (both sets)", lambda: diversity(real, fake))
    timed("memorisation: feature cosine NN vs train", lambda: nearest_cosine(fake, real))
    timed(f"memorisation: pixel NN ({a.pixel_size}px) vs train",
          lambda: nearest_pixels(fake_px, real_px))
    timed("memorisation: feature cosine NN vs test", lambda: nearest_cosine(fake, real[: a.n // 5]))
    memorisation_summary(out["memorisation: feature cosine NN vs train"][1],
                         out[f"memorisation: pixel NN ({a.pixel_size}px) vs train"][1],
                         cosine_threshold=0.95, pixel_threshold=0.02)
    total, total_cpu = sum(times.values()), sum(cpu.values())

    m = min(a.ref_n, a.n)
    t0 = time.perf_counter()
    ours = prdc(real[:m], fake[:m], k=5)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_prdc(real[:m], fake[:m], 5)
    t_ref = time.perf_counter() - t0
    agree = max(abs(ours[k] - ref[k]) for k in ref)

    load = os.getloadavg()
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"torch threads {a.threads}, load average before/after "
             f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
             f"data: {a.n} synthetic + {a.n} real random features x {a.dim}-d; pixels {p}-d", "",
             "| metric | wall seconds | CPU seconds (all threads) |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.2f} | {cpu[k]:.2f} |" for k, v in times.items()]
    lines += [f"| **all metrics** | **{total:.2f}** | **{total_cpu:.2f}** |", "",
              f"side by side, P/R/D/C on {m} x {m}: batched matmul k-NN {t_ours:.2f} s, "
              f"full-matrix reference (sklearn pairwise_distances) {t_ref:.2f} s, "
              f"ratio {t_ref / t_ours:.2f}x; largest difference of the four values {agree:.2e}",
              f"values at {a.n}: " + ", ".join(f"{k} {v:.4f}" for k, v in out[
                  "precision/recall/density/coverage (k=5)"].items() if isinstance(v, float))
              + f", FID {out['FID']:.2f}, KID {out['KID (100 subsets x 1000)']['kid']:.4f}"]
    text = "\n".join(lines)
    print(text)
    if a.md:
        with open(a.md, "a", encoding="utf-8") as fh:
            fh.write(text + "\n\n")


if __name__ == "__main__":
    main()
