"""Training with outlier images: Outlier Exposure / energy margin next to cross-entropy.

Two configs:

* :class:`OutlierLossConfig` — what :func:`synthmix.training.loop.fit` needs (``fit(...,
  outliers=x_uint8 [M,3,S,S], outlier_loss=OutlierLossConfig(...))``): the loss, its weight,
  the energy margins and how many outliers go with each ID image of a batch;
* :class:`OutlierConfig` — the ``outliers:`` section of a training run
  (:class:`synthmix.training.train.TrainRunConfig`): the same fields plus where the outlier
  images come from::

      outliers:
        source: synthetic_role   # synthetic_role | corrupted | folder
        roles: [near_ood]        # synthetic_role: rows of these roles in synthetic_manifests
        path: null               # folder: any image folder (searched recursively)
        kinds: [jigsaw, cutmix, mixup, blur, noise]   # corrupted: what to make (+ collage:
                                 #   several real objects of different classes in one frame)
        max_images: null         # cap (synthetic_role / folder); corrupted: how many (default:
                                 #   the number of real train images)
        loss: oe                 # oe | energy
        weight: null             # default 0.5 (oe) / 0.1 (energy)
        m_in: -25.0              # energy margins (Liu et al. 2020, CIFAR values)
        m_out: -7.0
        batch_ratio: 1.0         # outliers per ID image in a batch

:func:`corrupt_images` makes the cheap control (``source: corrupted``) from the real train
images: a pure, seeded function on uint8 tensors. :func:`build_outliers` resolves a config to
the outlier tensor and a summary (counts) that the run records; an empty set is an error.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from synthmix.core.config import StrictModel
from synthmix.core.errors import ConfigError
from synthmix.core.seeding import derive_seed
from synthmix.training.losses.outlier import ENERGY_MARGINS_CIFAR, ENERGY_WEIGHT, OE_WEIGHT

if TYPE_CHECKING:
    import torch

CORRUPTIONS = ("jigsaw", "cutmix", "mixup", "blur", "noise", "collage")
DEFAULT_KINDS = ("jigsaw", "cutmix", "mixup", "blur", "noise")
CorruptionKind = Literal["jigsaw", "cutmix", "mixup", "blur", "noise", "collage"]


class OutlierLossConfig(StrictModel):
    """How outlier images enter the loss of :func:`~synthmix.training.loop.fit`."""

    loss: Literal["oe", "energy"] = Field("oe", description="oe: Outlier Exposure (Hendrycks et al. 2019); "
                                          "energy: energy-bounded margin loss (Liu et al. 2020)")
    weight: float | None = Field(None, ge=0, description="lambda (default 0.5 for oe, 0.1 for energy)")
    m_in: float = Field(ENERGY_MARGINS_CIFAR[0], description="energy: ID energies are pushed below m_in")
    m_out: float = Field(ENERGY_MARGINS_CIFAR[1], description="energy: outlier energies are pushed above m_out")
    batch_ratio: float = Field(1.0, gt=0, le=8, description="outlier images per ID image in a batch")

    @model_validator(mode="after")
    def _margins(self):
        if self.loss == "energy" and not self.m_in < self.m_out:
            raise ValueError(f"m_in ({self.m_in}) must be below m_out ({self.m_out})")
        return self

    def resolved_weight(self) -> float:
        if self.weight is not None:
            return self.weight
        return OE_WEIGHT if self.loss == "oe" else ENERGY_WEIGHT

    def loss_config(self) -> OutlierLossConfig:
        """Only the loss fields (what ``fit`` takes)."""
        return OutlierLossConfig(**{k: getattr(self, k) for k in OutlierLossConfig.model_fields})


class OutlierConfig(OutlierLossConfig):
    """The ``outliers:`` section of a training run (see the module docstring)."""

    source: Literal["synthetic_role", "corrupted", "folder"]
    roles: list[str] = Field(default_factory=lambda: ["near_ood"], description="synthetic_role: manifest roles")
    path: Path | None = Field(None, description="folder: an image folder (any layout)")
    kinds: list[CorruptionKind] = Field(
        default_factory=lambda: list(DEFAULT_KINDS), description="corrupted: kinds, used in turn")
    max_images: int | None = Field(None, ge=1, description="cap on outlier images (corrupted: the count; "
                                   "default the number of real train images)")

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "folder" and self.path is None:
            raise ValueError("source 'folder' needs path (an image folder)")
        if self.source != "folder" and self.path is not None:
            raise ValueError(f"path is only used with source 'folder', not {self.source!r}")
        if self.source == "synthetic_role" and not self.roles:
            raise ValueError("source 'synthetic_role' needs at least one role (e.g. [near_ood])")
        if self.source == "corrupted" and not self.kinds:
            raise ValueError("source 'corrupted' needs at least one kind")
        return self

    def resolved(self) -> OutlierConfig:
        return self if self.path is None else self.model_copy(
            update={"path": Path(self.path).expanduser().resolve()})


def outlier_term(logits_in: torch.Tensor, logits_out: torch.Tensor, cfg: OutlierLossConfig) -> torch.Tensor:
    """The regulariser added to the ID cross-entropy. logits_in [N, C], logits_out [M, C] -> scalar."""
    from synthmix.training.losses.outlier import energy_margin_loss, oe_loss

    if cfg.loss == "oe":
        return oe_loss(logits_out, cfg.resolved_weight())
    return energy_margin_loss(logits_in, logits_out, cfg.m_in, cfg.m_out, cfg.resolved_weight())


# ----------------------------------------------------------------------------- cheap outliers

def corrupt_images(x: torch.Tensor, labels: torch.Tensor, n: int, seed: int,
                   kinds: Sequence[str] = DEFAULT_KINDS) -> tuple[torch.Tensor, list[str]]:
    """Cheap outliers made from real images: heavy corruptions and mixed-class augmentations.

    x: uint8 [N, 3, S, S] (real train images); labels: int64 [N]; n: images to make; seed: all
    randomness comes from one ``torch.Generator(seed)``, so the output depends only on
    (x, labels, n, seed, kinds). Image ``i`` gets kind ``kinds[i % len(kinds)]``:

    * ``jigsaw`` — a 4 x 4 grid of patches in a random non-identity order;
    * ``cutmix`` — a box of 30-60 % of the area pasted from an image of another class;
    * ``mixup`` — a 35-65 % blend with an image of another class;
    * ``blur`` — area-downsampled to S/8 (at least 2 px) and upsampled bilinearly;
    * ``noise`` — gaussian noise of std 0.3-0.5 (images in [0, 1]);
    * ``collage`` — 2-3 images of different classes, shrunk and placed side by side on a plain
      background (:func:`collage`): several objects of different classes in one photo.

    ``cutmix`` / ``mixup`` fall back to any other image when there is one class only (``collage``:
    see :func:`collage`). The default kinds (``DEFAULT_KINDS``) leave ``collage`` out.
    Returns (uint8 [n, 3, S, S], kind of each image).
    """
    import torch
    import torch.nn.functional as F

    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise ValueError(f"corrupt_images: x must be non-empty uint8 [N,3,S,S], got {x.dtype} {tuple(x.shape)}")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"corrupt_images: labels must be [{x.shape[0]}], got {tuple(labels.shape)}")
    bad = [k for k in kinds if k not in CORRUPTIONS]
    if bad or not kinds:
        raise ValueError(f"corrupt_images: unknown kinds {bad} (choose from {CORRUPTIONS})")
    if n < 1:
        raise ValueError(f"corrupt_images: n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    N, _, H, W = x.shape
    labels = labels.long()
    out = torch.empty(n, 3, H, W, dtype=torch.uint8)
    names: list[str] = []

    def other(i: int) -> int:
        pool = (labels != labels[i]).nonzero().flatten()
        if pool.numel() == 0:
            pool = torch.tensor([j for j in range(N) if j != i] or [i])
        return int(pool[torch.randint(pool.numel(), (1,), generator=g)])

    for j in range(n):
        kind = kinds[j % len(kinds)]
        i = int(torch.randint(N, (1,), generator=g))
        img = x[i].float() / 255.0
        if kind == "jigsaw":
            gs = 4
            ph, pw = H // gs, W // gs
            order = torch.randperm(gs * gs, generator=g)
            if bool((order == torch.arange(gs * gs)).all()):
                order = order.roll(1)
            patches = [img[:, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] for r in range(gs) for c in range(gs)]
            res = img.clone()
            for k, src in enumerate(order.tolist()):
                r, c = divmod(k, gs)
                res[:, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] = patches[src]
        elif kind == "cutmix":
            b = x[other(i)].float() / 255.0
            area = 0.3 + 0.3 * float(torch.rand((), generator=g))
            aspect = float(torch.empty(()).uniform_(0.5, 2.0, generator=g))
            bh = max(1, min(H, round((area * H * W * aspect) ** 0.5)))
            bw = max(1, min(W, round(area * H * W / bh)))
            top = int(torch.randint(H - bh + 1, (1,), generator=g))
            left = int(torch.randint(W - bw + 1, (1,), generator=g))
            res = img.clone()
            res[:, top:top + bh, left:left + bw] = b[:, top:top + bh, left:left + bw]
        elif kind == "mixup":
            b = x[other(i)].float() / 255.0
            lam = 0.35 + 0.3 * float(torch.rand((), generator=g))
            res = lam * img + (1 - lam) * b
        elif kind == "blur":
            small = F.interpolate(img[None], size=(max(2, H // 8), max(2, W // 8)), mode="area")
            res = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)[0]
        elif kind == "collage":
            res = collage(x, labels, g, first=i)[0].float() / 255.0
        else:  # noise
            std = 0.3 + 0.2 * float(torch.rand((), generator=g))
            res = img + std * torch.randn(img.shape, generator=g)
        out[j] = (res.clamp(0, 1) * 255.0).round().to(torch.uint8)
        names.append(kind)
    return out, names


def content_box(img: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``img`` (uint8 [3, H, W]) without its letterbox bars: the
    leading / trailing rows and columns in which every pixel has the same colour (``resize: pad``
    fill, or a perfectly flat margin). The whole image when trimming would leave under a quarter
    of a side."""
    H, W = img.shape[1:]
    flat_row = (img == img[:, :, :1]).all(dim=2).all(dim=0)  # [H]: the row is one colour
    flat_col = (img == img[:, :1, :]).all(dim=1).all(dim=0)  # [W]

    def span(flat, n: int) -> tuple[int, int]:
        lo, hi = 0, n
        while lo < n and bool(flat[lo]):
            lo += 1
        while hi > lo and bool(flat[hi - 1]):
            hi -= 1
        return (lo, hi) if hi - lo >= max(1, n // 4) else (0, n)

    top, bottom = span(flat_row, H)
    left, right = span(flat_col, W)
    return top, bottom, left, right


def collage(x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, first: int | None = None,
            n_pieces: tuple[int, int] = (2, 3), scale: tuple[float, float] = (0.50, 0.80),
            max_overlap: float = 0.35, tries: int = 12, cutout: float | None = 40.0, frame: bool = True
            ) -> tuple[torch.Tensor, list[int]]:
    """One collage: several objects of different classes in one image (a cheap near-OOD outlier
    that looks like a photo of mixed fruit rather than a damaged one).

    x: uint8 [N, 3, S, S]; labels: int [N]; every random draw comes from ``generator``. Draws a
    piece count in ``n_pieces`` (inclusive), capped at the number of classes (at least 2 pieces
    when there are 2+ images), then one image of each of that many distinct classes (``first``,
    when given, is the first piece and fixes its class). Each piece is cut to its
    :func:`content_box`, shrunk (aspect kept, area-averaged) so that its longer side is a uniform
    ``scale`` fraction of S, and placed at a uniform position; a position is redrawn (up to
    ``tries`` times, then the least-overlapping draw is kept) while it covers more than
    ``max_overlap`` of a smaller already placed piece. The background is the per-channel median of
    the pieces' content-box border pixels (white for photos on white). ``cutout`` (0-255, None =
    off): paste only a piece's pixels farther than this (max over channels) from the median colour
    of its own border, i.e. the object without its plain background (whole rectangles when the
    background is not plain). ``frame``: compose inside the content box of the first piece's
    image and keep its letterbox bars (the collage has the frame of a real padded photo; sizes and
    positions are then relative to that box, pieces shrunk further to fit it). With one class the
    pieces are distinct images of that class (one image: one piece).

    Returns (uint8 [3, S, S], indices into ``x`` of the pieces, in paste order).
    """
    import torch
    import torch.nn.functional as F

    N, _, H, W = x.shape
    labels = labels.long()
    classes = labels.unique()
    lo_n, hi_n = n_pieces
    k = int(torch.randint(lo_n, hi_n + 1, (1,), generator=generator))
    k = max(min(k, int(classes.numel())), min(2, N))
    first = int(torch.randint(N, (1,), generator=generator)) if first is None else int(first)
    picks = [first]
    if classes.numel() > 1:
        rest = classes[classes != labels[first]]
        rest = rest[torch.randperm(rest.numel(), generator=generator)][:k - 1]
        for c in rest.tolist():
            pool = (labels == c).nonzero().flatten()
            picks.append(int(pool[torch.randint(pool.numel(), (1,), generator=generator)]))
    else:
        pool = torch.tensor([j for j in range(N) if j != first] or [first])
        pool = pool[torch.randperm(pool.numel(), generator=generator)]
        picks += [int(pool[j % pool.numel()]) for j in range(k - 1)]

    ft, fb, fl, fr = content_box(x[first]) if frame else (0, H, 0, W)
    FH, FW = fb - ft, fr - fl
    pieces, ring, masks = [], [], []
    for i in picks:
        t, b, lft, r = content_box(x[i])
        crop = x[i, :, t:b, lft:r].float()
        ring.append(torch.cat([crop[:, 0, :], crop[:, -1, :], crop[:, :, 0], crop[:, :, -1]], dim=1))
        frac = float(torch.empty(()).uniform_(scale[0], scale[1], generator=generator))
        h, w = crop.shape[1:]
        f = min(frac * max(FH, FW) / max(h, w), FH / h, FW / w)
        nh, nw = max(1, min(FH, round(h * f))), max(1, min(FW, round(w * f)))
        pieces.append(F.interpolate(crop[None], size=(nh, nw), mode="area")[0])
        if cutout is not None:
            own = ring[-1].median(dim=1).values[:, None, None]
            masks.append((pieces[-1] - own).abs().amax(dim=0) > cutout)
    bg = torch.cat(ring, dim=1).median(dim=1).values  # [3]
    canvas = x[first].float()  # a copy: its letterbox bars stay when frame is set
    canvas[:, ft:fb, fl:fr] = bg[:, None, None]
    boxes: list[tuple[int, int, int, int]] = []
    for p, piece in enumerate(pieces):
        ph, pw = piece.shape[1:]
        best, best_ov = None, None
        for _ in range(tries):
            top = ft + int(torch.randint(FH - ph + 1, (1,), generator=generator))
            left = fl + int(torch.randint(FW - pw + 1, (1,), generator=generator))
            ov = max((_overlap((top, left, ph, pw), bx) for bx in boxes), default=0.0)
            if best_ov is None or ov < best_ov:
                best, best_ov = (top, left), ov
            if ov <= max_overlap:
                break
        top, left = best
        if cutout is None or not bool(masks[p].any()):
            canvas[:, top:top + ph, left:left + pw] = piece
        else:
            region = canvas[:, top:top + ph, left:left + pw]
            canvas[:, top:top + ph, left:left + pw] = torch.where(masks[p], piece, region)
        boxes.append((top, left, ph, pw))
    return canvas.round().clamp(0, 255).to(torch.uint8), picks


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection of boxes (top, left, h, w) over the smaller box's area."""
    ih = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iw = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, ih) * max(0, iw) / min(a[2] * a[3], b[2] * b[3])


