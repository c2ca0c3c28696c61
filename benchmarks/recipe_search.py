"""A stronger from-scratch default: a small recipe search for ``small_cnn`` on the bundled fruits,
selected on VALIDATION data only (issue 17, item 3).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recipe_search.py [--seeds 0 1 2]
        [--recipes demo r48-e30 ...] [--out /tmp/recipe-search] [--md docs/bench/recipes.md]

Every candidate recipe is trained with ``train_seeds`` (the same code path as ``synthmix train``)
on the bundled fruits (apple / banana / orange; ``mixed`` is not a class), one scan = one
train/val/test split shared by all recipes (val = 15 % of train), 3 seeds. The table shows, per
recipe, the mean over seeds of val accuracy, val loss (cross-entropy of the best-on-val epoch,
what ``fit`` keeps) and test accuracy, and the training seconds. The recipe is chosen by mean val
accuracy, ties broken by mean val loss; test accuracy is printed for the record only (never
used to choose). The first row, ``demo``, is the demo's current ``real`` setting. Each seed's
final model is also scored on the corrupted test split (``synthmix.evaluation.robustness``: 11
corruptions x 5 severities): mean corrupted accuracy and mCE relative to ``demo``.

Runs are cached in ``--out`` (re-running skips finished runs), so a cut-off search resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# The demo's augmentation (configs/demo.yaml preprocessing.augment).
DEMO_AUG: dict[str, Any] = {"hflip": 0.5, "crop_scale": [0.7, 1.0], "rotation": 10, "brightness": 0.2,
                            "contrast": 0.2, "saturation": 0.2, "hue": 0.02}
# Stronger geometric + colour augmentation (the fruit study's, chosen on val at 64 px in
# configs/train-fruits-small-cnn.yaml): wider crops, random margins, more rotation.
STRONG_AUG: dict[str, Any] = {"hflip": 0.5, "crop_scale": [0.4, 1.0], "margin": 0.2, "margin_prob": 0.5,
                              "rotation": 20, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2,
                              "hue": 0.02}
# Stronger still: harder crops, grey-scale and noise (what a TrivialAugment-like policy adds here).
HEAVY_AUG: dict[str, Any] = {**STRONG_AUG, "crop_scale": [0.25, 1.0], "rotation": 30, "brightness": 0.3,
                             "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "grayscale": 0.1,
                             "noise": 0.03}

BASE: dict[str, Any] = {"model": "small_cnn", "batch_size": 32, "optimizer": "adamw", "lr": 0.001,
                        "weight_decay": 0.0005, "schedule": "cosine", "label_smoothing": 0.1,
                        "num_threads": 1, "device": "cpu"}


def recipe(size: int, epochs: int, aug: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"input_size": size, "epochs": epochs, "augment": aug, **extra}


RECIPES: dict[str, dict[str, Any]] = {
    "demo": recipe(32, 15, DEMO_AUG),                       # the demo's `real` setting today
    "r32-e30": recipe(32, 30, DEMO_AUG, warmup_epochs=1),
    "r32-e60": recipe(32, 60, DEMO_AUG, warmup_epochs=1),
    "r32-e30-strong": recipe(32, 30, STRONG_AUG, warmup_epochs=1),
    "r32-e60-strong": recipe(32, 60, STRONG_AUG, warmup_epochs=1),
    "r32-e60-heavy": recipe(32, 60, HEAVY_AUG, warmup_epochs=1),
    "r48-e30": recipe(48, 30, DEMO_AUG, warmup_epochs=1),
    "r48-e30-strong": recipe(48, 30, STRONG_AUG, warmup_epochs=1),
    "r48-e60-strong": recipe(48, 60, STRONG_AUG, warmup_epochs=1),
    "r64-e30-strong": recipe(64, 30, STRONG_AUG, warmup_epochs=1),
    "r64-e60-strong": recipe(64, 60, STRONG_AUG, warmup_epochs=1),
    "r48-e60-heavy": recipe(48, 60, HEAVY_AUG, warmup_epochs=1),
    "r64-e60-heavy": recipe(64, 60, HEAVY_AUG, warmup_epochs=1),
    "r32-e60-strong-ls0": recipe(32, 60, STRONG_AUG, warmup_epochs=1, label_smoothing=0.0),
    "resnet18-r32-e30-strong": recipe(32, 30, STRONG_AUG, warmup_epochs=1, model="resnet18"),
    "r32-e60-strong-mixup": recipe(32, 60, STRONG_AUG, warmup_epochs=1, mixup={"mixup_alpha": 0.2}),
    "r32-e60-strong-cutmix": recipe(32, 60, STRONG_AUG, warmup_epochs=1, mixup={"cutmix_alpha": 1.0}),
    "r48-e60-strong-cutmix": recipe(48, 60, STRONG_AUG, warmup_epochs=1, mixup={"cutmix_alpha": 1.0}),
    "r32-e60-strong-ema": recipe(32, 60, STRONG_AUG, warmup_epochs=1, ema_decay=0.99),
    "r48-e60-strong-ema": recipe(48, 60, STRONG_AUG, warmup_epochs=1, ema_decay=0.99),
}


def run_recipe(name: str, overrides: dict[str, Any], seeds: list[int], out: Path, data_dir: Path) -> dict:
    from synthmix.data.bundled import fruits_path
    from synthmix.training.train import TrainRunConfig, train_seeds

    train = {**BASE, **overrides}
    cfg = TrainRunConfig(folder=fruits_path(), val_fraction=0.15, split_seed=0, exclude_classes=["mixed"],
                         mix={"kind": "real_only"}, preprocess={"resize": "pad"}, train=train,
                         eval_splits=["val", "test"], gradcam=False, cache_dir=out / "cache")
    from synthmix.training.train import prepare_data

    cfg = prepare_data(cfg.resolved(), data_dir)  # one scan (one split) for every recipe
    t0 = time.perf_counter()
    summary = train_seeds(cfg, out / name, seeds, progress=False)
    wall = time.perf_counter() - t0
    per_seed = []
    for s in seeds:
        res = json.loads((out / name / f"seed-{s}" / "results.json").read_text())
        per_seed.append({"seed": s, "val_acc": res["eval"]["val"]["accuracy"],
                         "val_loss": res["fit"]["best_metric"], "test_acc": res["eval"]["test"]["accuracy"],
                         "test_ece": res["eval"]["test"]["ece"], "train_seconds": res["fit"]["train_seconds"],
                         "best_epoch": res["fit"]["best_epoch"]})
    mean = {k: sum(p[k] for p in per_seed) / len(per_seed)
            for k in ("val_acc", "val_loss", "test_acc", "test_ece", "train_seconds")}
    return {"name": name, "train": train, "per_seed": per_seed, "mean": mean, "wall_seconds": wall,
            "test_ci": summary["splits"]["test"]["accuracy"], "val_ci": summary["splits"]["val"]["accuracy"]}


def corruption_eval(name: str, seeds: list[int], out: Path) -> dict[int, dict]:
    """Accuracy of each seed's final model on the corrupted test split (11 corruptions x 5
    severities, corruption seed 0), cached in ``seed-<s>/corruptions.json``."""
    from synthmix.core.config import load_config
    from synthmix.core.io import atomic_write_json, read_json
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.robustness import evaluate_corruptions
    from synthmix.models import create_model
    from synthmix.training.checkpoint import load_weights
    from synthmix.training.train import TrainRunConfig, load_rows

    res = {}
    for s in seeds:
        run = out / name / f"seed-{s}"
        cache = run / "corruptions.json"
        if cache.exists():
            res[s] = {c: {int(k): v for k, v in sev.items()} for c, sev in read_json(cache).items()}
            continue
        cfg = load_config(TrainRunConfig, run / "config.yaml")
        classes = read_json(run / "classes.json")
        rows = [r for r in load_rows(cfg) if r.get("split") == "test" and r.get("label") in classes]
        x = load_tensor(rows, cfg.manifest, cfg.train.input_size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir)
        y = label_tensor(rows, classes)
        model = create_model(cfg.train.model, len(classes), **cfg.train.model_args())
        load_weights(run / "checkpoints" / "final.pt", model)
        res[s] = evaluate_corruptions(model, x, y, normalization=cfg.train.normalization, seed=0)
        atomic_write_json(cache, res[s])
    return res


def add_robustness(rows: list[dict], seeds: list[int], out: Path, reference: str = "demo") -> None:
    """Mean corruption accuracy and mCE relative to ``reference`` (per seed, then averaged)."""
    from synthmix.evaluation.robustness import corruption_errors, mce, summarize_corruptions

    tables = {r["name"]: corruption_eval(r["name"], seeds, out) for r in rows}
    for r in rows:
        r["mean"]["corruption_acc"] = sum(summarize_corruptions(tables[r["name"]][s])["corruption_accuracy"]
                                          for s in seeds) / len(seeds)
        if reference in tables:
            r["mean"]["mce"] = sum(mce({"ref": corruption_errors(tables[reference][s]),
                                        "x": corruption_errors(tables[r["name"]][s])}, "ref")["x"]
                                   for s in seeds) / len(seeds)


def choose(rows: list[dict]) -> dict:
    """Highest mean val accuracy; ties (equal to 1e-9) broken by lower mean val loss."""
    return sorted(rows, key=lambda r: (-round(r["mean"]["val_acc"], 9), r["mean"]["val_loss"]))[0]


def table(rows: list[dict], chosen: str) -> str:
    lines = ["| recipe | model | px | epochs | augment | label smoothing | MixUp / CutMix / EMA | val acc | val loss "
             "| test acc (95 % CI) | test ECE | corrupted test acc | mCE vs demo | train s / seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, m = r["train"], r["mean"]
        aug = {id(DEMO_AUG): "demo", id(STRONG_AUG): "strong", id(HEAVY_AUG): "heavy"}.get(id(t["augment"]), "?")
        name = f"**{r['name']}** (chosen)" if r["name"] == chosen else r["name"]
        ci = r["test_ci"]
        half = ci["hi"] - ci["mean"] if ci["hi"] is not None else float("nan")
        mix = t.get("mixup") or {}
        mix_txt = ", ".join(f"{k.split('_')[0]} {v}" for k, v in mix.items()) or "-"
        if t.get("ema_decay"):
            mix_txt += f"; EMA {t['ema_decay']}"
        lines.append(f"| {name} | {t['model']} | {t['input_size']} | {t['epochs']} | {aug} | {t['label_smoothing']} "
                     f"| {mix_txt} "
                     f"| {m['val_acc']:.3f} | {m['val_loss']:.3f} | {ci['mean']:.3f} ± {half:.3f} "
                     f"| {m['test_ece']:.3f} | {m.get('corruption_acc', float('nan')):.3f} "
                     f"| {m.get('mce', float('nan')):.3f} | {m['train_seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--out", type=Path, default=Path("/tmp/recipe-search"))
    ap.add_argument("--md", type=Path, default=None, help="write the table to this markdown file")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = []
    for name in args.recipes:
        rows.append(run_recipe(name, RECIPES[name], args.seeds, args.out, args.out / "data"))
        r = rows[-1]
        print(f"{name:22s} val acc {r['mean']['val_acc']:.3f} val loss {r['mean']['val_loss']:.3f} "
              f"test acc {r['mean']['test_acc']:.3f}  ({r['wall_seconds']:.0f} s)", flush=True)
    add_robustness(rows, args.seeds, args.out)
    total = time.perf_counter() - t0
    chosen = choose(rows)
    text = table(rows, chosen["name"])
    print()
    print(text)
    print(f"\nchosen on validation: {chosen['name']}  (total {total / 60:.1f} min, "
          f"load before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f})")
    (args.out / "recipes.json").write_text(json.dumps({"rows": rows, "chosen": chosen["name"],
                                                       "total_seconds": total}, indent=1, default=str))
    if args.md:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        args.md.write_text(
            f"# Recipe search: small CNN on the bundled fruits (generated)\n\n"
            f"`{' '.join(['python', *sys.argv])}` on {platform.node()}, `uptime` at the end: {uptime}; "
            f"seeds {args.seeds}; total {total / 60:.1f} min.\n\n{text}\n\nchosen: {chosen['name']}\n")


if __name__ == "__main__":
    main()
