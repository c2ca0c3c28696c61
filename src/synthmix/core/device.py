"""Device choice: passed in, never global."""

from __future__ import annotations


def pick_device(requested: str = "auto") -> str:
    """``auto`` -> cuda if available, else mps, else cpu; anything else is returned as given."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
