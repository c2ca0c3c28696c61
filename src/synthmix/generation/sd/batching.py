"""Batches that shrink on CUDA out-of-memory: the batch is halved and retried, nothing is lost.

Each image has its own ``torch.Generator`` (seeded from its manifest row), so splitting a batch
does not change any image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


def is_oom(err: BaseException) -> bool:
    """True for a CUDA (or other accelerator) out-of-memory error."""
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


class OomSplitter:
    """Calls ``fn(items) -> list`` on chunks of at most ``max_batch`` items, halving it on OOM.

    The reduced size is kept for later calls (memory does not come back by itself).
    An OOM at batch size 1 becomes a :class:`SynthmixError` saying what to change.
    """

    def __init__(self, max_batch: int | None = None):
        self.max_batch = max_batch
        self.halvings = 0

    def __call__(self, fn: Callable[[Sequence[Any]], list[Any]], items: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        i = 0
        while i < len(items):
            size = min(self.max_batch or len(items), len(items) - i)
            chunk = items[i:i + size]
            try:
                result = fn(chunk)
            except Exception as err:
                if not is_oom(err):
                    raise
                if size == 1:
                    from synthmix.core.errors import SynthmixError

                    raise SynthmixError(f"out of memory even at batch size 1 ({str(err).splitlines()[0]}); "
                                        "lower the resolution, use speed.dtype float16/bfloat16, enable "
                                        "speed.vae_tiling, or use a larger device") from err
                self.max_batch = size // 2
                self.halvings += 1
                log.warning("out of memory at batch size %d; retrying at %d", size, self.max_batch)
                _free_memory()
                continue
            if len(result) != len(chunk):
                raise RuntimeError(f"backend returned {len(result)} images for {len(chunk)} rows")
            out.extend(result)
            i += size
        return out


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
