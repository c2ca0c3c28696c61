"""The demo's per-cell speed levers, each measured side by side in one run (issue 19, item 3).

    OMP_NUM_THREADS=1 python benchmarks/demo_speed.py [--seeds 0 1 2 3 4 5] [--out DIR]

1. A CE cell of the demo (bundled fruits, small CNN at 32 px, 180 AdamW steps, the demo's strong
   augmentation, label smoothing, cosine): the old loop settings (fp32, NCHW, per-tensor AdamW)
   against the demo's (``precision: auto`` = bf16 autocast on this CPU, ``channels_last``, fused
   AdamW), interleaved per seed: training seconds (wall and CPU of the fit) and test / val accuracy.
2. The bare training step (forward, CE, backward, AdamW; batch 32) with each combination of the
   levers. Inference of the 3,025 corrupted test images (11 corruptions x 5 severities x 55) by the small
   CNN: NCHW against channels-last (what ``evaluation.features.conv_layout`` does), and whether
   the predictions agree.
3. ViM's fit on a SupCon cell's 4096-d features of 187 train images: the covariance
   eigendecomposition (4096 x 4096, the previous code) against the SVD of the 187 x 4096 matrix.

One torch thread (the demo's workers run one each). Prints a markdown report.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

AUGMENT = {"hflip": 0.5, "crop_scale": [0.4, 1.0], "margin": 0.2, "margin_prob": 0.5, "rotation": 20,
           "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}
OLD = {"precision": "fp32", "channels_last": False}
NEW = {"precision": "auto", "channels_last": True}


def _train_cells(seeds: list[int], out: Path) -> dict[str, list[dict[str, float]]]:
    import torch

    from synthmix.core.device import resolve_precision
    from synthmix.data.bundled import fruits_path
    from synthmix.training import loop
    from synthmix.training.train import TrainRunConfig, prepare_data, train_run

    def base(settings: dict) -> TrainRunConfig:
        cfg = TrainRunConfig(folder=fruits_path(), val_fraction=0.15, gradcam=False, eval_splits=["val", "test"],
                             figure_splits=[], train={
                                 "model": "small_cnn", "input_size": 32, "steps": 180, "batch_size": 32, "lr": 1e-3,
                                 "weight_decay": 5e-4, "schedule": "cosine", "warmup_epochs": 1,
                                 "label_smoothing": 0.1, "augment": AUGMENT, "device": "cpu", "num_threads": 1,
                                 **settings})
        cfg = prepare_data(cfg.resolved(), out / "data")
        return cfg.model_copy(update={"cache_dir": (out / "cache").resolve()})

    make_optimizer = loop._make_optimizer

    def per_tensor_adamw(model, cfg):  # the loop's optimizer before fused AdamW
        groups = [{k: g[k] for k in ("params", "weight_decay", "lr")} for g in make_optimizer(model, cfg).param_groups]
        return torch.optim.AdamW(groups, lr=cfg.lr, foreach=False, fused=False)

    res: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    print(f"precision auto resolves to {resolve_precision('auto', 'cpu')} on this CPU", flush=True)
    for seed in seeds:
        for name, settings in (("old", OLD), ("new", NEW)):
            run = out / f"{name}-{seed}"
            shutil.rmtree(run, ignore_errors=True)
            loop._make_optimizer = per_tensor_adamw if name == "old" else make_optimizer
            c0 = time.process_time()
            try:
                r = train_run(base(settings).with_seed(seed), run, progress=False)
            finally:
                loop._make_optimizer = make_optimizer
            res[name].append({"fit_s": r["fit"]["train_seconds"], "cell_cpu_s": time.process_time() - c0,
                              "test": r["eval"]["test"]["accuracy"], "val": r["eval"]["val"]["accuracy"]})
            print(f"seed {seed} {name}: {res[name][-1]}", flush=True)
    return res


def _step(reps: int = 5, steps: int = 40) -> dict[str, float]:
    """ms per bare training step (forward, CE, backward, AdamW) of the small CNN, batch 32, 32 px,
    for each combination of the three levers; median over ``reps`` interleaved rounds."""
    import torch
    import torch.nn.functional as F

    from synthmix.models import create_model

    variants = {"fp32": (False, False, False), "fused AdamW": (False, False, True),
                "channels-last + fused": (True, False, True), "bf16 + fused": (False, True, True),
                "bf16 + channels-last": (True, True, False), "bf16 + channels-last + fused": (True, True, True)}
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 3, (32,))
    runs = {}
    for name, (cl, bf16, fused) in variants.items():
        torch.manual_seed(0)
        layout = torch.channels_last if cl else torch.contiguous_format
        model = create_model("small_cnn", 3, input_size=32).to(memory_format=layout)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused, foreach=False if not fused else None)
        xb = x.contiguous(memory_format=layout)

        def step(model=model, opt=opt, xb=xb, bf16=bf16):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(xb).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for _ in range(5):
            step()
        runs[name] = step
    times: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(reps):
        for n, step in runs.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            times[n].append((time.perf_counter() - t) / steps * 1000)
    return {n: statistics.median(v) for n, v in times.items()}


def _inference(reps: int = 3) -> dict[str, float]:
    import torch

    from synthmix.evaluation.features import conv_layout
    from synthmix.models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", 3, input_size=32).eval()
    x = torch.randn(3025, 3, 32, 32)

    def run(channels_last: bool) -> tuple[float, torch.Tensor]:
        t = time.perf_counter()
        with torch.no_grad():
            if channels_last:
                with conv_layout(model) as layout:
                    z = torch.cat([model(x[i:i + 256].contiguous(memory_format=layout)) for i in range(0, 3025, 256)])
            else:
                z = torch.cat([model(x[i:i + 256]) for i in range(0, 3025, 256)])
        return time.perf_counter() - t, z

    times: dict[str, list[float]] = {"nchw": [], "channels_last": []}
    for _ in range(reps):
        t0, a = run(False)
        t1, b = run(True)
        times["nchw"].append(t0)
        times["channels_last"].append(t1)
    return {"nchw_s": statistics.median(times["nchw"]), "cl_s": statistics.median(times["channels_last"]),
            "agree": float((a.argmax(1) == b.argmax(1)).float().mean()), "max_abs_diff": float((a - b).abs().max())}


def _vim(reps: int = 3) -> dict[str, float]:
    import numpy as np

    from synthmix.evaluation.ood.posthoc import LinearHead, ViMDetector

    rng = np.random.default_rng(0)
    h = np.abs(rng.normal(size=(187, 4096)))
    head = LinearHead(rng.normal(size=(3, 4096)), rng.normal(size=3))
    eig, svd = [], []
    for _ in range(reps):
        t = time.perf_counter()
        x = h - (-np.linalg.pinv(head.W) @ head.b)
        np.linalg.eigh(x.T @ x / len(x))
        eig.append(time.perf_counter() - t)
        t = time.perf_counter()
        ViMDetector.fit(h, head)
        svd.append(time.perf_counter() - t)
    return {"eigh_s": statistics.median(eig), "svd_s": statistics.median(svd)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import os

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="synthmix-demo-speed-"))
    load = os.getloadavg()[0]
    cells = _train_cells(args.seeds, out)
    step = _step()
    inf = _inference()
    vim = _vim()

    def m(name: str, key: str) -> float:
        return statistics.mean(r[key] for r in cells[name])

    print(f"\nMachine: {os.cpu_count()} CPUs, one torch / BLAS thread, load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; seeds {args.seeds}.\n")
    print("| CE cell (180 steps, small CNN, 32 px) | fit s | cell CPU s | test acc. | val acc. |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("old", "fp32, NCHW, per-tensor AdamW"), ("new", "precision auto, channels-last, fused AdamW")):
        print(f"| {label} | {m(name, 'fit_s'):.2f} | {m(name, 'cell_cpu_s'):.2f} | {m(name, 'test'):.3f} | "
              f"{m(name, 'val'):.3f} |")
    d = [n["test"] - o["test"] for o, n in zip(cells["old"], cells["new"], strict=True)]
    print(f"\nfit speed-up {m('old', 'fit_s') / m('new', 'fit_s'):.2f}x, cell CPU "
          f"{m('old', 'cell_cpu_s') / m('new', 'cell_cpu_s'):.2f}x; paired Δ test accuracy (new - old) "
          f"mean {statistics.mean(d):+.3f}, per seed {[round(v, 3) for v in d]}")
    print("\nbare training step (ms, median): " + ", ".join(f"{n} {v:.1f}" for n, v in step.items()))
    print(f"\ninference of 3,025 images: NCHW {inf['nchw_s']:.3f} s, channels-last {inf['cl_s']:.3f} s "
          f"({inf['nchw_s'] / inf['cl_s']:.2f}x); argmax agreement {inf['agree']:.4f}, max |Δ logit| "
          f"{inf['max_abs_diff']:.2e}")
    print(f"ViM fit on 187 x 4096: covariance eigh {vim['eigh_s']:.2f} s, SVD {vim['svd_s']:.3f} s "
          f"({vim['eigh_s'] / vim['svd_s']:.0f}x)")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
