"""The denoiser: diffusers ``UNet2DModel`` + a class embedding with an extra "null" class.

The class embedding lives outside the UNet (``class_embed_type="identity"``) so a row can be
conditioned on a *mixture* of classes: ``cond`` is either int labels [N] (``num_classes`` is
the null class) or soft weights [N, num_classes + 1] over the embedding table, which gives
class interpolation for near-OOD images.
"""

from __future__ import annotations

import torch
from torch import nn

from synthmix.generation.embedded.config import ModelConfig


class ClassConditionalUNet(nn.Module):
    """eps/v prediction for noisy images x [N, 3, S, S] at timesteps t [N], class ``cond``."""

    def __init__(self, cfg: ModelConfig, num_classes: int, resolution: int):
        super().__init__()
        from diffusers import UNet2DModel

        p = cfg.resolved()
        chans = tuple(p["channels"])
        if resolution % (2 ** (len(chans) - 1)):
            from synthmix.core.errors import ConfigError

            raise ConfigError(f"resolution: {resolution} must be divisible by {2 ** (len(chans) - 1)} "
                              f"for {len(chans)} UNet levels")
        down = ["DownBlock2D"] * len(chans)
        up = ["UpBlock2D"] * len(chans)
        if p["attention"]:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.num_classes = num_classes
        self.unet = UNet2DModel(
            sample_size=resolution, in_channels=3, out_channels=3, block_out_channels=chans,
            layers_per_block=p["layers_per_block"], down_block_types=tuple(down), up_block_types=tuple(up),
            norm_num_groups=p["norm_groups"], class_embed_type="identity", attention_head_dim=8)
        self.class_embed = nn.Embedding(num_classes + 1, chans[0] * 4)
        nn.init.normal_(self.class_embed.weight, std=0.02)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def embed(self, cond: torch.Tensor) -> torch.Tensor:
        """int labels [N] or weights [N, C+1] -> embeddings [N, D]."""
        if cond.dtype in (torch.int64, torch.int32):
            return self.class_embed(cond)
        return cond.to(self.class_embed.weight.dtype) @ self.class_embed.weight

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=self.embed(cond)).sample

    def set_attention(self, impl: str) -> None:
        """``"sdpa"`` (diffusers' default, ``scaled_dot_product_attention``) or ``"math"`` (explicit
        ``baddbmm`` + softmax + ``bmm``): the same function; under bf16 autocast on a CPU the math
        form is several times faster (the CPU flash-attention backward is slow in bf16 at the
        8x8-token, head-dim-8 mid-block attention of these models; docs/bench/embedded_speed.md)."""
        from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

        if impl not in ("sdpa", "math"):
            raise ValueError(f"attention: unknown implementation {impl!r} (sdpa, math)")
        for m in self.modules():
            if isinstance(m, Attention):
                m.set_processor(AttnProcessor() if impl == "math" else AttnProcessor2_0())


def prepare_for_precision(model: ClassConditionalUNet, device: torch.device | str, precision: str) -> None:
    """Pick the attention implementation that is fastest for ``precision`` on ``device``: math on a
    CPU in bf16, sdpa otherwise (GPUs: fused kernels; fp32: the original behaviour)."""
    cpu_bf16 = torch.device(device).type == "cpu" and precision == "bf16"
    model.set_attention("math" if cpu_bf16 else "sdpa")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
