"""Seeding. Randomness is passed in as generators, never taken from globals.

Every seed that is not the user's own is :func:`derive_seed` of the user's seed and names
(``derive_seed(seed, "augment")``, ``derive_seed(seed, target, label)``): independent streams
that do not depend on the order of work, with no hand-made arithmetic (``seed * 1000 + i``
collides; ``seed + 1`` is the next user's seed).
"""

from __future__ import annotations


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
