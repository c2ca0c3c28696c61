"""Roofline of the CPU (or GPU) path: measured fp32 / bf16 matmul and conv2d peak of this machine,
FLOPs counted per step of the embedded generator's training, the classifier's training and
DDIM sampling, and the achieved FLOP/s as a fraction of the measured peak, in one run.

    .venv/bin/python benchmarks/roofline.py [--threads 1] [--reps 7] [--device cpu] [--md FILE]

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and
attention, forward + backward; element-wise ops, norms and the optimizer are not counted, so
the achieved FLOP/s is a lower bound on work done). Times are medians over ``--reps`` steps
after a warm-up, the fp32 and bf16 variants of each workload interleaved so machine load hits
both alike. Peaks: the best of ``--reps`` calls of a 1024^3 matmul and a 32 x 128 -> 128
channel 3x3 conv at 32x32 px (GPU: 8192^3, 256 x 256 -> 256 at 64x64), fp32 and bf16 interleaved. On a CPU the oneDNN verbose log of
one bf16 conv / matmul shows which kernel (ISA) ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def peak_ops(device, mm_n: int = 1024, conv: tuple = (32, 128, 32)):
    """{(kind, precision): (callable, flop)} of the peak probes (matmul n^3, conv NCHW 3x3)."""
    import torch
    import torch.nn.functional as F

    out = {}
    n_b, ch, px = conv
    for prec, name in DTYPES.items():
        dt = getattr(torch, name)
        a, b = torch.randn(mm_n, mm_n, device=device, dtype=dt), torch.randn(mm_n, mm_n, device=device, dtype=dt)
        out[("matmul", prec)] = ((lambda a=a, b=b: a @ b), 2 * mm_n ** 3)
        x = torch.randn(n_b, ch, px, px, device=device, dtype=dt)
        w = torch.randn(ch, ch, 3, 3, device=device, dtype=dt)
        out[("conv2d", prec)] = ((lambda x=x, w=w: F.conv2d(x, w, padding=1)), 2 * n_b * ch * ch * 9 * px * px)
    return out


def measure_peaks(device, reps: int) -> dict:
    """{(kind, precision): best GFLOP/s} over ``reps`` interleaved calls (GPU: larger probes)."""
    import torch

    gpu = torch.device(device).type == "cuda"
    ops = peak_ops(device, mm_n=8192 if gpu else 1024, conv=(256, 256, 64) if gpu else (32, 128, 32))
    best = {k: 0.0 for k in ops}
    for fn, _ in ops.values():
        fn()  # warm-up (oneDNN primitive creation)
    for _ in range(reps):
        for k, (fn, flop) in ops.items():
            best[k] = max(best[k], flop / _timed(fn, device) / 1e9)
    return best


def onednn_kernels() -> dict[str, list[str]]:
    """The oneDNN primitive implementations that ran one bf16 conv2d and one bf16 matmul (CPU),
    read from oneDNN's verbose log (written to fd 1, so captured at the file-descriptor level)."""
    import torch

    ops = peak_ops("cpu", mm_n=256, conv=(4, 64, 16))
    found = {}
    for kind in ("conv2d", "matmul"):
        fn = ops[(kind, "bf16")][0]
        with tempfile.TemporaryFile(mode="w+b") as tmp:
            sys.stdout.flush()
            saved = os.dup(1)
            os.dup2(tmp.fileno(), 1)
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    fn()
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode(errors="replace").splitlines()
        impls = set()
        for line in lines:
            f = line.split(",")
            if f[0] == "onednn_verbose" and "exec" in f and len(f) > f.index("exec") + 3:
                i = f.index("exec")
                if f[i + 2] != "reorder":  # layout conversions around the op
                    impls.add(f"{f[i + 2]} {f[i + 3]}")
        found[kind] = sorted(impls) or ["(no oneDNN primitive: another library ran it)"]
    return found


