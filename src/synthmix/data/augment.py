"""Per-sample random augmentation of a whole batch at once, vectorised in torch.

One call draws every random number for the batch from the ``torch.Generator`` passed
in (a fixed number of draws per call, so results depend only on the generator's state
and the batch size), then applies:

1. geometry, as one ``affine_grid`` + ``grid_sample``: random resized crop, random
   margins (the content shrunk by a random factor and placed at a random spot on a
   ``fill`` background: how the fruit study made square synthetic images look like
   real photos with borders), flips, rotation, translation;
2. colour jitter (brightness, contrast, saturation, hue), random grey-scale;
3. gaussian noise.

Everything is off or mild by default (only ``hflip=0.5``), so ``AugmentConfig()`` is a
safe choice for training. Call it twice with the same generator for two SimCLR views:
the second call continues the generator's stream, so the views differ.

Rotation and translation are in normalised coordinates, exact for square images
(the pipeline's tensors are square); on non-square inputs a rotation slightly shears.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from synthmix.core.config import StrictModel

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
NO_NORM_MEAN: tuple[float, float, float] = (0.0, 0.0, 0.0)
NO_NORM_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)
# Pretrained timm / CLIP models use one of these (synthmix.models.model_defaults names it).
INCEPTION_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
INCEPTION_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "inception": (INCEPTION_MEAN, INCEPTION_STD),
                  "clip": (CLIP_MEAN, CLIP_STD), "none": (NO_NORM_MEAN, NO_NORM_STD)}

# ITU-R 601 luma weights (what PIL's convert("L") and torchvision's rgb_to_grayscale use).
_LUMA = (0.299, 0.587, 0.114)
# Uniform draws per sample and call (each augmentation owns one column, so switching one
# augmentation on or off does not change the others' draws).
_DRAWS = 18


class AugmentConfig(StrictModel):
    """Random augmentation settings. Probabilities are in [0, 1]; strengths are ranges around 'no change'."""

    hflip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0, le=1, description="probability of a vertical flip")
    crop_scale: tuple[float, float] = Field(
        (1.0, 1.0), description="random resized crop: area fraction of the image kept, (min, max)")
    crop_ratio: tuple[float, float] = Field(
        (3 / 4, 4 / 3), description="random resized crop: aspect ratio range of the crop (w/h)")
    margin: float = Field(
        0.0, ge=0, lt=1, description="random margins: content shrunk by a factor in [1 - margin, 1], "
        "placed at a random position on a `fill` background")
    margin_prob: float = Field(1.0, ge=0, le=1, description="probability that a sample gets margins")
    fill: tuple[int, int, int] = Field((0, 0, 0), description="RGB 0-255 colour of margins and corners")
    rotation: float = Field(0.0, ge=0, le=180, description="max rotation in degrees (uniform ±)")
    translate: float = Field(0.0, ge=0, le=1, description="max shift as a fraction of the size (uniform ±)")
    brightness: float = Field(0.0, ge=0, le=1, description="brightness factor in [1 - b, 1 + b]")
    contrast: float = Field(0.0, ge=0, le=1, description="contrast factor in [1 - c, 1 + c]")
    saturation: float = Field(0.0, ge=0, le=1, description="saturation factor in [1 - s, 1 + s]")
    hue: float = Field(0.0, ge=0, le=0.5, description="hue shift in [-h, h] turns")
    grayscale: float = Field(0.0, ge=0, le=1, description="probability of converting to grey")
    noise: float = Field(0.0, ge=0, le=1, description="std of additive gaussian noise (images in [0, 1])")

    @field_validator("crop_scale")
    @classmethod
    def _scale_ok(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1] <= 1):
            raise ValueError("need 0 < min <= max <= 1")
        return v

    @field_validator("crop_ratio")
    @classmethod
    def _ratio_ok(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1]):
            raise ValueError("need 0 < min <= max")
        return v

    def has_geometry(self) -> bool:
        """True when a resampling step (crop, margin, rotation, translation) is active."""
        return (self.crop_scale != (1.0, 1.0) or (self.margin > 0 and self.margin_prob > 0)
                or self.rotation > 0 or self.translate > 0)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] 0-255 -> float32 in [0, 1]; float input is returned as float32 unchanged."""
    import torch

    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly augment each sample of ``x`` independently.

    x: uint8 [N,3,H,W] (0-255) or float [N,3,H,W] (0-1). Returns float32 [N,3,H,W] in [0, 1]
    on ``x``'s device. Deterministic given ``generator``'s state (which must live on the
    same device as ``x``, or on the CPU).
    """
    import torch

    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"augment_batch expects [N, 3, H, W], got {tuple(x.shape)}")
    n = x.shape[0]
    out = to_float(x)
    if n == 0:
        return out
    # All draws happen here, in a fixed order and amount, on the generator's device.
    gdev = generator.device
    u = torch.rand(n, _DRAWS, generator=generator, device=gdev).to(out.device)
    noise = None
    if cfg.noise > 0:
        noise = torch.randn(out.shape, generator=generator, device=gdev).to(out.device)

    hf = torch.where(u[:, 0] < cfg.hflip, -1.0, 1.0)
    vf = torch.where(u[:, 1] < cfg.vflip, -1.0, 1.0)
    if cfg.has_geometry():
        out = _geometry(out, cfg, u, hf, vf)
    else:
        out = _flips(out, hf < 0, vf < 0)
    out = _colour(out, cfg, u)
    if noise is not None:
        out = (out + cfg.noise * noise).clamp_(0.0, 1.0)
    return out


def _flips(x: torch.Tensor, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Cheap path when no resampling is needed: exact pixel flips, no interpolation blur.
    import torch

    if bool(h.any()):
        x = torch.where(h.view(-1, 1, 1, 1), x.flip(-1), x)
    if bool(v.any()):
        x = torch.where(v.view(-1, 1, 1, 1), x.flip(-2), x)
    return x


def _geometry(x: torch.Tensor, cfg: AugmentConfig, u: torch.Tensor, hf: torch.Tensor,
              vf: torch.Tensor, force_grid: bool = False) -> torch.Tensor:
    """One affine resampling for crop + flip + rotation + margins + translation.

    affine_grid maps output coords p (in [-1, 1]) to input coords: input = A p + b with
    A = Crop · Flip · Rot / s and b = c - A t, where the content is shrunk by s and shifted
    by t (margins/translation), and the crop of half-size (cw, ch) is centred at c.
    """
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    dev = x.device
    # random resized crop (torchvision's RandomResizedCrop sampling)
    lo, hi = cfg.crop_scale
    area = lo + (hi - lo) * u[:, 2]
    lr0, lr1 = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
    ratio = torch.exp(lr0 + (lr1 - lr0) * u[:, 3])
    # keep both sides inside the image (torchvision retries instead): ratio in [area, 1/area]
    ratio = torch.minimum(torch.maximum(ratio, area), 1 / area)
    cw = torch.sqrt(area * ratio).clamp(max=1.0)
    ch = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - cw) * (2 * u[:, 4] - 1)
    cy = (1 - ch) * (2 * u[:, 5] - 1)
    # rotation
    ang = math.radians(cfg.rotation) * (2 * u[:, 6] - 1)
    cos, sin = torch.cos(ang), torch.sin(ang)
    # margins: shrink by s, place at a random spot that keeps the content inside
    has_margin = u[:, 7] < cfg.margin_prob
    s = torch.where(has_margin, 1 - cfg.margin * u[:, 8], torch.ones_like(u[:, 8]))
    tx = (1 - s) * (2 * u[:, 9] - 1) + 2 * cfg.translate * (2 * u[:, 10] - 1)
    ty = (1 - s) * (2 * u[:, 11] - 1) + 2 * cfg.translate * (2 * u[:, 12] - 1)

    a = torch.zeros(n, 2, 2, device=dev)
    # Crop·Flip·Rot with Rot = [[cos, -sin], [sin, cos]]
    a[:, 0, 0] = cw * hf * cos
    a[:, 0, 1] = -cw * hf * sin
    a[:, 1, 0] = ch * vf * sin
    a[:, 1, 1] = ch * vf * cos
    a = a / s.view(-1, 1, 1)
    t = torch.stack([tx, ty], dim=1)
    b = torch.stack([cx, cy], dim=1) - torch.einsum("nij,nj->ni", a, t)
    fill = torch.tensor(cfg.fill, dtype=x.dtype, device=dev).view(1, 3, 1, 1) / 255.0
    if cfg.rotation == 0 and not force_grid:
        # No rotation: A is diagonal, so the resampling is separable. Two small batched
        # matmuls do exactly what grid_sample does, ~10-50x faster on a CPU.
        my = _tent_matrix(a[:, 1, 1], b[:, 1], x.shape[2])  # [N, H_out, H_in]
        mx = _tent_matrix(a[:, 0, 0], b[:, 0], x.shape[3])  # [N, W_out, W_in]
        img = my.unsqueeze(1) @ x @ mx.transpose(1, 2).unsqueeze(1)
        inside = (my.sum(2).unsqueeze(2) * mx.sum(2).unsqueeze(1)).unsqueeze(1).clamp(0.0, 1.0)
        return img + (1 - inside) * fill
    theta = torch.cat([a, b.unsqueeze(-1)], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # A 4th all-ones channel tells which output pixels came from inside the image.
    ones = torch.ones_like(x[:, :1])
    sampled = F.grid_sample(torch.cat([x, ones], 1), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    img, inside = sampled[:, :3], sampled[:, 3:].clamp(0.0, 1.0)
    return img + (1 - inside) * fill


def _tent_matrix(scale: torch.Tensor, shift: torch.Tensor, size: int) -> torch.Tensor:
    """[N, size_out, size_in] bilinear weights of q = scale * p + shift along one axis.

    Same convention as grid_sample(align_corners=False, padding_mode="zeros"): output pixel
    i sits at p = (2i + 1) / size - 1; the input position in pixels is ((q + 1) size - 1) / 2
    and each input pixel j gets weight max(0, 1 - |u - j|) (zero outside the image).
    """
    import torch

    i = torch.arange(size, dtype=scale.dtype, device=scale.device)
    p = (2 * i + 1) / size - 1
    q = scale.view(-1, 1) * p.view(1, -1) + shift.view(-1, 1)
    u = ((q + 1) * size - 1) / 2
    return (1 - (u.unsqueeze(2) - i.view(1, 1, -1)).abs()).clamp_(min=0.0)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] -> [N,1,H,W] luma."""
    return _LUMA[0] * x[:, :1] + _LUMA[1] * x[:, 1:2] + _LUMA[2] * x[:, 2:3]


