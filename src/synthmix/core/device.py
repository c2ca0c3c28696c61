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


def native_bf16(device: str) -> bool:
    """Whether ``device`` (a concrete device string) computes in bfloat16 natively: a GPU that
    supports it, or a CPU with AVX-512 BF16 / AMX (oneDNN's check). Elsewhere bf16 autocast runs,
    but emulated and slower than fp32."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return False


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16` says the device has it, else ``fp32``;
    ``fp32`` / ``bf16`` are returned as given."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision: {precision!r} is not fp32, bf16 or auto")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: str, precision: str):
    """``torch.autocast`` in bfloat16 on ``device``'s type when ``precision`` (fp32 / bf16 / auto,
    :func:`resolve_precision`) means bf16, a disabled one otherwise: forward passes and losses run
    inside it; weights, gradients and optimizer state stay fp32."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                          enabled=resolve_precision(precision, device) == "bf16")