def count_flops(fn) -> int:
    """FLOPs of the matmuls / convolutions / attention that ``fn()`` runs (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def generator_step(precision: str, device, batch: int = 32, resolution: int = 32, size: str = "small"):
    """A closure running one real training step of the embedded generator (the demo preset)."""
    import torch

    from synthmix.generation.embedded.config import ModelConfig, TrainConfig
    from synthmix.generation.embedded.train import build_training, train_step

    cfg = TrainConfig(manifest="-", out_dir="-", resolution=resolution, model=ModelConfig(size=size),
                      batch_size=batch, precision=precision, device=str(device))
    n_cls = 3
    model, forward, ema, opt, sched = build_training(cfg, n_cls, device)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (220, 3, resolution, resolution), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, n_cls, (220,), generator=g).to(device)
    state = {"step": 0}

    def step():
        train_step(model, forward, ema, opt, sched, images, labels, n_cls, cfg, state["step"], g)
        state["step"] += 1
    return step


def classifier_step(precision: str, device, batch: int = 32, resolution: int = 32, fast: bool = False):
    """One training step of the fruit study's small_cnn (augment_batch + CE + AdamW); ``fast``: the
    training loop's settings since the demo-speed work (channels-last model and batches, fused AdamW)."""
    import torch
    import torch.nn.functional as F

    from synthmix.data.augment import AugmentConfig, augment_batch
    from synthmix.generation.embedded.diffusion import autocast
    from synthmix.models import create_model

    torch.manual_seed(0)
    layout = torch.channels_last if fast else torch.contiguous_format
    model = create_model("small_cnn", 3, input_size=resolution).to(device, memory_format=layout).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True if fast else None)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (220, 3, resolution, resolution), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, 3, (220,), generator=g).to(device)
    aug = AugmentConfig(hflip=0.5, crop_scale=(0.75, 1.0), brightness=0.1, contrast=0.1)

    def step():
        idx = torch.randint(0, 220, (batch,), generator=g).to(device)
        xb = (augment_batch(images[idx], aug, g) * 2 - 1).contiguous(memory_format=layout)
        with autocast(device, precision):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def sampling_call(precision: str, device, batch: int = 64, steps: int = 20, guidance: float = 2.0,
                  resolution: int = 32):
    """One DDIM call (``steps`` steps, guidance: 2 x ``batch`` rows per UNet call) of the small model."""
    import torch

    from synthmix.generation.embedded.config import ModelConfig
    from synthmix.generation.embedded.diffusion import denoise
    from synthmix.generation.embedded.unet import ClassConditionalUNet

    torch.manual_seed(0)
    mcfg = ModelConfig(size="small")
    model = ClassConditionalUNet(mcfg, 3, resolution).to(device).eval().requires_grad_(False)
    cond = torch.arange(batch) % 3
    gens = [torch.Generator().manual_seed(i) for i in range(batch)]

    def call():
        denoise(model, mcfg, cond, gens, steps=steps, guidance=guidance, sampler="ddim", precision=precision)
    return call


