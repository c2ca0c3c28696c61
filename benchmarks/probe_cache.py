"""Linear probe with cached features vs recomputing features in every cell: 9 setups x 5 seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_cache.py [--model timm:resnet18] [--size 64]
        [--setups 9] [--seeds 5] [--md docs/bench/probe_cache.md]

Data: the bundled fruits (train / val / test, `mixed` left out) at --size px, plus one
"synthetic" copy per real train image (a flipped, colour-jittered copy with its own id: it
stands in for generated rows, which cost the same to featurise). The 9 setups train on
different row sets (real only, real + synthetic, ratio mixes drawn per seed, synthetic only).

- naive: every (setup, seed) cell runs the frozen backbone on its own training rows and on
  val + test, then fits the probe (what a study does when it treats a probe like any training run);
- cached: ``synthmix.training.probe.extract_cached`` featurises each image once (the first
  cell pays, later cells read ``.npy`` files), then every cell fits the probe.

Both give the same probe accuracies (checked); the ratio of wall times and of images sent
through the backbone is printed. The backbone has random weights (no download): the
measurement is about compute, not accuracy.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_data(size: int):
    import torch

    from synthmix.data.augment import AugmentConfig, augment_batch
    from synthmix.data.bundled import fruits_path
    from synthmix.data.preprocess import PreprocessConfig
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.training.train import TrainRunConfig, load_rows, prepare_data

    work = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    cfg = prepare_data(TrainRunConfig(folder=fruits_path()).resolved(), work / "data")
    rows = load_rows(cfg)
    classes = sorted({r["label"] for r in rows if r["split"] == "train"})
    pre = PreprocessConfig(size=size)

    def split(name):
        rs = [r for r in rows if r["split"] == name]
        return load_tensor(rs, cfg.manifest, size, preprocess=pre), label_tensor(rs, classes), [r["id"] for r in rs]

    data = {s: split(s) for s in ("train", "val", "test")}
    xr, yr, ids = data["train"]
    aug = AugmentConfig(hflip=1.0, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
    xs = (augment_batch(xr, aug, torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)
    data["syn"] = (xs, yr.clone(), [f"syn-{i}" for i in ids])
    return data, classes, work, pre.hash()


def setups(n_real: int, n: int):
    """9 row selections over the pool [real 0..R-1, syn R..2R-1]; ratio mixes are drawn per seed."""
    import torch

    def mix(real_frac, seed):
        g = torch.Generator().manual_seed(seed)
        k = int(round(real_frac * n_real))
        real = torch.randperm(n_real, generator=g)[:k].tolist()
        syn = (torch.randperm(n_real, generator=g)[:n_real - k] + n_real).tolist()
        return sorted(real + syn)

    all_setups = {
        "real": lambda s: list(range(n_real)),
        "real+syn": lambda s: list(range(2 * n_real)),
        "mix-70-30": lambda s: mix(0.7, s),
        "mix-50-50": lambda s: mix(0.5, s),
        "mix-30-70": lambda s: mix(0.3, s),
        "syn-only": lambda s: list(range(n_real, 2 * n_real)),
        "real-half": lambda s: sorted(torch.randperm(n_real, generator=torch.Generator().manual_seed(s))[:n_real // 2].tolist()),
        "real+syn-half": lambda s: list(range(n_real)) + mix(0.0, s)[: n_real // 2],
        "mix-90-10": lambda s: mix(0.9, s),
    }
    return dict(list(all_setups.items())[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="timm:resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--setups", type=int, default=9)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args()
    import numpy as np
    import torch

    from synthmix.evaluation.features import extract
    from synthmix.models import create_model
    from synthmix.training.probe import backbone_fingerprint, extract_cached, train_probe

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data, classes, work, pre_key = build_data(args.size)
    torch.manual_seed(0)
    model = create_model(args.model, len(classes), input_size=args.size).eval()
    n_real = len(data["train"][2])
    pool_x = torch.cat([data["train"][0], data["syn"][0]])
    pool_y = torch.cat([data["train"][1], data["syn"][1]])
    pool_ids = data["train"][2] + data["syn"][2]
    sel = setups(n_real, args.setups)
    cells = [(name, seed) for name in sel for seed in range(args.seeds)]
    (xv, yv, idv), (xt, yt, idt) = data["val"], data["test"]

    # naive: featurise in every cell
    t0 = time.perf_counter()
    naive_images, naive_acc = 0, {}
    for name, seed in cells:
        idx = sel[name](seed)
        f_tr = extract(model, pool_x[idx], batch_size=128)[0]
        f_v, f_t = extract(model, xv, batch_size=128)[0], extract(model, xt, batch_size=128)[0]
        naive_images += len(idx) + len(idv) + len(idt)
        res = train_probe(f_tr, pool_y[idx].numpy(), num_classes=len(classes), val=(f_v, yv.numpy()))
        naive_acc[name, seed] = float((res.logits(f_t).argmax(1) == yt).double().mean())
    t_naive = time.perf_counter() - t0

    # cached: one pass over each image, then probes only
    cache = work / "features"
    t0 = time.perf_counter()
    counter = {"images": 0}
    orig = model.forward_features

    def counted(x):
        counter["images"] += x.shape[0]
        return orig(x)

    model.forward_features = counted  # count the images the backbone actually sees
    t_probe_only, cached_acc = 0.0, {}
    fp = backbone_fingerprint(model)  # once per backbone (what a study does)
    for name, seed in cells:
        idx = sel[name](seed)
        f_tr = extract_cached(model, pool_x[idx], [pool_ids[i] for i in idx], cache, preprocess_key=pre_key, fingerprint=fp)
        f_v = extract_cached(model, xv, idv, cache, preprocess_key=pre_key, fingerprint=fp)
        f_t = extract_cached(model, xt, idt, cache, preprocess_key=pre_key, fingerprint=fp)
        tp = time.perf_counter()
        res = train_probe(f_tr, pool_y[idx].numpy(), num_classes=len(classes), val=(f_v, yv.numpy()))
        cached_acc[name, seed] = float((res.logits(f_t).argmax(1) == yt).double().mean())
        t_probe_only += time.perf_counter() - tp
    t_cached = time.perf_counter() - t0
    model.forward_features = orig
    same = all(abs(naive_acc[k] - cached_acc[k]) < 1e-9 for k in cells)
    shutil.rmtree(work, ignore_errors=True)

    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"`{' '.join(['python', *sys.argv])}` on {platform.node()} ({os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), `uptime` at the end: {uptime}",
        "",
        f"backbone {args.model} (random weights) at {args.size} px; {len(sel)} setups x {args.seeds} seeds = "
        f"{len(cells)} probe cells; pool {2 * n_real} train rows (real + synthetic stand-ins), "
        f"val {len(idv)}, test {len(idt)}",
        "",
        "| | images through the backbone | wall s (all cells) |",
        "|---|---|---|",
        f"| naive (featurise per cell) | {naive_images} | {t_naive:.1f} |",
        f"| cached (`extract_cached`) | {counter['images']} | {t_cached:.1f} (of which probe fits {t_probe_only:.1f}) |",
        f"| ratio naive / cached | {naive_images / max(1, counter['images']):.1f}x | {t_naive / t_cached:.1f}x |",
        "",
        f"identical test accuracies in every cell: {same}; mean probe test accuracy "
        f"{np.mean(list(cached_acc.values())):.3f} (random-weight backbone)",
    ]
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text("# Linear probe: cached features vs recomputing per cell (generated)\n\n" + text + "\n")


if __name__ == "__main__":
    main()
