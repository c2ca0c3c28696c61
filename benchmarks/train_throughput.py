"""Training throughput, side by side: the same model, resolution, batch size, optimizer and kind of
augmentation (random resized crop 0.6-1 + horizontal flip) fed by

(a) naive: torchvision ImageFolder + PIL transforms + DataLoader (decodes every JPEG every epoch);
(b) best plain-PyTorch alternative: images decoded and resized once into an in-memory uint8 tensor,
    torchvision.transforms.v2 per sample on a DataLoader;
(c) synthmix: load_tensor (decode + resize once) + fit (augment_batch per batch).

    .venv/bin/python benchmarks/train_throughput.py [--data ../shared/datasets/fruits]
        [--model small_cnn] [--size 64] [--batch 32] [--epochs 3] [--loader-workers 0]
        [--v2-workers 0] [--threads 1] [--md docs/bench/train_throughput_fair.md]

Reports training images/s (forward + backward + step, data loading included) for epoch 1 (with
the one-time decode + resize of (b) and (c)) and for epochs 2+, and the ratios of synthmix to
(a) and to (b) for each.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
CLASSES = ("apple", "banana", "orange")


def _folder(root: Path, transform=None):
    """ImageFolder of the train split with `mixed` left out, labels in CLASSES order."""
    from torchvision import datasets

    probe = datasets.ImageFolder(str(root / "train"), allow_empty=True,
                                 is_valid_file=lambda p: Path(p).parent.name in CLASSES)
    remap = {i: CLASSES.index(c) for i, c in enumerate(probe.classes) if c in CLASSES}
    return datasets.ImageFolder(str(root / "train"), transform=transform, target_transform=remap.__getitem__,
                                allow_empty=True, is_valid_file=lambda p: Path(p).parent.name in CLASSES)


def _train_epochs(model_name: str, size: int, lr: float, make_loader, out: dict):
    """A generator: each ``next()`` trains one epoch on the batches of ``make_loader()`` (called
    inside epoch 1's clock: it may decode) and appends its seconds to ``out["epoch_seconds"]``."""
    import torch
    import torch.nn.functional as F

    from synthmix.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, len(CLASSES), input_size=size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    out.setdefault("epoch_seconds", [])
    dl = None
    while True:
        t0, n = time.perf_counter(), 0
        if dl is None:
            dl = make_loader()
        for x, y in dl:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(y)
        out["epoch_seconds"].append(time.perf_counter() - t0)
        out["n_train"] = n
        yield


def naive(root: Path, model_name: str, size: int, batch: int, workers: int, lr: float, out: dict):
    """(a) The tutorial loop: every epoch decodes every JPEG and transforms it in PIL (epoch generator)."""
    import torch
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), T.RandomHorizontalFlip(),
                    T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    return _train_epochs(model_name, size, lr, lambda: torch.utils.data.DataLoader(
        _folder(root, tf), batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0), out)


