"""Embedded generator on the fruits data: train on a step budget, then measure class fidelity,
synthetic-only real-test accuracy and the img2img strength sweep; save the comparison grid.

    .venv/bin/python benchmarks/embedded_fidelity.py --out runs/bench-embedded [--steps 800]
    .venv/bin/python benchmarks/embedded_fidelity.py --out runs/bench-embedded --checkpoint CKPT
    .venv/bin/python benchmarks/embedded_fidelity.py --out D --checkpoint CKPT \
        --settings ddim:20:1.5,ddim:20:2.0,dpmpp:20:2.0,ddim:20:2.0:100:bf16 [--per-class 100]

Prints the report tables (ratios side by side: real-only vs fidelity vs synthetic-only) and writes
report.json + grid.png under --out. Reads ../shared/datasets/fruits (benchmarks may; the product
does not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def speed(threads: int, batch_size: int = 32, resolution: int = 32, reps: int = 9, device: str = "cpu",
          variants: str = "fp32,bf16,fp32+cl,bf16+cl,medium-fp32") -> None:
    """Training step time of speed variants of the demo preset (``small``, 32 px, batch 32),
    measured side by side: the real step (``train_step``: batch draw + augmentation, loss,
    backward, clipping, AdamW, EMA), variants interleaved rep by rep so load hits all alike.
    Variant names: [medium-]fp32|bf16[+cl] (cl = channels_last)."""
    import os
    import statistics
    import time

    import torch

    from synthmix.generation.embedded.config import ModelConfig, TrainConfig
    from synthmix.generation.embedded.train import build_training, train_step
    from synthmix.generation.embedded.unet import count_params

    torch.set_num_threads(threads)
    g0 = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (220, 3, resolution, resolution), dtype=torch.uint8, generator=g0).to(device)
    labels = torch.randint(0, 3, (220,), generator=g0).to(device)
    runs = {}
    for name in variants.split(","):
        size = "medium" if name.startswith("medium-") else "small"
        prec = name.removeprefix("medium-").split("+")[0]
        cfg = TrainConfig(manifest="-", out_dir="-", resolution=resolution, model=ModelConfig(size=size),
                          batch_size=batch_size, precision=prec, channels_last=name.endswith("+cl"), device=device)
        parts = build_training(cfg, 3, device)
        runs[name] = (parts, cfg, torch.Generator().manual_seed(0), [], [])
        train_step(*parts, images, labels, 3, cfg, 0, runs[name][2])  # warm-up
    load0 = os.getloadavg()[0]
    for i in range(reps):
        for parts, cfg, g, wall, cpu in runs.values():
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(*parts, images, labels, 3, cfg, 1 + i, g)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    first = next(iter(runs))
    base = statistics.median(runs[first][3])
    print(f"batch {batch_size}, {resolution} px, {threads} thread(s), device {device}, median of {reps} interleaved "
          f"steps; load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, (parts, _cfg, _g, wall, cpu) in runs.items():
        w, c = statistics.median(wall), statistics.median(cpu)
        print(f"{name:14s} {count_params(parts[0]) / 1e6:5.2f} M params  {1000 * w:6.0f} ms/step wall  "
              f"{1000 * c:6.0f} ms/step CPU  {base / w:.2f}x {first} (wall)")


def sweep_settings(ckpt: Path, manifest: Path, settings: str, per_class: int, out: Path,
                   device: str = "cpu") -> None:
    """Sampling settings side by side on one checkpoint (pure samples only, no img2img):
    ``settings`` = comma-separated ``sampler:steps:guidance[:per_class[:precision]]``. One real-trained
    classifier judges every setting. Selection column: synthetic-only accuracy on the real *train*
    images (never the test split); test is printed next to it for the report."""
    import os
    import time

    import torch

    from synthmix.core.io import atomic_write_json
    from synthmix.generation.embedded.backend import EmbeddedGenerator
    from synthmix.generation.embedded.checkpoint import load_generator
    from synthmix.generation.embedded.fidelity import (
        accuracy_report,
        predict,
        real_split_tensors,
        sample_quality,
        train_classifier,
    )

    loaded = load_generator(str(ckpt), device=device)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    train_cost = {"train_wall_s": round(float(state["elapsed_s"]), 1),
                  "train_cpu_s": round(float(state.get("cpu_s", float("nan"))), 1)}
    classes, res = loaded.classes, loaded.resolution
    train, (xtr, ytr), (xte, yte) = real_split_tensors(manifest, classes, res)
    real_clf = train_classifier(xtr, ytr, len(classes))
    real = accuracy_report(predict(real_clf, xte)[0], yte, classes)
    gens = {}
    results = []
    print(f"checkpoint {loaded.checkpoint} ({loaded.step} steps, trained in {train_cost['train_wall_s']} s wall, "
          f"{train_cost['train_cpu_s']} s CPU); real-only on real test {real['accuracy']:.3f}")
    print(f"{'sampler':8s} {'prec':4s} {'steps':>5s} {'guid':>5s} {'n/cls':>5s} {'fidelity':>8s} {'syn->train':>10s} "
          f"{'syn->test':>9s} {'per class (test)':24s} {'img/s':>6s} load")
    for item in settings.split(","):
        parts = item.split(":")
        sampler, steps, guidance = parts[0], int(parts[1]), float(parts[2])
        n = int(parts[3]) if len(parts) > 3 and parts[3] else per_class
        prec = parts[4] if len(parts) > 4 else "fp32"
        gen = gens.setdefault((sampler, prec), EmbeddedGenerator(loaded, sampler, {}, manifest, precision=prec))
        t0 = time.perf_counter()
        q = sample_quality(gen, real_clf, xtr, ytr, xte, yte, per_class=n, guidance=guidance, steps=steps,
                           sampler=sampler)
        q.update(sampler=sampler, precision=prec, steps=steps, guidance=guidance, seconds=round(time.perf_counter() - t0, 1),
                 load=os.getloadavg()[0])
        results.append(q)
        pc = " ".join(f"{v:.2f}" for v in q["synthetic_only_real_test"]["per_class"].values())
        print(f"{sampler:8s} {prec:4s} {steps:5d} {guidance:5.2f} {n:5d} {q['fidelity']['accuracy']:8.3f} "
              f"{q['synthetic_only_real_train']['accuracy']:10.3f} {q['synthetic_only_real_test']['accuracy']:9.3f} "
              f"{pc:24s} {q['sampling_img_per_s']:6.2f} {q['load']:.1f}", flush=True)
        atomic_write_json(out / "settings.json", {"checkpoint": loaded.checkpoint, "steps_trained": loaded.step, **train_cost,
                                                 "real_test": real, "settings": results})


def main() -> None:
    from _fruits import fruits_manifest
    from synthmix.core.config import load_yaml, parse_config
    from synthmix.core.io import atomic_write_json
    from synthmix.generation.embedded.config import TrainConfig
    from synthmix.generation.embedded.fidelity import measure_fidelity, pick_strengths
    from synthmix.generation.embedded.report import comparison_grid, print_report
    from synthmix.generation.embedded.train import train_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-embedded"))
    ap.add_argument("--config", type=Path, default=Path("configs/generator-fruits.yaml"))
    ap.add_argument("--steps", type=int, default=None, help="override the config's step budget")
    ap.add_argument("--checkpoint", type=Path, default=None, help="measure this model instead of training")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--parents-per-class", type=int, default=None, help="img2img sweep parents (default all)")
    ap.add_argument("--grid-n", type=int, default=8, help="images per grid row")
    ap.add_argument("--strengths", default="0.2,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--sampling-steps", type=int, default=25)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--speed", action="store_true", help="only time training steps of speed variants")
    ap.add_argument("--variants", default="fp32,bf16,fp32+cl,bf16+cl,medium-fp32",
                    help="--speed variants: [medium-]fp32|bf16[+cl], the first is the reference")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="sampling / measuring device (training: the config's)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="sampling precision")
    ap.add_argument("--settings", default=None,
                    help="only compare sampling settings sampler:steps:guidance[:per_class],... on the checkpoint")
    args = ap.parse_args()
    if args.speed:
        speed(args.threads, device=args.device, variants=args.variants)
        return

    import torch

    torch.set_num_threads(args.threads)
    manifest = fruits_manifest(args.out / "fruits.jsonl")
    ckpt = args.checkpoint
    if ckpt is None:
        data = {**load_yaml(args.config), "manifest": str(manifest), "out_dir": str(args.out / "generator")}
        if args.steps:
            data["steps"] = args.steps
        ckpt = train_generator(parse_config(TrainConfig, data, source=str(args.config)))
    if args.settings:
        sweep_settings(ckpt, manifest, args.settings, args.per_class, args.out, device=args.device)
        return

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    rep = measure_fidelity(str(ckpt), str(manifest), per_class=args.per_class,
                           strengths=[float(s) for s in args.strengths.split(",")], guidance=args.guidance,
                           steps=args.sampling_steps, sampler=args.sampler,
                           parents_per_class=args.parents_per_class, device=args.device, precision=args.precision)
    rep["train_wall_s"] = round(state["elapsed_s"], 1)
    rep["train_cpu_s"] = round(state.get("cpu_s", float("nan")), 1)
    rep["chosen_strengths"] = pick_strengths(rep["strength_sweep"])
    atomic_write_json(args.out / "report.json", rep)
    print_report(rep)
    grid = comparison_grid(ckpt, manifest, args.out / "grid.png", n=args.grid_n, guidance=args.guidance,
                           steps=args.sampling_steps, sampler=args.sampler,
                           strengths=[0.3, rep["chosen_strengths"]["in_dist"] or 0.5,
                                      rep["chosen_strengths"]["near_ood"] or 0.8, 1.0])
    print(json.dumps({"train_steps": rep["generator_steps_trained"], "train_wall_s": rep["train_wall_s"],
                      "train_cpu_s": rep["train_cpu_s"], "real_only_test": rep["real_test"]["accuracy"],
                      "fidelity": rep["fidelity"]["accuracy"],
                      "synthetic_only_test": rep["synthetic_only_real_test"]["accuracy"],
                      "fidelity_over_real": round(rep["fidelity"]["accuracy"] / rep["real_test"]["accuracy"], 3),
                      "synthetic_over_real": round(rep["synthetic_only_real_test"]["accuracy"]
                                                   / rep["real_test"]["accuracy"], 3),
                      "grid": str(grid)}, indent=1))


if __name__ == "__main__":
    main()