# ----------------------------------------------------------------------------- selection

def outlier_rows(rows: Sequence[dict[str, Any]], cfg: OutlierConfig, classes: Sequence[str],
                 seed: int) -> list[dict[str, Any]]:
    """Rows of the outlier images for ``source`` synthetic_role (from ``rows``) or folder (scanned
    here), capped at ``max_images`` by a seeded draw from rows sorted by id. Empty -> ConfigError."""
    from synthmix.training.mixes import synthetic_rows

    if cfg.source == "synthetic_role":
        found = synthetic_rows(rows, classes, cfg.roles)
        where = (f"synthetic rows with role in {cfg.roles}, status ok, split train (or unset), label in "
                 f"{list(classes)}; check synthetic_manifests and that curation/generation made such rows")
    elif cfg.source == "folder":
        found = folder_rows(cfg.path)
        where = f"image files under {cfg.path}"
    else:
        raise ConfigError(f"outliers.source: {cfg.source!r} has no rows (corrupted images are made, not selected)")
    if not found:
        raise ConfigError(f"outliers ({cfg.source}): the outlier set is empty: no {where}")
    found = sorted(found, key=lambda r: r["id"])
    if cfg.max_images is not None and cfg.max_images < len(found):
        found = sorted(random.Random(derive_seed(seed, "outliers")).sample(found, cfg.max_images), key=lambda r: r["id"])
    return found


