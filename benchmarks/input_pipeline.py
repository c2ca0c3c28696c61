"""Input pipeline throughput, side by side on the same data, resolution and kind of augmentation
(random resized crop 0.6-1 + horizontal flip):

(a) naive: torchvision ImageFolder + PIL transforms + DataLoader (decodes every file every epoch);
(b) best plain-PyTorch alternative: every image decoded and resized once (PIL, bicubic) into an
    in-memory uint8 tensor, then torchvision.transforms.v2 per sample on a DataLoader;
(c) synthmix: load_tensor (decode + resize once, on-disk cache) + augment_batch (one batched
    affine_grid + grid_sample per batch, per-sample parameters).

    .venv/bin/python benchmarks/input_pipeline.py [--data ../shared/datasets/fruits] [--size 64]
        [--epochs 4] [--batch 64] [--loader-workers 2] [--v2-workers 0] [--md docs/bench/input_pipeline_fair.md]

Epoch 1 (with the one-time decode + resize of (b) and (c)) and epochs 2+ are reported
separately, with the ratios of synthmix to (a) and to (b) for each. The three pipelines run their
epochs interleaved (epoch k of each, then epoch k + 1) so a shared machine's load hits them alike.
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


def naive_epochs(root: Path, size: int, batch: int, workers: int, out: dict):
    """Epoch generator of the usual tutorial loop (decodes every file every epoch): each ``next()``
    runs one epoch and appends its seconds to ``out["times"]`` (``out["n"]``: images)."""
    import torch
    from torchvision import datasets
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
                    T.RandomHorizontalFlip(), T.ToTensor()])
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     persistent_workers=workers > 0)
    out["times"], out["n"] = [], len(ds)
    while True:
        t0 = time.perf_counter()
        for x, _ in dl:
            assert x.shape[1:] == (3, size, size)
        out["times"].append(time.perf_counter() - t0)
        yield


class TensorV2Dataset:
    """(uint8 image [3, S, S] transformed by ``tf``, label) from in-memory tensors (picklable for workers)."""

    def __init__(self, x, y, tf):
        self.x, self.y, self.tf = x, y, tf

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.tf(self.x[i]), self.y[i]


def pre_resize(samples, size: int):
    """Decode every image of ``samples`` ([(path, label)], e.g. ``ImageFolder.samples``) once (PIL, RGB)
    and resize it to size x size (bicubic, as synthmix does): (uint8 [N, 3, S, S], labels [N])."""
    import numpy as np
    import torch
    from PIL import Image

    xs = []
    for path, _ in samples:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.BICUBIC, reducing_gap=3.0)
            xs.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(xs), torch.tensor([label for _, label in samples])


def tensor_v2_epochs(root: Path, size: int, batch: int, workers: int, out: dict):
    """Epoch generator (as ``naive_epochs``): pre-resized uint8 tensor + torchvision.transforms.v2
    per sample on a DataLoader; epoch 1 includes the one-time decode + resize."""
    import torch
    from torchvision.transforms import v2

    tf = v2.Compose([v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                     v2.ToDtype(torch.float32, scale=True)])
    out["times"] = []
    dl = None
    while True:
        t0 = time.perf_counter()
        if dl is None:
            from torchvision import datasets

            x, y = pre_resize(datasets.ImageFolder(str(root / "train")).samples, size)
            dl = torch.utils.data.DataLoader(TensorV2Dataset(x, y, tf), batch_size=batch, shuffle=True,
                                             num_workers=workers, persistent_workers=workers > 0)
            out["n"] = len(y)
        for xb, _ in dl:
            assert xb.shape[1:] == (3, size, size)
        out["times"].append(time.perf_counter() - t0)
        yield


def synthmix_epochs(root: Path, size: int, batch: int, cache_dir: Path, out: dict):
    """Epoch generator (as ``naive_epochs``); also ``out["scan"]`` (seconds to scan the folder, before
    epoch 1) and, once ``out["stop"]`` is set before a last ``next()``, ``out["reload"]`` (seconds to
    reload the cache in a new call).

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
    out["scan"], out["n"], out["times"] = time.perf_counter() - t0, len(rows), []
    cfg = AugmentConfig(hflip=0.5, crop_scale=(0.6, 1.0))
    pre = PreprocessConfig(size=size, resize="stretch")  # what the naive loop's crop sees: no padding
    g = torch.Generator().manual_seed(0)
    x = None
    while not out.get("stop"):
        t0 = time.perf_counter()
        if x is None:
            x = load_tensor(rows, None, size, preprocess=pre, cache_dir=cache_dir)
        perm = torch.randperm(len(rows), generator=g)
        for i in range(0, len(rows), batch):
            xb = augment_batch(x[perm[i:i + batch]], cfg, g)
            assert xb.shape[1:] == (3, size, size)
        out["times"].append(time.perf_counter() - t0)
        yield
    t0 = time.perf_counter()
    again = load_tensor(rows, None, size, preprocess=pre, cache_dir=cache_dir)
    out["reload"] = time.perf_counter() - t0
    assert torch.equal(again, x)
    yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "fruits")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers of the naive loop")
    ap.add_argument("--v2-workers", type=int, default=0,
                    help="DataLoader workers of the tensor + v2 loop (0: the data is in memory already)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the main process (1: on a shared 2-core machine more threads "
                    "only spin; DataLoader workers use 1 each anyway)")
    ap.add_argument("--md", type=Path, default=None, help="also write the results as markdown here")
    args = ap.parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (epochs 2+ are measured)")
    import torch

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    for f in (args.data / "train").rglob("*"):  # the OS file cache warm for every pipeline's epoch 1
        if f.is_file():
            f.read_bytes()
    cache_dir = Path(tempfile.mkdtemp(prefix="synthmix-bench-cache-"))
    try:
        so, no, vo = {}, {}, {}
        pipes = [synthmix_epochs(args.data, args.size, args.batch, cache_dir, so),
                 naive_epochs(args.data, args.size, args.batch, args.loader_workers, no),
                 tensor_v2_epochs(args.data, args.size, args.batch, args.v2_workers, vo)]
        for _ in range(args.epochs):  # epochs interleaved: machine load hits the three alike
            for p in pipes:
                next(p)
        so["stop"] = True
        next(pipes[0])
        (t_scan, s_times, n_s, t_reload), (n_times, n_n), (v_times, v_n) = (
            (so["scan"], so["times"], so["n"], so["reload"]), (no["times"], no["n"]), (vo["times"], vo["n"]))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    def later(times, n):  # images/s over epochs 2+
        return n * (len(times) - 1) / sum(times[1:])

    s_ips, n_ips, v_ips = later(s_times, n_s), later(n_times, n_n), later(v_times, v_n)
    s1, n1, v1 = n_s / s_times[0], n_n / n_times[0], v_n / v_times[0]
    cmd = "python benchmarks/input_pipeline.py " + " ".join(sys.argv[1:])
    lines = [
        f"command: `{cmd.strip()}`",
        f"machine: {os.cpu_count()}-core {platform.machine()} CPU, shared and noisy (load average "
        f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end of the run); {torch.get_num_threads()} "
        f"torch thread(s); python {platform.python_version()}, torch {torch.__version__}; data {args.data} "
        f"(train split)",
        "",
        f"| pipeline ({args.size} px, batch {args.batch}) | images | epoch 1 (s, with decode) "
        "| images/s, epoch 1 | epochs 2+ (s each) | images/s, epochs 2+ |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
        f"| (a) naive: ImageFolder + PIL transforms + DataLoader({args.loader_workers} workers) | {n_n} "
        f"| {n_times[0]:.2f} | {n1:,.0f} | {', '.join(f'{t:.2f}' for t in n_times[1:])} | {n_ips:,.0f} |",
        f"| (b) pre-resized uint8 tensor + transforms.v2 per sample + DataLoader({args.v2_workers} workers) "
        f"| {v_n} | {v_times[0]:.2f} | {v1:,.0f} | {', '.join(f'{t:.3f}' for t in v_times[1:])} | {v_ips:,.0f} |",
        f"| (c) synthmix: load_tensor (cached uint8) + augment_batch | {n_s} | {s_times[0]:.2f} | {s1:,.0f} "
        f"| {', '.join(f'{t:.3f}' for t in s_times[1:])} | {s_ips:,.0f} |",
        "",
        f"**synthmix / (b) best plain PyTorch: epoch 1 {s1 / v1:.2f}x, epochs 2+ {s_ips / v_ips:.1f}x**; "
        f"synthmix / (a) naive: epoch 1 {s1 / n1:.2f}x, epochs 2+ {s_ips / n_ips:.1f}x",
        "",
        f"synthmix extras: scan + validation of the folder {t_scan:.2f} s (not in the epochs); "
        f"reloading all {n_s} images from the on-disk cache in a new call: {t_reload:.3f} s.",
    ]
    print("\n".join(lines))
    if args.md:
        from synthmix.core.io import atomic_write_text

        atomic_write_text(args.md, "# Input pipeline benchmark (fair anchors)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
