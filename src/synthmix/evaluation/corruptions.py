"""ImageNet-C-style corruptions (Hendrycks & Dietterich, ICLR 2019) as pure functions on uint8 batches.

Every corruption is ``fn(x: uint8 [N,3,H,W], severity: int in 1..5, generator: torch.Generator)
-> uint8 [N,3,H,W]``; :func:`corrupt` picks one by name and seeds its generator from
``(seed, name)`` only, so a corruption's random draws (noise, blur angle, fog pattern) are the
same at every severity (pixel change grows with severity draw for draw) and do not depend on
which other corruptions ran before.

Severity parameters are those of CIFAR-10-C (the paper's 32 px version, ``make_cifar_c.py``);
spatial ones (blur radii and sigmas, motion length, fog map) are scaled by ``min(H, W) / 32`` so a
64 or 224 px image gets the same blur relative to its size (at 224 px this lands close to the
ImageNet-C values, e.g. defocus radius 10.5 vs 10 at severity 5). Implemented:

=================  ========  ======================================================
name               category  what
=================  ========  ======================================================
gaussian_noise     noise     x + N(0, c)
shot_noise         noise     Poisson(x c) / c
impulse_noise      noise     salt-and-pepper on a fraction c of the values
defocus_blur       blur      anti-aliased disk kernel of radius c
gaussian_blur      blur      gaussian kernel of sigma c
motion_blur        blur      one-sided gaussian-weighted line at a random angle in ±45°
fog                weather   plasma fractal (diamond-square) added, contrast rescaled
brightness         digital   HSV value + c (hue and saturation kept)
contrast           digital   (x - channel mean) * c + channel mean
jpeg_compression   digital   JPEG encode/decode at quality c
pixelate           digital   box-resample to c * size and back
=================  ========  ======================================================

Not implemented: frost and snow (need the frost photos / motion-blurred layers), zoom and
glass blur, elastic transform, spatter, saturate, speckle noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from synthmix.core.seeding import derive_seed

SEVERITIES = (1, 2, 3, 4, 5)

# CIFAR-10-C parameters, severity 1..5.
_P = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
}


def _param(name: str, severity: int):
    if severity not in SEVERITIES:
        raise ValueError(f"{name}: severity must be one of {SEVERITIES}, got {severity}")
    return _P[name][severity - 1]


def _check(x: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"corruptions expect uint8 [N,3,H,W], got {x.dtype} {tuple(x.shape)}")


def _f(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)


def _scale(x: torch.Tensor) -> float:
    return min(x.shape[-2:]) / 32.0


# --- noise -----------------------------------------------------------------------------------

def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, c) in [0, 1]. uint8 [N,3,H,W] -> uint8 [N,3,H,W]."""
    _check(x)
    c = _param("gaussian_noise", severity)
    z = torch.randn(x.shape, generator=generator)
    return _u8(_f(x) + c * z)


def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Poisson(x c) / c (photon noise; larger c = less noise). uint8 -> uint8."""
    _check(x)
    c = _param("shot_noise", severity)
    return _u8(torch.poisson(_f(x) * c, generator=generator) / c)


def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: a fraction c of the values set to 0 or 255 (half each). uint8 -> uint8."""
    _check(x)
    c = _param("impulse_noise", severity)
    u = torch.rand(x.shape, generator=generator)
    salt = torch.rand(x.shape, generator=generator) < 0.5
    out = x.clone()
    hit = u < c
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


# --- blur ------------------------------------------------------------------------------------