def folder_rows(folder: str | Path | None) -> list[dict[str, Any]]:
    """Rows (absolute paths, content ids) of every image file under ``folder``."""
    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.data.images import is_image_file
    from synthmix.data.manifest import new_row

    folder = Path(folder) if folder is not None else None
    if folder is None or not folder.is_dir():
        raise ConfigError(f"outliers.path: {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [new_row(id=short_id(sha256_file(p)), path=str(p.resolve()), label=None, split="outlier",
                    source="folder", role="outlier") for p in files]


def build_outliers(cfg: OutlierConfig, rows: Sequence[dict[str, Any]], classes: Sequence[str], seed: int,
                   load, real_train: tuple[torch.Tensor, torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, dict[str, Any]]:
    """The outlier tensor uint8 [M, 3, S, S] and its summary for ``results.json``.

    rows: the run's manifest rows (real + synthetic); load(rows) -> uint8 tensor of those rows'
    images (the run's size, preprocessing and cache); real_train: (x, y) of the real train images
    (needed for ``corrupted``). The summary has ``source``, ``n`` and counts by role / label /
    kind, plus the resolved loss settings.
    """
    summary: dict[str, Any] = {"source": cfg.source, **cfg.loss_config().model_dump(mode="json"),
                               "weight": cfg.resolved_weight()}
    if cfg.source == "corrupted":
        if real_train is None or real_train[0].shape[0] == 0:
            raise ConfigError("outliers (corrupted): the outlier set is empty: no real train images to corrupt")
        n = cfg.max_images or int(real_train[0].shape[0])
        x, kinds = corrupt_images(real_train[0], real_train[1], n, seed, cfg.kinds)
        summary.update(n=int(x.shape[0]), kinds=dict(Counter(kinds)), n_real_sources=int(real_train[0].shape[0]))
        return x, summary
    sel = outlier_rows(rows, cfg, classes, seed)
    x = load(sel)
    if x.shape[0] == 0:
        raise ConfigError(f"outliers ({cfg.source}): the outlier set is empty after loading")
    summary.update(n=int(x.shape[0]), roles=dict(Counter(str(r.get("role")) for r in sel)),
                   parent_labels=dict(Counter(str(r.get("parent_label") or r.get("label")) for r in sel)),
                   methods=dict(Counter(str(r.get("method")) for r in sel)),
                   ids=[r["id"] for r in sel])
    return x, summary
