"""Data-parallel training: the plain loop (:func:`synthmix.training.loop.fit`) on N processes.

Launch with ``torchrun --nproc-per-node N`` or ``accelerate launch --num_processes N``
(``--cpu`` without GPUs); :func:`fit_ddp` checks the launcher (see
:mod:`synthmix.distributed`), wraps the model in ``DistributedDataParallel`` and runs ``fit``
with a :class:`DataParallel` hook:

- ``cfg.batch_size`` is **per process**; a step uses ``N * batch_size`` samples;
- every rank draws the same permutation and augmentations (same seeds) for the global batch
  and keeps a contiguous slice, so N processes follow the loss curve of one process with an
  N-times batch (up to float summation order) and resume is exact;
- the loss is weighted by slice size so an uneven last batch still gives the gradient of the
  global-batch mean;
- evaluation: each rank scores a slice of the validation set and the sums are all-reduced,
  so every sample counts once (no ``DistributedSampler`` padding);
- rank 0 alone writes checkpoints and TensorBoard; all ranks resume from the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.distributed import World


class DataParallel:
    """The hook ``fit(..., dist=)`` calls: slices, all-reduce, DDP wrapping, barrier."""

    def __init__(self, world: World):
        self.world = world
        self.rank, self.world_size = world.rank, world.world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, n: int) -> tuple[int, int]:
        """[lo, hi) of this rank in ``n`` items: contiguous, sizes differ by at most one."""
        q, r = divmod(n, self.world_size)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (1 if self.rank < r else 0)

    def local_batch(self, xb, yb):
        """This rank's part of a global batch: (x, y, k real samples, loss weight).

        The weight ``k * N / len(global batch)`` turns DDP's average of per-rank means into the
        mean over the global batch. A rank whose slice is empty (last batch smaller than N)
        still runs forward/backward on one sample with weight 0 so the all-reduce stays in step.
        """
        n = len(yb)
        lo, hi = self.local_slice(n)
        if hi == lo:
            return xb[:1], yb[:1], 0, 0.0
        return xb[lo:hi], yb[lo:hi], hi - lo, (hi - lo) * self.world_size / n

    def all_sum(self, t):
        """Sum of tensor ``t`` over ranks (returned on ``t``'s device)."""
        import torch.distributed as dist

        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
        buf = t.to(self.world.device) if dist.get_backend() == "nccl" else t.detach().cpu().clone()
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.to(t.device)

    def wrap(self, model):
        """``DistributedDataParallel`` around ``model`` (already on its device); broadcasts rank 0's weights."""
        from torch.nn.parallel import DistributedDataParallel

        param = next(model.parameters())
        ids = [param.device.index] if param.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def fit_ddp(model, train, val, cfg, run_dir: str | Path | None = None, *, world: World | None = None,
            progress: bool = True, **fit_kwargs: Any):
    """:func:`~synthmix.training.loop.fit` on every process of a launched job (plain ``fit`` alone).

    ``world``: from :func:`synthmix.distributed.init_world` (called here when None). The model
    must be built identically on every rank (DDP broadcasts rank 0's weights anyway).
    Returns the same :class:`~synthmix.training.loop.FitResult` on every rank.
    """
    from synthmix.distributed import init_world
    from synthmix.training.loop import fit

    if world is None:
        world = init_world(cpu=cfg.device == "cpu" or None)
    dist = DataParallel(world) if world.world_size > 1 else None
    return fit(model, train, val, cfg, run_dir, progress=progress and world.is_main, dist=dist, **fit_kwargs)


def train_run_ddp(cfg, run_dir: str | Path, *, progress: bool = True, world: World | None = None) -> dict[str, Any]:
    """:func:`~synthmix.training.train.train_run` on every process of a launched job.

    Rank 0 scans the data folder first (the others wait, then read it), all ranks train
    together, and rank 0 alone saves the final weights, evaluates and writes ``results.json``
    (its results are returned there; other ranks get ``{"rank", "fit"}``). One process: plain
    ``train_run``.
    """
    from synthmix.distributed import init_world
    from synthmix.training.train import prepare_data, train_run

    if world is None:
        world = init_world(cpu=cfg.train.device == "cpu" or None)
    if world.world_size == 1:
        return train_run(cfg, run_dir, progress=progress)
    dist = DataParallel(world)
    if world.is_main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        prepare_data(cfg.resolved(), Path(run_dir) / "data")
    dist.barrier()
    result = train_run(cfg, run_dir, progress=progress and world.is_main, dist=dist)
    # Every rank leaves together, after rank 0's evaluation: a rank that tore its gloo group down
    # while the other was still working was seen to abort ("terminate called without an active
    # exception") on a loaded machine.
    dist.barrier()
    return result