def _conv_same(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 2-D correlation of float [N,3,H,W] with one [k,k] kernel, reflected borders."""
    k = kernel.shape[-1]
    pad = k // 2
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
    w = kernel.to(x.dtype).view(1, 1, k, k).expand(3, 1, k, k)
    return F.conv2d(xp, w, groups=3)


def _gauss1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-t * t / (2 * max(sigma, 1e-6) ** 2))
    return g / g.sum()


def _gauss2d(sigma: float, radius: int | None = None) -> torch.Tensor:
    g = _gauss1d(sigma, radius)
    return torch.outer(g, g)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """ImageNet-C's defocus kernel: a disk of ``radius`` pixels (normalised), smoothed by a
    gaussian of sigma ``alias_blur`` (anti-aliasing). Returns float64 [k, k], sum 1."""
    half = 8 if radius <= 8 else math.ceil(radius)
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    d = ((xx ** 2 + yy ** 2) <= radius ** 2).double()
    d = d / d.sum()
    g = _gauss2d(alias_blur, radius=1 if radius <= 8 else 2)
    out = F.conv2d(F.pad(d.view(1, 1, *d.shape), (g.shape[0] // 2,) * 4, mode="reflect"),
                   g.view(1, 1, *g.shape))[0, 0]
    # trim all-zero borders (speed), keep it centred
    nz = torch.nonzero(out > 1e-12)
    r = int(max(abs(nz - half).max().item(), 1))
    out = out[half - r:half + r + 1, half - r:half + r + 1]
    return out / out.sum()


def defocus_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Disk blur (radius and alias sigma scaled by min(H, W)/32). uint8 -> uint8."""
    _check(x)
    r, a = _param("defocus_blur", severity)
    s = _scale(x)
    return _u8(_conv_same(_f(x), disk_kernel(r * s, a * s).float()))


def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur of sigma c * min(H, W)/32. uint8 -> uint8."""
    _check(x)
    sigma = _param("gaussian_blur", severity) * _scale(x)
    return _u8(_conv_same(_f(x), _gauss2d(sigma).float()))


def motion_kernel(radius: float, sigma: float, angle_deg: float) -> torch.Tensor:
    """ImageMagick-style motion blur kernel: weights exp(-i^2 / 2 sigma^2) at i = 0..2*radius
    pixels along ``angle_deg`` (one-sided, as ImageMagick's MotionBlurImage), each weight
    splatted bilinearly onto the pixel grid. Returns float64 [k, k] with sum 1."""
    n = 2 * math.ceil(radius) + 1
    i = torch.arange(n, dtype=torch.float64)
    w = torch.exp(-i * i / (2 * sigma * sigma))
    ang = math.radians(angle_deg)
    dx, dy = i * math.cos(ang), -i * math.sin(ang)
    half = n
    k = torch.zeros(2 * half + 1, 2 * half + 1, dtype=torch.float64)
    x0, y0 = torch.floor(dx), torch.floor(dy)
    fx, fy = dx - x0, dy - y0
    for ox, oy, ww in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        cols = (x0 + ox).long() + half
        rows = (y0 + oy).long() + half
        k.index_put_((rows, cols), w * ww, accumulate=True)
    # the blurred pixel averages the image *behind* the motion: flip for a correlation
    k = torch.flip(k, dims=(0, 1))
    nz = torch.nonzero(k > 1e-12)
    r = int(max(abs(nz - half).max().item(), 1))
    k = k[half - r:half + r + 1, half - r:half + r + 1]
    return k / k.sum()


def motion_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Motion blur at a random angle in [-45, 45] degrees per image (radius, sigma scaled by
    min(H, W)/32). uint8 -> uint8."""
    _check(x)
    r, sg = _param("motion_blur", severity)
    s = _scale(x)
    angles = (torch.rand(x.shape[0], generator=generator, dtype=torch.float64) * 90 - 45).tolist()
    xf = _f(x)
    out = torch.empty_like(xf)
    for j, a in enumerate(angles):
        out[j:j + 1] = _conv_same(xf[j:j + 1], motion_kernel(r * s, sg * s, a).float())
    return _u8(out)


# --- weather ---------------------------------------------------------------------------------

def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square fractal [mapsize, mapsize] in [0, 1] (ImageNet-C's fog pattern);
    ``mapsize`` a power of two."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    m = np.zeros((mapsize, mapsize), dtype=np.float64)
    step, wibble = mapsize, 100.0

    def wibbled_mean(a: np.ndarray) -> np.ndarray:
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        h = step // 2
        corners = m[0:mapsize:step, 0:mapsize:step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        m[h:mapsize:step, h:mapsize:step] = wibbled_mean(sq)
        dr = m[h:mapsize:step, h:mapsize:step]
        ul = m[0:mapsize:step, 0:mapsize:step]
        lt = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        m[0:mapsize:step, h:mapsize:step] = wibbled_mean(lt)
        tt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        m[h:mapsize:step, 0:mapsize:step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    m -= m.min()
    return m / m.max()


def fog(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """x + c0 * plasma fractal (roughness c1), then rescaled by max / (max + c0). uint8 -> uint8.

    The fractal is drawn on a map of size 32 * 2^k covering the image and resized to H x W, so
    a larger image gets the same pattern relative to its size."""
    _check(x)
    c0, c1 = _param("fog", severity)
    n, _, hgt, wid = x.shape
    xf = _f(x)
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
    maps = torch.stack([torch.from_numpy(plasma_fractal(32, c1, np.random.default_rng(sd))).float()
                        for sd in seeds])
    maps = F.interpolate(maps.unsqueeze(1), size=(hgt, wid), mode="bilinear", align_corners=False)
    mx = xf.amax(dim=(1, 2, 3), keepdim=True)
    return _u8((xf + c0 * maps) * mx / (mx + c0))


# --- digital ---------------------------------------------------------------------------------

def brightness(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """HSV value V = max(R, G, B) raised by c (clipped to 1), hue and saturation kept: every
    channel scaled by V'/V (black pixels become grey c). uint8 -> uint8."""
    _check(x)
    c = _param("brightness", severity)
    xf = _f(x)
    v = xf.amax(dim=1, keepdim=True)
    v2 = (v + c).clamp(max=1.0)
    out = torch.where(v > 0, xf * v2 / v.clamp(min=1e-12), v2.expand_as(xf))
    return _u8(out)


def contrast(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(x - m) * c + m with m the per-image, per-channel mean. uint8 -> uint8."""
    _check(x)
    c = _param("contrast", severity)
    xf = _f(x)
    m = xf.mean(dim=(2, 3), keepdim=True)
    return _u8((xf - m) * c + m)


def jpeg_compression(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """JPEG encode + decode at quality c (torchvision's libjpeg). uint8 -> uint8."""
    _check(x)
    from torchvision.io import decode_jpeg, encode_jpeg

    q = _param("jpeg_compression", severity)
    imgs = [xi.contiguous() for xi in x.cpu()]
    encoded = encode_jpeg(imgs, quality=q)
    return torch.stack(decode_jpeg(encoded)).to(x.device)


def box_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] area-weighted resampling (each output pixel averages the input it covers,
    with fractional overlaps: PIL's BOX filter in spirit, for up- and downsampling)."""
    edges_out = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    lo, hi = edges_out[:-1].view(-1, 1), edges_out[1:].view(-1, 1)
    j = torch.arange(n_in, dtype=torch.float64).view(1, -1)
    overlap = (torch.minimum(hi, j + 1) - torch.maximum(lo, j)).clamp(min=0)
    return overlap / overlap.sum(1, keepdim=True)


def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Box-resample to c * size and back (ImageNet-C's PIL BOX down + up). uint8 -> uint8."""
    _check(x)
    c = _param("pixelate", severity)
    h, w = x.shape[-2:]
    sh, sw = max(1, int(h * c)), max(1, int(w * c))
    my = (box_matrix(sh, h) @ box_matrix(h, sh)).float()  # [h, h]: down then up
    mx = (box_matrix(sw, w) @ box_matrix(w, sw)).float()
    return _u8(my @ _f(x) @ mx.T)


CorruptionFn = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
CORRUPTIONS: dict[str, tuple[CorruptionFn, str]] = {
    "gaussian_noise": (gaussian_noise, "noise"),
    "shot_noise": (shot_noise, "noise"),
    "impulse_noise": (impulse_noise, "noise"),
    "defocus_blur": (defocus_blur, "blur"),
    "gaussian_blur": (gaussian_blur, "blur"),
    "motion_blur": (motion_blur, "blur"),
    "fog": (fog, "weather"),
    "brightness": (brightness, "digital"),
    "contrast": (contrast, "digital"),
    "jpeg_compression": (jpeg_compression, "digital"),
    "pixelate": (pixelate, "digital"),
}


def corruption_seed(seed: int, name: str) -> int:
    """The generator seed of corruption ``name`` under study seed ``seed`` (order independent)."""
    return derive_seed(seed, "corruption", name)


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5) to uint8 [N,3,H,W]; deterministic given
    ``seed`` (the same draws at every severity)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    gen = torch.Generator().manual_seed(corruption_seed(seed, name))
    return CORRUPTIONS[name][0](x.cpu(), severity, gen)
