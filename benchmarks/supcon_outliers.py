"""SupCon with and without outliers on the bundled fruits: near-OOD (`mixed` photos) and far-OOD
AUROC of every detector, test accuracy, several seeds, side by side.

The demo's SupCon settings (configs/demo.yaml ``contrastive``: small CNN with a linear head, 32 px,
10 pretraining epochs of 5 batches, 16 anchors per class, 20 linear-probe epochs). Setups:
``supcon-real`` (no outliers) and ``supcon-oe-collage`` (collage outliers, one per real train
image: contrastive negatives + OE on the probe). Detectors are fitted on the real train images.

    OMP_NUM_THREADS=1 python benchmarks/supcon_outliers.py --seeds 0 1 2 3 4 --out /tmp/supcon-oe
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SETUPS = {
    "supcon-real": None,
    "supcon-oe-collage": {"source": "corrupted", "loss": "oe", "kinds": ["collage"]},
    "supcon-oe-collage-w2": {"source": "corrupted", "loss": "oe", "kinds": ["collage"], "weight": 2.0},
}
CONTRASTIVE = {"model": "small_cnn", "model_kwargs": {"hidden": 0, "dropout": 0.0}, "input_size": 32, "epochs": 10,
               "m_per_class": 16, "batches_per_epoch": 5, "probe_epochs": 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--out", type=Path, default=Path("/tmp/synthmix-supcon-oe"))
    args = ap.parse_args()

    import torch

    from _ood_eval import ood_sets, score_model

    torch.set_num_threads(1)
    from synthmix.data.bundled import fruits_path
    from synthmix.evaluation.stats import mean_ci
    from synthmix.training.rundir import load_run_model
    from synthmix.training.supcon_run import SupConRunConfig, supcon_run
    from synthmix.training.train import TrainRunConfig, prepare_data

    out = args.out
    size = CONTRASTIVE["input_size"]
    base = TrainRunConfig(folder=fruits_path(), val_fraction=0.15, train={"input_size": size})
    base = prepare_data(base.resolved(), out / "data").model_copy(update={"cache_dir": (out / "cache").resolve()})
    rows, x_of, near_x, far_x = ood_sets(base, out, size)
    results: dict = {}
    for setup in args.setups:
        for seed in args.seeds:
            cfg = SupConRunConfig(manifest=base.manifest, preprocess=base.preprocess, cache_dir=base.cache_dir,
                                  contrastive={**CONTRASTIVE, "seed": seed}, eval_splits=["test"], gradcam=False,
                                  outliers=SETUPS[setup])
            run = out / setup / f"seed-{seed}"
            res = supcon_run(cfg, run)
            classes = res["classes"]
            model = load_run_model(run)[0]
            scored = score_model(model, classes, rows, x_of, base.manifest, near_x, far_x)
            acc = scored["accuracy"]
            entry = {"accuracy": acc, "seconds": res["fit"]["train_seconds"],
                     **{g: {d: m["auroc"] for d, m in scored[g].items()} for g in ("near", "far")}}
            results.setdefault(setup, {})[seed] = entry
            print(f"{setup} seed {seed}: acc {acc:.3f}, near MSP {entry['near']['msp']:.3f}, "
                  f"{entry['seconds']:.0f} s training", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))

    def ms(v):
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    dets = list(next(iter(next(iter(results.values())).values()))["near"])
    for part in ("near", "far"):
        print(f"\n{part}-OOD AUROC (mean ± SD over seeds {args.seeds}):\n")
        print("| setup | test accuracy | " + " | ".join(f"{part} {d}" for d in dets) + " |")
        print("|---" * (2 + len(dets)) + "|")
        for s, by_seed in results.items():
            ks = list(by_seed)
            print(f"| {s} | {ms([by_seed[k]['accuracy'] for k in ks])} | "
                  + " | ".join(ms([by_seed[k][part][d] for k in ks]) for d in dets) + " |")
    ref = "supcon-real"
    if ref in results:
        print("\npaired by seed, setup - supcon-real: mean [95 % t-interval]\n")
        print("| setup | Δ accuracy | " + " | ".join(f"Δ near {d}" for d in dets) + " | Δ far msp | Δ far mahalanobis |")
        print("|---" * (4 + len(dets)) + "|")
        for s, by_seed in results.items():
            if s == ref:
                continue
            ks = [k for k in by_seed if k in results[ref]]

            def d(get, ks=ks, by_seed=by_seed):
                m = mean_ci([get(by_seed[k]) - get(results[ref][k]) for k in ks])
                return f"{m['mean']:+.3f} [{m['lo']:+.3f}, {m['hi']:+.3f}]" if m["lo"] is not None else f"{m['mean']:+.3f}"

            cells = [d(lambda e: e["accuracy"])] + [d(lambda e, x=x: e["near"][x]) for x in dets] + \
                [d(lambda e: e["far"]["msp"]), d(lambda e: e["far"]["mahalanobis"])]
            print(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