def measure_workloads(device, reps: int) -> list[dict]:
    """Per workload and precision: FLOPs per call, median seconds (interleaved), GFLOP/s."""
    import torch

    rows = []
    def low_res(p, d):
        return generator_step(p, d, resolution=16)

    def classifier_fast(p, d):
        return classifier_step(p, d, fast=True)

    for name, make, per in (("generator train step (small, 32 px, batch 32)", generator_step, "step"),
                            ("generator train step, low_res_steps phase (16 px)", low_res, "step"),
                            ("classifier train step (small_cnn, 32 px, batch 32)", classifier_step, "step"),
                            ("classifier train step, channels-last + fused AdamW", classifier_fast, "step"),
                            ("DDIM sampling (small, 20 steps, guidance 2, batch 64)", sampling_call, "call")):
        fns = {p: make(p, device) for p in DTYPES}
        flops = {p: count_flops(fn) for p, fn in fns.items()}  # also the warm-up call
        times = {p: [] for p in DTYPES}
        cpu = {p: [] for p in DTYPES}
        n = reps if per == "step" else max(2, reps // 3)
        for _ in range(n):
            for p, fn in fns.items():
                c0 = time.process_time()
                times[p].append(_timed(fn, device))
                cpu[p].append(time.process_time() - c0)
        for p in DTYPES:
            sec = statistics.median(times[p])
            # CPU seconds of the process: with one thread, the time it actually ran (robust to other
            # jobs taking the core); on a GPU, wall time is the measure.
            csec = statistics.median(cpu[p]) / max(1, torch.get_num_threads())
            rows.append({"workload": name, "precision": p, "unit": per, "gflop": flops[p] / 1e9, "seconds": sec,
                         "gflops": flops[p] / sec / 1e9, "cpu_seconds": csec, "cpu_gflops": flops[p] / csec / 1e9})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    ap.add_argument("--md", type=Path, default=None, help="append the result as a markdown section here")
    args = ap.parse_args()

    import torch

    from synthmix.core.device import pick_device

    torch.set_num_threads(args.threads)
    device = torch.device(pick_device(args.device))
    load0 = os.getloadavg()
    peaks = measure_peaks(device, max(10, 3 * args.reps))  # best-of: more calls, cheap probes
    kernels = onednn_kernels() if device.type == "cpu" else {}
    work = measure_workloads(device, args.reps)
    load1 = os.getloadavg()
    peak = {p: max(v for (k, q), v in peaks.items() if q == p) for p in DTYPES}

    if device.type == "cpu":
        where = (f"{os.cpu_count()}-core CPU ({torch.backends.cpu.get_cpu_capability()}), "
                 f"{torch.get_num_threads()} torch thread(s), oneDNN bf16 kernels: "
                 + "; ".join(f"{k}: {', '.join(v)}" for k, v in kernels.items()))
    else:
        where = f"{torch.cuda.get_device_name(device)}"
    lines = [
        f"command: `python benchmarks/roofline.py {' '.join(sys.argv[1:])}`",
        f"machine: {where}; torch {torch.__version__}; load average (1 min) {load0[0]:.2f} before, "
        f"{load1[0]:.2f} after",
        "",
        "| peak probe | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind in ("matmul", "conv2d"):
        f32, b16 = peaks[(kind, "fp32")], peaks[(kind, "bf16")]
        gpu = device.type == "cuda"
        probe = (f"matmul {8192 if gpu else 1024}^3" if kind == "matmul" else
                 "conv2d 3x3, 256 x 256 -> 256 ch, 64x64 px" if gpu else "conv2d 3x3, 32 x 128 -> 128 ch, 32x32 px")
        lines.append(f"| {probe} | {f32:,.1f} | {b16:,.1f} | {b16 / f32:.2f}x |")
    lines += ["", f"measured peak (best probe): fp32 {peak['fp32']:,.1f} GFLOP/s, bf16 {peak['bf16']:,.1f} GFLOP/s",
              "",
              "| workload | precision | GFLOP per step/call (counted) | median wall (ms) | median CPU (ms) "
              "| achieved GFLOP/s (wall / CPU) | % of measured peak (wall / CPU; same precision) "
              "| speed-up vs fp32 (wall / CPU) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = {}
    for r in work:
        if r["precision"] == "fp32":
            base[r["workload"]] = (r["seconds"], r["cpu_seconds"])
        b_wall, b_cpu = base[r["workload"]]
        pk = peak[r["precision"]]
        lines.append(f"| {r['workload']} | {r['precision']} | {r['gflop']:.2f} | {1000 * r['seconds']:,.0f} "
                     f"| {1000 * r['cpu_seconds']:,.0f} | {r['gflops']:,.1f} / {r['cpu_gflops']:,.1f} "
                     f"| {100 * r['gflops'] / pk:.0f} % / {100 * r['cpu_gflops'] / pk:.0f} % "
                     f"| {b_wall / r['seconds']:.2f}x / {b_cpu / r['cpu_seconds']:.2f}x |")
    print("\n".join(lines))
    if args.md:
        with open(args.md, "a", encoding="utf-8") as fh:
            fh.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
