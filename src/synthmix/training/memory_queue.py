"""A FIFO memory of past embeddings (cross-batch memory) used as extra contrastive keys.

Small batches give each anchor few positives and few negatives; keeping the last ``size``
embeddings (detached) with their labels, negative flags and parent labels lets them act as
keys — never anchors — in :func:`supcon_hard_negative_loss`. Entries come from an encoder a
few steps old; keep the queue short relative to how fast the encoder moves (XBM, Wang et al.
2020, start it after a warm-up for this reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class MemoryQueue:
    """Ring buffer of ``size`` rows: z [size, dim] float32, labels / parent_label [size] int64,
    is_negative [size] bool. Only filled rows are returned by :meth:`keys`."""

    def __init__(self, size: int, dim: int, device: str = "cpu"):
        import torch

        if size < 1 or dim < 1:
            raise ValueError(f"MemoryQueue needs size >= 1 and dim >= 1, got {size}, {dim}")
        self.size = size
        self.z = torch.zeros(size, dim, device=device)
        self.labels = torch.zeros(size, dtype=torch.long, device=device)
        self.parent_label = torch.zeros(size, dtype=torch.long, device=device)
        self.is_negative = torch.zeros(size, dtype=torch.bool, device=device)
        self.ptr = 0
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    def enqueue(self, z: torch.Tensor, labels: torch.Tensor, is_negative: torch.Tensor,
                parent_label: torch.Tensor) -> None:
        """Add a batch (z [B, dim], the rest [B]); the oldest rows are overwritten first."""
        import torch

        z = z.detach().float()
        b = z.shape[0]
        if b >= self.size:  # only the newest ``size`` rows fit
            z, labels, is_negative, parent_label = (t[-self.size:] for t in (z, labels, is_negative, parent_label))
            b = self.size
        idx = (torch.arange(b, device=self.z.device) + self.ptr) % self.size
        self.z[idx] = z.to(self.z.device)
        self.labels[idx] = labels.to(self.z.device)
        self.is_negative[idx] = is_negative.bool().to(self.z.device)
        self.parent_label[idx] = parent_label.to(self.z.device)
        self.ptr = (self.ptr + b) % self.size
        self.filled = min(self.size, self.filled + b)

    def keys(self) -> dict[str, torch.Tensor]:
        """The filled rows as keyword arguments of :func:`supcon_hard_negative_loss`."""
        n = self.filled
        return {"queue_z": self.z[:n], "queue_labels": self.labels[:n],
                "queue_is_negative": self.is_negative[:n], "queue_parent_label": self.parent_label[:n]}
