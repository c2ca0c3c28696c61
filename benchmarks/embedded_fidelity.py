"""Embedded generator on the fruits data: train on a step budget, then measure class fidelity,
synthetic-only real-test accuracy and the img2img strength sweep; save the comparison grid.

    .venv/bin/python benchmarks/embedded_fidelity.py --out runs/bench-embedded [--steps 800]
    .venv/bin/python benchmarks/embedded_fidelity.py --out runs/bench-embedded --checkpoint CKPT

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


def main() -> None:
    from _fruits import fruits_manifest
    from synthmix.core.config import load_yaml, parse_config
    from synthmix.core.io import atomic_write_json
    from synthmix.generation.embedded.config import TrainConfig
    from synthmix.generation.embedded.fidelity import measure_fidelity, pick_strengths
    from synthmix.generation.embedded.report import comparison_grid, print_report
    from synthmix.generation.embedded.train import train_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
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
    args = ap.parse_args()

    manifest = fruits_manifest(args.out / "fruits.jsonl")
    ckpt = args.checkpoint
    if ckpt is None:
        data = {**load_yaml(args.config), "manifest": str(manifest), "out_dir": str(args.out / "generator")}
        if args.steps:
            data["steps"] = args.steps
        ckpt = train_generator(parse_config(TrainConfig, data, source=str(args.config)))
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    rep = measure_fidelity(str(ckpt), str(manifest), per_class=args.per_class,
                           strengths=[float(s) for s in args.strengths.split(",")], guidance=args.guidance,
                           steps=args.sampling_steps, sampler=args.sampler,
                           parents_per_class=args.parents_per_class)
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
