"""Training throughput: synthmix's loop (uint8 tensor in RAM + augment_batch + fit) vs a naive
torchvision ImageFolder + PIL transforms + DataLoader loop, same model, resolution, batch
size, optimizer and kind of augmentation (random resized crop + horizontal flip), side by side.

    .venv/bin/python benchmarks/train_throughput.py [--data ../shared/datasets/fruits]
        [--model small_cnn] [--size 64] [--batch 32] [--epochs 3] [--loader-workers 0]
        [--threads 2] [--md docs/bench/train_throughput.md]

Reports training images/s (forward + backward + step, data loading included) over all epochs,
and, separately, synthmix's one-time decode + resize of the train set (paid once per run, or
never with the on-disk cache), then the ratio both without and with that one-time cost.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("apple", "banana", "orange")


def naive(root: Path, model_name: str, size: int, batch: int, epochs: int, workers: int, lr: float) -> dict:
    """The tutorial loop: every epoch decodes every JPEG and transforms it in PIL."""
    import torch
    import torch.nn.functional as F
    from torchvision import datasets
    from torchvision import transforms as T

    from synthmix.models import create_model

    tf = T.Compose([T.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), T.RandomHorizontalFlip(),
                    T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    # `mixed` is not a class: keep its folder out and map folder indices to CLASSES order.
    probe = datasets.ImageFolder(str(root / "train"), allow_empty=True,
                                 is_valid_file=lambda p: Path(p).parent.name in CLASSES)
    remap = {i: CLASSES.index(c) for i, c in enumerate(probe.classes) if c in CLASSES}
    ds = datasets.ImageFolder(str(root / "train"), transform=tf, target_transform=remap.__getitem__,
                              allow_empty=True, is_valid_file=lambda p: Path(p).parent.name in CLASSES)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = create_model(model_name, len(CLASSES), input_size=size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for x, y in dl:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(y)
    return {"images": n, "seconds": time.perf_counter() - t0, "n_train": len(ds)}


def synthmix_loop(root: Path, model_name: str, size: int, batch: int, epochs: int, lr: float) -> dict:
    import torch

    from synthmix.data.images import is_image_file
    from synthmix.data.manifest import new_row
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.models import create_model
    from synthmix.training.config import TrainConfig
    from synthmix.training.loop import fit

    rows = [new_row(id=str(i), path=str(p), label=p.parent.name, split="train", source="real")
            for i, p in enumerate(sorted(q for c in CLASSES for q in (root / "train" / c).iterdir()
                                         if is_image_file(q)))]
    t0 = time.perf_counter()
    x = load_tensor(rows, None, size)  # decode + resize once (no cache: the honest first-run cost)
    y = label_tensor(rows, CLASSES)
    decode = time.perf_counter() - t0
    cfg = TrainConfig(model=model_name, input_size=size, epochs=epochs, batch_size=batch, lr=lr,
                      schedule="none", weight_decay=0.0, device="cpu",
                      augment={"hflip": 0.5, "crop_scale": (0.6, 1.0)})
    torch.manual_seed(0)
    model = create_model(model_name, len(CLASSES), **cfg.model_args())
    t0 = time.perf_counter()
    res = fit(model, (x, y), None, cfg, None, progress=False)
    return {"images": epochs * len(rows), "seconds": time.perf_counter() - t0, "decode_seconds": decode,
            "n_train": len(rows), "fit_reported_img_s": res.images_per_second}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "fruits")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--loader-workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--md", type=Path, default=None, help="append a result section to this file")
    a = ap.parse_args()

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    # Warm both paths once on a single epoch (imports, allocator, OS file cache) before timing.
    naive(a.data, a.model, a.size, a.batch, 1, 0, a.lr)
    s = synthmix_loop(a.data, a.model, a.size, a.batch, a.epochs, a.lr)
    nv = naive(a.data, a.model, a.size, a.batch, a.epochs, a.loader_workers, a.lr)

    s_ips = s["images"] / s["seconds"]
    s_ips_all = s["images"] / (s["seconds"] + s["decode_seconds"])
    n_ips = nv["images"] / nv["seconds"]
    cmd = " ".join(sys.argv[1:])
    lines = [
        f"model {a.model}, {a.size} px, batch {a.batch}, {a.epochs} epochs of {s['n_train']} train images, "
        f"AdamW, random resized crop (0.6-1) + hflip; torch threads {torch.get_num_threads()}, "
        f"DataLoader workers {a.loader_workers}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        "",
        "| loop | train img/s | seconds | one-time decode (s) |",
        "| --- | ---: | ---: | ---: |",
        f"| naive ImageFolder + DataLoader + PIL | {n_ips:.1f} | {nv['seconds']:.1f} | - |",
        f"| synthmix fit (tensor in RAM + augment_batch) | {s_ips:.1f} | {s['seconds']:.1f} | "
        f"{s['decode_seconds']:.1f} |",
        "",
        f"ratio synthmix / naive: **{s_ips / n_ips:.2f}x** (training epochs); "
        f"**{s_ips_all / n_ips:.2f}x** counting synthmix's one-time decode",
    ]
    print("\n".join(lines))
    if a.md:
        with open(a.md, "a", encoding="utf-8") as fh:
            fh.write(f"\n### `.venv/bin/python benchmarks/train_throughput.py {cmd}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
