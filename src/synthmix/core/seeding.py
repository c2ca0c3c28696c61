"""Seeding and determinism. Randomness is passed in as generators, never taken from globals."""

from __future__ import annotations

import os
import random


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; on CPU this makes training bit-reproducible."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def torch_generator(seed: int, device: str = "cpu"):
    """One generator per image / per stream: results do not depend on batch size or order."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived from any parts (e.g. base seed, image id, sample index)."""
    import hashlib

    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)
