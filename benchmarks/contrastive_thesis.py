"""The thesis setups on the real fruits photos, with a STAND-IN synthetic generator.

    .venv/bin/python benchmarks/contrastive_thesis.py --out runs/contrastive-thesis [--seeds 0 1 2]

Steps (each skipped when its output exists):
1. scan ../shared/datasets/fruits (train/test; val = 15 % of train, split_seed 0; `mixed`
   photos are rows of label "mixed": the real near-OOD set, never trained on);
2. STAND-IN synthetic images — not a diffusion model: for each real train image,
   ``--k-in`` "in_dist" children = moderate random augmentations of it (crop, flip,
   rotation, colour jitter; the analogue of img2img at low strength), and ``--k-near``
   "near_ood" children = a heavy corruption: blended 50/50 with a real train image of
   another class, strongly recoloured, cropped and noised (the analogue of high strength);
   rows carry parent_id / parent_label, source "standin";
3. ``synthmix contrastive configs/thesis-contrastive.yaml`` (three setups + CE baseline × seeds).
With ``--synthetic M`` step 2 is skipped and the manifest M (e.g. the embedded generator's
img2img output, roles in_dist / near_ood by strength) is used instead.
Prints the summary table (accuracy; kNN AUROC / FPR@95 per OOD set, mean ± 95 % CI half-width).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

FRUITS = ROOT.parent / "shared" / "datasets" / "fruits"


def standin_synthetic(manifest: Path, out_dir: Path, size: int = 64, k_in: int = 1, k_near: int = 1,
                      seed: int = 0) -> Path:
    """Write stand-in synthetic images + manifest (see the module docstring); returns the manifest."""
    import numpy as np
    import torch
    from PIL import Image

    from synthmix.core.hashing import sha256_file
    from synthmix.core.io import atomic_path
    from synthmix.data.augment import AugmentConfig, augment_batch
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.data.tensors import load_tensor

    rows = [r for r in read_manifest(manifest)
            if r["split"] == "train" and r["source"] == "real" and r["label"] != "mixed"]
    x = load_tensor(rows, manifest, size)
    labels = [r["label"] for r in rows]
    moderate = AugmentConfig(hflip=0.5, crop_scale=(0.6, 1.0), rotation=15, brightness=0.2, contrast=0.2,
                             saturation=0.2, hue=0.03)
    heavy = AugmentConfig(hflip=0.5, vflip=0.5, crop_scale=(0.25, 0.6), rotation=90, brightness=0.5,
                          contrast=0.5, saturation=0.8, hue=0.3, noise=0.12)
    out = []
    rng = np.random.default_rng(seed)
    for i, r in enumerate(rows):
        for kind, k in (("in_dist", k_in), ("near_ood", k_near)):
            for j in range(k):
                s = seed * 1_000_003 + i * 101 + j * 7 + (0 if kind == "in_dist" else 50)
                g = torch.Generator().manual_seed(s)  # one generator per image
                if kind == "in_dist":
                    img = augment_batch(x[i:i + 1], moderate, g)[0]
                else:
                    others = [m for m, lab in enumerate(labels) if lab != r["label"]]
                    o = int(rng.choice(others))
                    mix = 0.5 * x[i:i + 1].float() + 0.5 * x[o:o + 1].float()
                    img = augment_batch(mix / 255.0, heavy, g)[0]
                arr = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
                rid = f"standin-{kind}-{r['id']}-{j}"
                rel = f"images/{kind}/{rid}.png"
                with atomic_path(out_dir / rel, suffix=".png") as tmp:
                    Image.fromarray(arr).save(tmp, format="PNG")
                digest = sha256_file(out_dir / rel)
                out.append({"id": rid, "sha256": digest, "path": rel, "label": r["label"], "split": "train",
                            "width": size, "height": size, "mode": "RGB", "source": "standin", "role": kind,
                            "parent_id": r["id"], "parent_label": r["label"], "seed": s,
                            "method": "augment" if kind == "in_dist" else "classmix+heavy-augment",
                            "generator": "standin", "status": "ok"})
    write_manifest(out_dir / "manifest.jsonl", out)
    return out_dir / "manifest.jsonl"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/contrastive-thesis")
    p.add_argument("--config", default=str(ROOT / "configs" / "thesis-contrastive.yaml"))
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--synthetic", default=None, help="a generator's manifest (e.g. synthmix generate with the "
                   "embedded generator) instead of the stand-in images")
    p.add_argument("--setups", nargs="*", default=None)
    p.add_argument("--runs", default="runs", help="sub-folder of --out for the runs")
    a = p.parse_args()

    from synthmix.core.config import load_config, load_yaml
    from synthmix.data.scan import scan_dataset
    from synthmix.training.contrastive_setups import DETECTORS, ThesisConfig, run_setups, summary_markdown

    out = Path(a.out)
    t0 = time.perf_counter()
    data = out / "data"
    if not (data / "manifest.jsonl").exists():
        scan_dataset(FRUITS, data, val_fraction=0.15, seed=0)
    if a.synthetic:
        syn_manifest = Path(a.synthetic)
    else:
        syn = out / "standin"
        if not (syn / "manifest.jsonl").exists():
            standin_synthetic(data / "manifest.jsonl", syn)
        syn_manifest = syn / "manifest.jsonl"
    raw = load_yaml(a.config)
    raw.update(manifest=str(data / "manifest.jsonl"), synthetic_manifests=[str(syn_manifest)],
               cache_dir=str(out / "cache"))
    if a.seeds:
        raw["seeds"] = a.seeds
    if a.setups:
        raw["setups"] = a.setups
    from synthmix.core.config import parse_config

    cfg = parse_config(ThesisConfig, raw, source=a.config)
    _ = load_config  # (the config file itself is validated by tests)
    summary = run_setups(cfg, out / a.runs)  # finished runs are skipped: re-running only prints
    for d in DETECTORS:
        print(f"detector: {d}\n{summary_markdown(summary, d)}")
    print(f"counts: {summary['counts']}")
    print(f"total wall time: {time.perf_counter() - t0:.0f} s (2-core CPU, shared and noisy)")


if __name__ == "__main__":
    main()
