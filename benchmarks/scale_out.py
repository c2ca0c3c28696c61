"""Scale-out benchmark: 1 process vs N processes (torchrun, gloo on CPU / nccl on GPUs).

Prints, side by side in one run, images/s of
- sharded generation (tiny random-weight Stable Diffusion, text2img, offline), and
- data-parallel training (``fit_ddp``, small_cnn on random uint8 tensors)
for: 1 process x T threads, 1 process x 1 thread, N processes x (T / N) threads.
Rates count only the work (each rank times its own generation / training; the slowest rank
sets the rate), not interpreter start-up; whole-command wall seconds are printed too.

    .venv/bin/python benchmarks/scale_out.py --procs 2 --threads 2 --images 24 --steps 4

On a GPU machine pass ``--device cuda`` (one process per GPU). Numbers on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _worker(args) -> None:
    """One rank (under torchrun): time generation or training, write ``OUT/<kind>.rank{r}.json``."""
    import torch

    from synthmix.distributed import init_world

    torch.set_num_threads(args.threads)
    world = init_world(cpu=args.device == "cpu")
    out = Path(args.out)
    if args.worker == "gen":
        from synthmix.generation.jobs import load_generate_config, run_generate

        cfg = load_generate_config(out / "gen.yaml")
        t0 = time.perf_counter()
        counts = run_generate(cfg, rank=world.rank, world_size=world.world_size)
        seconds, n = time.perf_counter() - t0, counts["ok"]
    else:
        from synthmix.models import create_model
        from synthmix.training.config import TrainConfig
        from synthmix.training.ddp import fit_ddp

        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (args.train_n, 3, 32, 32), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 3, (args.train_n,), generator=g)
        cfg = TrainConfig(model="small_cnn", input_size=32, epochs=args.epochs, batch_size=args.batch // world.world_size,
                          device=args.device, augment={"hflip": 0.5})
        torch.manual_seed(0)
        model = create_model("small_cnn", 3, input_size=32)
        res = fit_ddp(model, (x, y), None, cfg, None, world=world, progress=False)
        seconds = res.train_seconds
        n = args.train_n * args.epochs / world.world_size  # this rank's share of the samples
    (out / f"{args.worker}.rank{world.rank}.json").write_text(json.dumps({"n": n, "seconds": seconds}))


def _launch(kind: str, procs: int, threads: int, out: Path, args) -> dict[str, float]:
    for f in out.glob(f"{kind}.rank*.json"):
        f.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", str(HERE),
           "--worker", kind, "--out", str(out), "--threads", str(threads), "--device", args.device,
           "--train-n", str(args.train_n), "--epochs", str(args.epochs), "--batch", str(args.batch)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{kind} with {procs} process(es) failed:\n{res.stderr[:4000]}")
    wall = time.perf_counter() - t0
    ranks = [json.loads(f.read_text()) for f in sorted(out.glob(f"{kind}.rank*.json"))]
    assert len(ranks) == procs, ranks
    n, slowest = sum(r["n"] for r in ranks), max(r["seconds"] for r in ranks)
    return {"images": n, "seconds": slowest, "img_s": n / slowest, "wall_s": wall}


def _gen_config(root: Path, out: Path, args) -> None:
    import yaml

    sys.path.insert(0, str(HERE.parent))
    from _fruits import FRUITS, fruits_manifest
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    if FRUITS.is_dir():
        manifest = fruits_manifest(root / "fruits.jsonl")
    else:  # no shared data: a 3-class manifest of generated images
        sys.path.insert(0, str(HERE.parents[1] / "tests" / "generation"))
        sys.path.insert(0, str(HERE.parents[1] / "tests"))
        from sd_helpers import real_manifest

        manifest = real_manifest(root / "data", {"apple": 2, "banana": 2, "orange": 2})
    model = build_tiny_pipeline(root / "tiny-sd")
    per_class = max(1, args.images // 3)
    (out / "gen.yaml").write_text(yaml.safe_dump({
        "manifest": str(manifest), "out_dir": str(out / "gen-out"), "batch_size": 4,
        "generator": {"type": "text2img", "model": str(model), "steps": args.steps, "width": 32, "height": 32,
                      "images_per_class": per_class, "seed": 0, "device": args.device}}))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the 1-process run (split among N)")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--train-n", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="global training batch (split among ranks)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", choices=("gen", "train"))
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return {}
    import shutil

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "bench"
        out.mkdir()
        _gen_config(root, out, args)
        setups = [(1, args.threads), (1, 1), (args.procs, max(1, args.threads // args.procs))]
        for kind in ("gen", "train"):
            for procs, threads in setups:
                shutil.rmtree(out / "gen-out", ignore_errors=True)
                results[f"{kind}: {procs} proc x {threads} thread"] = _launch(kind, procs, threads, out, args)
    print(f"{'setup':28s} {'images':>7s} {'work s':>8s} {'img/s':>8s} {'vs 1 proc':>9s} {'wall s':>7s}")
    for k, v in results.items():
        ratio = v["img_s"] / results[k.split(":")[0] + f": 1 proc x {args.threads} thread"]["img_s"]
        print(f"{k:28s} {v['images']:7.0f} {v['seconds']:8.2f} {v['img_s']:8.2f} {ratio:9.2f} {v['wall_s']:7.1f}")
    return results


if __name__ == "__main__":
    main()