def tensor_v2(root: Path, model_name: str, size: int, batch: int, workers: int, lr: float, out: dict):
    """(b) Decode + resize once into a uint8 tensor, then transforms.v2 per sample on a DataLoader."""
    import torch
    from torchvision.transforms import v2

    from input_pipeline import TensorV2Dataset, pre_resize

    tf = v2.Compose([v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                     v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def loader():
        ds = _folder(root)
        x, y = pre_resize([(p, ds.target_transform(t)) for p, t in ds.samples], size)
        return torch.utils.data.DataLoader(TensorV2Dataset(x, y, tf), batch_size=batch, shuffle=True,
                                           num_workers=workers, persistent_workers=workers > 0)
    return _train_epochs(model_name, size, lr, loader, out)


def synthmix_loop(root: Path, model_name: str, size: int, batch: int, epochs: int, lr: float, between) -> dict:
    """(c) load_tensor + fit; ``between()`` runs after each of fit's epochs, off its clock (the other
    loops' epochs, so all three share the machine's load alike)."""
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
    cfg = TrainConfig(model=model_name, input_size=size, epochs=epochs, batch_size=batch, lr=lr,
                      schedule="none", weight_decay=0.0, device="cpu",
                      augment={"hflip": 0.5, "crop_scale": (0.6, 1.0)})
    torch.manual_seed(0)
    model = create_model(model_name, len(CLASSES), **cfg.model_args())
    times, mark = [], {}

    def on_epoch_end(epoch, record):
        times.append(time.perf_counter() - mark["t"])
        between()
        mark["t"] = time.perf_counter()

    mark["t"] = time.perf_counter()
    x = load_tensor(rows, None, size)  # decode + resize once, in epoch 1's clock (no cache: first-run cost)
    y = label_tensor(rows, CLASSES)
    decode = time.perf_counter() - mark["t"]
    fit(model, (x, y), None, cfg, None, progress=False, on_epoch_end=on_epoch_end)
    return {"images": epochs * len(rows), "epoch_seconds": times, "decode_seconds": decode, "n_train": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "fruits")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers of the naive loop")
    ap.add_argument("--v2-workers", type=int, default=0, help="DataLoader workers of the tensor + v2 loop")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--md", type=Path, default=None, help="append a result section to this file")
    a = ap.parse_args()
    if a.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (epochs 2+ are reported apart from epoch 1)")

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    # Warm up once on a single epoch (imports, allocator, OS file cache) before timing.
    next(naive(a.data, a.model, a.size, a.batch, 0, a.lr, {}))
    # Epochs interleaved: synthmix's epoch k, then (a)'s and (b)'s epoch k, so load hits all alike.
    nv, tv = {}, {}
    loops = [naive(a.data, a.model, a.size, a.batch, a.loader_workers, a.lr, nv),
             tensor_v2(a.data, a.model, a.size, a.batch, a.v2_workers, a.lr, tv)]
    s = synthmix_loop(a.data, a.model, a.size, a.batch, a.epochs, a.lr, lambda: [next(g) for g in loops])

    def rates(r):  # (img/s epoch 1, img/s epochs 2+)
        t = r["epoch_seconds"]
        return r["n_train"] / t[0], r["n_train"] * (len(t) - 1) / sum(t[1:])

    (s1, s2), (n1, n2), (v1, v2) = rates(s), rates(nv), rates(tv)
    cmd = " ".join(sys.argv[1:])
    lines = [
        f"model {a.model}, {a.size} px, batch {a.batch}, {a.epochs} epochs of {s['n_train']} train images, "
        f"AdamW, random resized crop (0.6-1) + hflip; torch threads {torch.get_num_threads()}, "
        f"DataLoader workers {a.loader_workers} (naive) / {a.v2_workers} (tensor + v2); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average (1 min) "
        f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "",
        "| loop | epoch 1 (s, with decode) | train img/s, epoch 1 | epochs 2+ (s each) | train img/s, epochs 2+ |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for name, r, (r1, r2) in (("(a) naive ImageFolder + PIL transforms + DataLoader", nv, (n1, n2)),
                              ("(b) pre-resized uint8 tensor + transforms.v2 + DataLoader", tv, (v1, v2)),
                              ("(c) synthmix fit (load_tensor + augment_batch)", s, (s1, s2))):
        t = r["epoch_seconds"]
        lines.append(f"| {name} | {t[0]:.2f} | {r1:.1f} | {', '.join(f'{x:.2f}' for x in t[1:])} | {r2:.1f} |")
    lines += ["",
              f"**synthmix / (b) best plain PyTorch: epoch 1 {s1 / v1:.2f}x, epochs 2+ {s2 / v2:.2f}x**; "
              f"synthmix / (a) naive: epoch 1 {s1 / n1:.2f}x, epochs 2+ {s2 / n2:.2f}x "
              f"(synthmix's one-time decode + resize: {s['decode_seconds']:.2f} s, in its epoch 1)"]
    print("\n".join(lines))
    if a.md:
        with open(a.md, "a", encoding="utf-8") as fh:
            fh.write(f"\n### `.venv/bin/python benchmarks/train_throughput.py {cmd}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
