"""Sample grids: what the model makes, per class, during training and after it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from synthmix.core.io import atomic_path
from synthmix.core.seeding import derive_seed


def save_image_grid(rows: Sequence[torch.Tensor], path: str | Path, scale: int = 2) -> Path:
    """Save rows of images (each float [n, 3, S, S] in [0, 1], padded to the longest row) as one PNG."""
    from PIL import Image
    from torchvision.utils import make_grid

    ncol = max(r.shape[0] for r in rows)
    padded = [torch.cat([r, torch.ones(ncol - r.shape[0], *r.shape[1:])]) if r.shape[0] < ncol else r
              for r in rows]
    grid = make_grid(torch.cat(padded).clamp(0, 1), nrow=ncol, padding=2, pad_value=1.0)
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")
    img = Image.fromarray(arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG", optimize=True)  # smaller files for docs
    return Path(path)


@torch.no_grad()
def save_sample_grid(model, cfg, classes: Sequence[str], path: str | Path, per_class: int = 8,
                     seed: int = 0) -> Path:
    """One row of ``per_class`` samples per class (fixed seeds, so grids over training compare)."""
    from synthmix.generation.embedded.diffusion import denoise, to_unit

    was_training = model.training
    model.eval()
    rows = []
    for c in range(len(classes)):
        gens = [torch.Generator().manual_seed(derive_seed(seed, "grid", c, i)) for i in range(per_class)]
        cond = torch.full((per_class,), c, dtype=torch.long)
        rows.append(to_unit(denoise(model, cfg.model, cond, gens, steps=cfg.sample_steps,
                                    guidance=cfg.guidance, precision=getattr(cfg, "precision", "fp32"))).cpu())
    model.train(was_training)
    return save_image_grid(rows, path)
