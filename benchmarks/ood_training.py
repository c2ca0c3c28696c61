"""Training with outliers on the bundled fruits: real-only vs + Outlier Exposure / energy margin
with cheap corrupted outliers, side by side, several seeds.

``--recipe demo`` (default): the demo's classifier settings (configs/demo.yaml: small CNN, 32 px,
30 epochs, batch 32, AdamW 1e-3, weight decay 5e-4, cosine with 1 warmup epoch, label smoothing
0.1, its ``preprocessing.augment``); ``--recipe ood-md``: the older 15-epoch recipe of
docs/bench/ood.md. Near-OOD = every `mixed` photo of the bundled copy (never trained on), far-OOD =
scikit-image crops; ID = the bundled test split. Every detector of ``FittedDetectors`` (fit on the
real train images only) scores each set.

    OMP_NUM_THREADS=1 python benchmarks/ood_training.py --seeds 0 1 2 --out /tmp/ood-bench
    OMP_NUM_THREADS=1 python benchmarks/ood_training.py --seeds 0 1 2 3 4 \
        --setups real oe-corrupted oe-collage oe-all-kinds --out /tmp/ood-collage   # docs/bench/ood_collage.md

Prints one markdown table (mean over seeds, ± sample SD) and writes ``results.json`` in --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

AUGMENT = {"hflip": 0.5, "crop_scale": [0.7, 1.0], "rotation": 10, "brightness": 0.2, "contrast": 0.2,
           "saturation": 0.2, "hue": 0.02}
# configs/demo.yaml preprocessing.augment and training (the demo's from-scratch recipe)
DEMO_AUGMENT = {"hflip": 0.5, "crop_scale": [0.4, 1.0], "margin": 0.2, "margin_prob": 0.5, "rotation": 20,
                "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}
RECIPES = {
    "demo": {"epochs": 30, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4,
             "schedule": "cosine", "warmup_epochs": 1, "label_smoothing": 0.1, "augment": DEMO_AUGMENT},
    "ood-md": {"epochs": 15, "batch_size": 32, "lr": 1e-3, "label_smoothing": 0.1, "augment": AUGMENT},
}
ALL_KINDS = ["jigsaw", "cutmix", "mixup", "blur", "noise", "collage"]

SETUPS = {
    "real": None,
    "oe-corrupted": {"source": "corrupted", "loss": "oe"},
    "energy-corrupted": {"source": "corrupted", "loss": "energy"},  # paper margins -25 / -7
    "energy-small-corrupted": {"source": "corrupted", "loss": "energy", "m_in": -12.0, "m_out": -4.0},
    "energy-m4m1-corrupted": {"source": "corrupted", "loss": "energy", "m_in": -4.0, "m_out": -1.0},
    # mixed-class kinds only (the nearest of the cheap outliers)
    "oe-mixclass": {"source": "corrupted", "loss": "oe", "kinds": ["cutmix", "mixup", "jigsaw"]},
    # collages: several real images of different classes on a plain background (mixed-fruit-like)
    "oe-collage": {"source": "corrupted", "loss": "oe", "kinds": ["collage"]},
    "oe-all-kinds": {"source": "corrupted", "loss": "oe", "kinds": ALL_KINDS},
    "oe-collage-w1": {"source": "corrupted", "loss": "oe", "kinds": ["collage"], "weight": 1.0},
    "oe-collage-w025": {"source": "corrupted", "loss": "oe", "kinds": ["collage"], "weight": 0.25},
    "oe-collage-r2": {"source": "corrupted", "loss": "oe", "kinds": ["collage"], "batch_ratio": 2.0},
    "oe-collage-n4x": {"source": "corrupted", "loss": "oe", "kinds": ["collage"], "max_images": 748},
    "oe-all-kinds-w1": {"source": "corrupted", "loss": "oe", "kinds": ALL_KINDS, "weight": 1.0},
    "oe-collage-n4x-r2": {"source": "corrupted", "loss": "oe", "kinds": ["collage"], "max_images": 748,
                          "batch_ratio": 2.0},
    "oe-collage-mixclass": {"source": "corrupted", "loss": "oe", "kinds": ["collage", "cutmix", "mixup"]},
    # half collages (near-OOD-like), a quarter each blur / noise (far-OOD-like)
    "oe-collage-far": {"source": "corrupted", "loss": "oe", "kinds": ["collage", "blur", "collage", "noise"]},
    "oe-collage-far-r2": {"source": "corrupted", "loss": "oe", "kinds": ["collage", "blur", "collage", "noise"],
                          "batch_ratio": 2.0},
    "energy-collage-m4m1": {"source": "corrupted", "loss": "energy", "kinds": ["collage"], "m_in": -4.0,
                            "m_out": -1.0},
    # generated near-OOD images as the outlier set (item 5 of issue 16: diffusion vs synthesised vs
    # cheap outliers); the images come from --manifest NAME=PATH (a synthetic manifest's near_ood rows)
    "oe-nood": {"source": "synthetic_role", "roles": ["near_ood"], "loss": "oe", "_manifest": "nood"},
    "oe-vos": {"source": "synthetic_role", "roles": ["near_ood"], "loss": "oe", "_manifest": "vos"},
    # three quarters collages, a quarter noise / blur: near-OOD of the collages, keep far-OOD?
    "oe-collage3-noise-r2": {"source": "corrupted", "loss": "oe", "kinds": ["collage", "collage", "collage", "noise"],
                             "batch_ratio": 2.0},
    "oe-collage3-blur-r2": {"source": "corrupted", "loss": "oe", "kinds": ["collage", "collage", "collage", "blur"],
                            "batch_ratio": 2.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipe", choices=list(RECIPES), default="demo")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--size", type=int, default=32, help="input size (32: the demo's)")
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--out", type=Path, default=Path("/tmp/synthmix-ood-bench"))
    ap.add_argument("--manifest", action="append", default=[], metavar="NAME=PATH",
                    help="a synthetic manifest whose near_ood rows a setup with _manifest NAME uses as outliers "
                         "(nood: e.g. a demo run's curated manifest; vos: `synthmix generate` with vos_per_class)")
    args = ap.parse_args()

    import torch

    from _ood_eval import ood_sets, score_model

    torch.set_num_threads(1)
    from synthmix.data.bundled import fruits_path
    from synthmix.models import create_model
    from synthmix.training.checkpoint import load_weights
    from synthmix.training.train import TrainRunConfig, prepare_data, train_run

    out = args.out
    size = args.size
    manifests = {k: Path(v).resolve() for k, v in (m.split("=", 1) for m in args.manifest)}
    recipe = {**RECIPES[args.recipe], **({"epochs": args.epochs} if args.epochs else {})}
    base = TrainRunConfig(folder=fruits_path(), val_fraction=0.15, gradcam=False, eval_splits=["test"],
                          train={"model": "small_cnn", "input_size": size, **recipe, "device": "cpu",
                                 "num_threads": 1})
    base = prepare_data(base.resolved(), out / "data").model_copy(update={"cache_dir": (out / "cache").resolve()})
    print(f"recipe {args.recipe}: {recipe}, {size} px", flush=True)
    rows, x_of, near_x, far_x = ood_sets(base, out, size)
    results: dict = {}
    for setup in args.setups:
        for seed in args.seeds:
            spec = dict(SETUPS[setup]) if SETUPS[setup] else None
            extra = {}
            if spec and "_manifest" in spec:
                name = spec.pop("_manifest")
                if name not in manifests:
                    ap.error(f"setup {setup} needs --manifest {name}=PATH")
                extra = {"synthetic_manifests": [manifests[name]]}
            cfg = TrainRunConfig.model_validate({**base.with_seed(seed).model_dump(), "outliers": spec, **extra})
            run = out / setup / f"seed-{seed}"
            res = train_run(cfg, run, progress=False)  # a finished run is read back, not retrained
            seconds = res["fit"]["train_seconds"]
            classes = res["classes"]
            model = create_model("small_cnn", len(classes), input_size=size)
            load_weights(run / "checkpoints" / "final.pt", model)
            entry = {**score_model(model, classes, rows, x_of, base.manifest, near_x, far_x), "seconds": seconds}
            results.setdefault(setup, {})[seed] = entry
            print(f"{setup} seed {seed}: acc {entry['accuracy']:.3f}, near AUROC energy {entry['near']['energy']['auroc']:.3f}, "
                  f"{seconds:.0f} s training", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _table(results, len(near_x), len(far_x))


def _ms(v: list[float]) -> str:
    import statistics

    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _table(results: dict, n_near: int, n_far: int) -> None:
    setups = list(results)
    dets = list(next(iter(next(iter(results.values())).values()))["near"])
    print(f"\nID = bundled test split; near-OOD = {n_near} `mixed` photos; far-OOD = {n_far} skimage crops; "
          f"mean ± SD over seeds {list(next(iter(results.values())))}\n")
    print("| setup | test accuracy | " + " | ".join(f"near {d}" for d in dets) + " |")
    print("|---" * (2 + len(dets)) + "|")
    for s in setups:
        seeds = list(results[s])
        acc = [results[s][k]["accuracy"] for k in seeds]
        cells = [_ms([results[s][k]["near"][d]["auroc"] for k in seeds]) for d in dets]
        print(f"| {s} | {_ms(acc)} | " + " | ".join(cells) + " |")
    print("\nfar-OOD AUROC:\n")
    print("| setup | " + " | ".join(f"far {d}" for d in dets) + " |")
    print("|---" * (1 + len(dets)) + "|")
    for s in setups:
        seeds = list(results[s])
        print(f"| {s} | " + " | ".join(_ms([results[s][k]["far"][d]["auroc"] for k in seeds]) for d in dets) + " |")
    if "real" in results:
        from synthmix.evaluation.stats import mean_ci

        print("\npaired by seed, setup - real: mean [95 % t-interval]\n")
        for part in ("near", "far"):
            print(f"\n{part}-OOD AUROC, Δ vs real:\n")
            print("| setup | Δ test accuracy | " + " | ".join(f"Δ {part} {d}" for d in dets) + " |")
            print("|---" * (2 + len(dets)) + "|")
            for s in setups:
                if s == "real":
                    continue
                seeds = [k for k in results[s] if k in results["real"]]

                def delta(get, seeds=seeds, s=s):
                    m = mean_ci([get(results[s][k]) - get(results["real"][k]) for k in seeds])
                    return (f"{m['mean']:+.3f} [{m['lo']:+.3f}, {m['hi']:+.3f}]" if m["lo"] is not None
                            else f"{m['mean']:+.3f}")

                cells = [delta(lambda e, d=d, part=part: e[part][d]["auroc"]) for d in dets]
                print(f"| {s} | {delta(lambda e: e['accuracy'])} | " + " | ".join(cells) + " |")
    print("\nnear-OOD FPR@95 / AUPR-out (energy, react, vim):\n")
    for s in setups:
        seeds = list(results[s])
        parts = []
        for d in ("energy", "react", "vim"):
            if d in dets:
                fpr = statistics.mean(results[s][k]["near"][d]["fpr95"] for k in seeds)
                ap = statistics.mean(results[s][k]["near"][d]["aupr_out"] for k in seeds)
                parts.append(f"{d} {fpr:.2f} / {ap:.2f}")
        med = statistics.mean(results[s][k]["energy_test_median"] for k in seeds)
        secs = statistics.mean(results[s][k]["seconds"] for k in seeds)
        print(f"- {s}: " + "; ".join(parts) + f"; median test energy {med:.1f}; {secs:.0f} s of training per run")


if __name__ == "__main__":
    main()
