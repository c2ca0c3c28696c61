"""SimCLR-style two-view augmentation, built on :func:`synthmix.data.augment.augment_batch`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synthmix.data.augment import AugmentConfig

if TYPE_CHECKING:
    import torch

#: A strong preset in the spirit of SimCLR (crop, flips, rotation, affine shift, colour
#: jitter, grey-scale, noise), scaled down for 32-64 px images.
STRONG_VIEWS = AugmentConfig(
    hflip=0.5, vflip=0.2, crop_scale=(0.35, 1.0), rotation=30.0, translate=0.08,
    brightness=0.4, contrast=0.4, saturation=0.4, hue=0.08, grayscale=0.2, noise=0.03,
)


def two_views(x: torch.Tensor, generator: torch.Generator,
              cfg: AugmentConfig = STRONG_VIEWS) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views of every image.

    x: uint8 [N,3,H,W] (0-255) or float [N,3,H,W] (0-1). Returns two float32 [N,3,H,W] in
    [0, 1] (not normalised). The second call continues ``generator``'s stream, so the views
    differ and the pair is reproducible from the generator's state.
    """
    from synthmix.data.augment import augment_batch

    v1 = augment_batch(x, cfg, generator)
    v2 = augment_batch(x, cfg, generator)
    return v1, v2