def _colour(x: torch.Tensor, cfg: AugmentConfig, u: torch.Tensor) -> torch.Tensor:
    import torch

    n = x.shape[0]

    def factor(k: int, strength: float) -> torch.Tensor:
        return (1 - strength + 2 * strength * u[:, k]).view(n, 1, 1, 1)

    if cfg.brightness > 0:
        x = (x * factor(13, cfg.brightness)).clamp_(0.0, 1.0)
    if cfg.contrast > 0:
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factor(14, cfg.contrast) + mean).clamp_(0.0, 1.0)
    if cfg.saturation > 0:
        g = _grey(x)
        x = ((x - g) * factor(15, cfg.saturation) + g).clamp_(0.0, 1.0)
    if cfg.hue > 0:
        x = _hue_rotate(x, cfg.hue * (2 * u[:, 16] - 1)).clamp_(0.0, 1.0)
    if cfg.grayscale > 0:
        gmask = (u[:, 17] < cfg.grayscale).view(n, 1, 1, 1)
        x = torch.where(gmask, _grey(x).expand_as(x), x)
    return x


def _hue_rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``turns`` [N] (fractions of a full turn) in YIQ space: luma is kept."""
    import torch

    # RGB <-> YIQ (FCC), a linear colour space where hue is the angle in the IQ plane.
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=x.dtype, device=x.device)
    to_rgb = torch.linalg.inv(to_yiq)
    ang = 2 * math.pi * turns.to(x.dtype)
    c, s = torch.cos(ang), torch.sin(ang)
    rot = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1] = c
    rot[:, 1, 2] = -s
    rot[:, 2, 1] = s
    rot[:, 2, 2] = c
    m = to_rgb.unsqueeze(0) @ rot @ to_yiq.unsqueeze(0)  # [N,3,3]
    return torch.einsum("nij,njhw->nihw", m, x)


def normalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(x - mean) / std per channel. x: float [N,3,H,W] in [0, 1]; mean/std: 3 floats or a name
    in ``NORMALIZATIONS`` ("imagenet", "none") passed as ``mean``."""
    import torch

    if isinstance(mean, str):
        if mean not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation {mean!r}; choose from {sorted(NORMALIZATIONS)}")
        mean, std = NORMALIZATIONS[mean]
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def torchvision_transform(cfg: AugmentConfig, size: int):
    """The same augmentation as a per-image torchvision transforms v2 pipeline.

    For users who keep a ``Dataset`` + ``DataLoader``: input a uint8/float tensor image
    [3, H, W] (or a PIL image), output float32 [3, size, size] in [0, 1]. The random
    numbers come from torch's global generator (torchvision's convention), so this is not
    draw-for-draw identical to :func:`augment_batch`; the distributions match in kind.
    """
    import torch
    from torchvision.transforms import v2

    steps: list = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if cfg.margin > 0 and cfg.margin_prob > 0:
        fill = [c / 255 for c in cfg.fill]
        steps += [v2.RandomZoomOut(fill=fill, side_range=(1.0, 1 / (1 - cfg.margin)), p=cfg.margin_prob)]
    if cfg.crop_scale != (1.0, 1.0):
        steps.append(v2.RandomResizedCrop(size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True))
    else:
        steps.append(v2.Resize((size, size), antialias=True))
    if cfg.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip > 0:
        steps.append(v2.RandomVerticalFlip(cfg.vflip))
    if cfg.rotation > 0 or cfg.translate > 0:
        steps.append(v2.RandomAffine(degrees=cfg.rotation, translate=(cfg.translate, cfg.translate),
                                     fill=[c / 255 for c in cfg.fill]))
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        steps.append(v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue))
    if cfg.grayscale > 0:
        steps.append(v2.RandomGrayscale(cfg.grayscale))
    if cfg.noise > 0:
        steps.append(v2.GaussianNoise(sigma=cfg.noise, clip=True))
    return v2.Compose(steps)
