"""Launching real multi-process jobs from tests: ``torch.distributed.run`` (torchrun) on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def child_env() -> dict[str, str]:
    """Environment of launched children: offline, one thread each, no launcher variables inherited."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


def torchrun_cmd(nproc: int, *args: str) -> list[str]:
    """``torchrun --standalone --nproc-per-node N ARGS...`` (a free port is picked per run)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]


def torchrun(nproc: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run :func:`torchrun_cmd` to the end, output captured."""
    return subprocess.run(torchrun_cmd(nproc, *args), env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


def torchrun_start(nproc: int, *args: str) -> subprocess.Popen:
    """Start :func:`torchrun_cmd` in the background (``communicate()`` gives stdout, stderr)."""
    return subprocess.Popen(torchrun_cmd(nproc, *args), env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def toy_data(n_train: int = 23, n_val: int = 9, size: int = 16, seed: int = 0):
    """Three colour classes as uint8 tensors: train (x [n,3,S,S], y [n]) and val, deterministic."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.arange(n) % 3
        x = torch.randint(0, 120, (n, 3, size, size), generator=g)
        x[torch.arange(n), y] += 120  # class = the bright channel
        return x.to(torch.uint8), y

    return make(n_train), make(n_val)


def toy_config(batch_size: int, **over):
    from synthmix.training.config import TrainConfig

    base = dict(model="tiny_cnn", input_size=16, epochs=4, batch_size=batch_size, lr=0.02, seed=3,
                device="cpu", warmup_epochs=0.5, augment={"hflip": 0.5, "brightness": 0.2})
    base.update(over)
    return TrainConfig(**base)


def toy_model(cfg):
    import torch

    from synthmix.models import create_model

    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, 3, **cfg.model_args())
