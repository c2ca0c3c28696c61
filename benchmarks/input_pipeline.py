"""Input pipeline throughput: synthmix (cached uint8 tensor + augment_batch) vs a naive
torchvision ImageFolder + PIL transforms + DataLoader loop, same data, resolution and
kind of augmentation (random resized crop + horizontal flip), run side by side.

    .venv/bin/python benchmarks/input_pipeline.py [--data ../shared/datasets/fruits] [--size 64]
        [--epochs 4] [--batch 64] [--loader-workers 2] [--md docs/bench/input_pipeline.md]

Reports images/s over epochs 2+ (epoch 1 is reported apart: it decodes and fills the
cache for synthmix, and warms the OS file cache for both) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def naive_epochs(root: Path, size: int, epochs: int, batch: int, workers: int) -> tuple[list[float], int]:
    """(seconds per epoch, n images) of the usual tutorial loop (decodes every file every epoch)."""
    import torch
    from torchvision import datasets
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
                    T.RandomHorizontalFlip(), T.ToTensor()])
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     persistent_workers=workers > 0)
    times = []
    n = 0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, _ in dl:
            n += x.shape[0]
        times.append(time.perf_counter() - t0)
    return times, len(ds)


def synthmix_epochs(root: Path, size: int, epochs: int, batch: int, cache_dir: Path):
    """(seconds to scan, seconds per epoch, n images, seconds to reload the cache).

    Epoch 1 includes load_tensor (decode + preprocess + write the cache); later epochs
    shuffle the in-memory uint8 tensor and run augment_batch on each batch."""
    import torch

    from synthmix.data.augment import AugmentConfig, augment_batch
    from synthmix.data.cache import load_tensor
    from synthmix.data.preprocess import PreprocessConfig
    from synthmix.data.scan import scan_dataset

    t0 = time.perf_counter()
    rep = scan_dataset(root, None, val_fraction=0.0)
    rows = [r for r in rep.rows if r["split"] == "train"]
    t_scan = time.perf_counter() - t0
    cfg = AugmentConfig(hflip=0.5, crop_scale=(0.6, 1.0))
    pre = PreprocessConfig(size=size, resize="stretch")  # what the naive loop's crop sees: no padding
    g = torch.Generator().manual_seed(0)
    times = []
    x = None
    for _ in range(epochs):
        t0 = time.perf_counter()
        if x is None:
            x = load_tensor(rows, None, size, preprocess=pre, cache_dir=cache_dir)
        perm = torch.randperm(len(rows), generator=g)
        for i in range(0, len(rows), batch):
            xb = augment_batch(x[perm[i:i + batch]], cfg, g)
            assert xb.shape[1:] == (3, size, size)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    again = load_tensor(rows, None, size, preprocess=pre, cache_dir=cache_dir)
    t_reload = time.perf_counter() - t0
    assert torch.equal(again, x)
    return t_scan, times, len(rows), t_reload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "fruits")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--loader-workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the main process (1: on a shared 2-core machine more threads "
                    "only spin; DataLoader workers use 1 each anyway)")
    ap.add_argument("--md", type=Path, default=None, help="also write the results as markdown here")
    args = ap.parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (epochs 2+ are measured)")
    import torch

    torch.set_num_threads(args.threads)
    cache_dir = Path(tempfile.mkdtemp(prefix="synthmix-bench-cache-"))
    try:
        t_scan, s_times, n_s, t_reload = synthmix_epochs(args.data, args.size, args.epochs, args.batch,
                                                         cache_dir)
        n_times, n_n = naive_epochs(args.data, args.size, args.epochs, args.batch, args.loader_workers)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    s_ips = n_s * (args.epochs - 1) / sum(s_times[1:])
    n_ips = n_n * (args.epochs - 1) / sum(n_times[1:])
    ratio = s_ips / n_ips
    cmd = "python benchmarks/input_pipeline.py " + " ".join(sys.argv[1:])
    lines = [
        f"command: `{cmd.strip()}`",
        f"machine: {os.cpu_count()}-core {platform.machine()} CPU, shared and noisy (load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run); {torch.get_num_threads()} torch thread(s); python "
        f"{platform.python_version()}, torch {torch.__version__}; data {args.data} (train split)",
        "",
        f"| pipeline ({args.size} px, batch {args.batch}) | images | epoch 1 (s) | epochs 2+ (s each) "
        "| images/s, epochs 2+ |",
        "| --- | ---: | ---: | --- | ---: |",
        f"| naive: ImageFolder + PIL transforms + DataLoader({args.loader_workers} workers) | {n_n} "
        f"| {n_times[0]:.2f} | {', '.join(f'{t:.2f}' for t in n_times[1:])} | {n_ips:,.0f} |",
        f"| synthmix: cached uint8 tensor + augment_batch | {n_s} | {s_times[0]:.2f} "
        f"| {', '.join(f'{t:.3f}' for t in s_times[1:])} | {s_ips:,.0f} |",
        "",
        f"**ratio (synthmix / naive, epochs 2+): {ratio:.1f}x**",
        "",
        f"synthmix extras: scan + validation of the folder {t_scan:.2f} s (not in the epochs); "
        f"reloading all {n_s} images from the on-disk cache in a new call: {t_reload:.3f} s.",
    ]
    print("\n".join(lines))
    if args.md:
        from synthmix.core.io import atomic_write_text

        atomic_write_text(args.md, "# Input pipeline benchmark\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
