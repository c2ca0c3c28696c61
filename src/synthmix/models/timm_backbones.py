"""Any timm backbone as a :class:`Classifier`: ``create_model("timm:<arch>", num_classes, weights=...)``.

Weights never come from the network. ``weights`` is one of

- ``None``: random initialisation;
- a file: a state dict as ``.safetensors``, ``.pt``/``.pth``/``.bin`` (plain, or under
  ``state_dict`` / ``model`` / ``state_dict_ema``; a synthmix ``Classifier`` state dict with its
  ``backbone.`` prefix works too); loaded with ``weights_only=True``;
- a folder: a Hugging Face-style timm folder holding ``model.safetensors`` or
  ``pytorch_model.bin`` (and optionally ``config.json`` with the ``pretrained_cfg``);
- ``"hub-cache"``: the file the architecture's pretrained config names, but only if it is
  already in the local Hugging Face hub cache (``HF_HUB_CACHE``) or torch hub cache; nothing is
  downloaded.

The state dict goes through timm's own pretrained loader (its per-architecture filter adapts
original checkpoints and resizes ViT position embeddings to ``input_size``); the classifier of
the checkpoint is dropped (synthmix puts its own head on top). A checkpoint that does not
fit the architecture (a missing or unexpected key, a wrong shape) is an error naming the file.

:func:`timm_defaults` gives the architecture's pretrained input size and normalisation, which
a study uses unless it overrides them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synthmix.core.errors import ConfigError
from synthmix.models.classifier import Classifier

HUB_CACHE = "hub-cache"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin", "model.pt",
                "model.pth")
# (mean, std) of the normalisation names synthmix.data.augment.NORMALIZATIONS knows.
_KNOWN_NORMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def _timm():
    try:
        import timm
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigError("model: timm backbones need the 'timm' extra: pip install 'synthmix[timm]'") from None
    return timm


def _pretrained_cfg(arch: str):
    timm = _timm()
    if not timm.is_model(arch.split(".")[0]):
        close = timm.list_models(f"*{arch.split('.')[0][:6]}*")[:8]
        raise ConfigError(f"model: unknown timm architecture {arch!r}"
                          + (f"; similar: {', '.join(close)}" if close else ""))
    cfg = timm.get_pretrained_cfg(arch, allow_unregistered=False)
    if cfg is None:
        raise ConfigError(f"model: timm has no pretrained config {arch!r} (list them with "
                          f"timm.list_pretrained('{arch.split('.')[0]}*'))")
    return cfg


def norm_name(mean, std, tol: float = 1e-4) -> str | None:
    """The synthmix normalisation name whose (mean, std) equal these, else None."""
    for name, (m, s) in _KNOWN_NORMS.items():
        if all(abs(a - b) <= tol for a, b in zip((*mean, *std), (*m, *s), strict=True)):
            return name
    return None


def timm_defaults(arch: str, weights: str | Path | None = None) -> dict[str, Any]:
    """The pretrained config of ``arch`` (e.g. ``convnext_tiny`` or ``convnext_tiny.fb_in22k``):

    ``{"input_size": 224, "normalization": "imagenet" | "inception" | "clip" | "none" | None,
    "mean": (3 floats), "std": (3 floats), "interpolation": "bicubic", "crop_pct": 0.875}``.
    ``normalization`` is None when mean/std match no synthmix name (then pass mean/std yourself).
    A weights folder with a ``config.json`` holding ``pretrained_cfg`` overrides timm's defaults.
    """
    cfg = _pretrained_cfg(arch).to_dict()
    if weights is not None and str(weights) != HUB_CACHE and Path(weights).is_dir():
        cj = Path(weights) / "config.json"
        if cj.is_file():
            import json

            try:
                cfg.update(json.loads(cj.read_text()).get("pretrained_cfg") or {})
            except ValueError as err:
                raise ConfigError(f"model.weights: {cj} is not valid JSON: {err}") from None
    mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    return {"input_size": int(cfg["input_size"][-1]), "normalization": norm_name(mean, std), "mean": mean,
            "std": std, "interpolation": cfg.get("interpolation"), "crop_pct": cfg.get("crop_pct")}


def resolve_weights(arch: str, weights: str | Path) -> Path:
    """The local file holding ``weights`` for ``arch`` (see the module docstring); never downloads."""
    if str(weights) == HUB_CACHE:
        return _from_hub_cache(arch)
    path = Path(weights).expanduser()
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"model.weights: folder {path} holds none of {', '.join(WEIGHT_FILES)}; "
                          "put the state dict there or give the file itself")
    if not path.is_file():
        raise ConfigError(f"model.weights: file not found: {path} (synthmix never downloads weights: "
                          f"save the state dict of timm.create_model({arch.split('.')[0]!r}, pretrained=True) "
                          "there on a machine with network, or use weights: hub-cache when the Hugging "
                          "Face cache already holds it)")
    return path


def _from_hub_cache(arch: str) -> Path:
    cfg = _pretrained_cfg(arch)
    tried = []
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else list(WEIGHT_FILES[:3])
        for name in names:
            hit = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
            tried.append(f"hf://{cfg.hf_hub_id}/{name}")
    if cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if cached.is_file():
            return cached
        tried.append(str(cached))
    from huggingface_hub import constants

    raise ConfigError(f"model.weights: hub-cache: no cached weights for timm {arch!r} (looked for "
                      f"{', '.join(tried) or 'nothing: timm names no source'} in {constants.HF_HUB_CACHE}); "
                      "synthmix never downloads: run `hf download "
                      f"{cfg.hf_hub_id or '<repo>'}` on a machine with network and copy the cache, "
                      "or pass weights: /path/to/model.safetensors")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (safetensors or torch, weights only), wrapper prefixes removed."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or pickled code (refused by weights_only)
        raise ConfigError(f"model.weights: cannot load {path}: {err}") from None
    if isinstance(obj, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"model.weights: {path} does not hold a state dict (name -> tensor)")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            k = k.removeprefix(prefix)
        out[k] = v
    if out and all(k.startswith(("backbone.net.", "head.")) for k in out):  # a synthmix TimmBackbone
        out = {k.removeprefix("backbone.net."): v for k, v in out.items() if k.startswith("backbone.net.")}
    return out


@contextmanager
def _capture_timm_log() -> Iterator[list[str]]:
    """Messages timm's pretrained loader logs (it reports missing/unexpected keys only there)."""
    records: list[str] = []

    class _H(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("timm.models._builder")
    handler, level = _H(logging.INFO), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


class TimmBackbone(nn.Module):
    """A timm model without classifier: images [N,3,H,W] -> pooled features [N, D].

    Between timm's ``forward_features`` and ``forward_head`` the last feature map passes through
    ``cam`` (an identity) as [N, C, h, w], also for ViT-style token outputs (patch tokens laid
    out on their grid) and channels-last outputs: Grad-CAM hooks it.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.cam = nn.Identity()
        self.prefix = int(getattr(net, "num_prefix_tokens", 0) or 0)
        self.nhwc = getattr(net, "output_fmt", "NCHW") == "NHWC"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.forward_features(x)
        if f.ndim == 3:  # tokens [N, prefix + h*w, D]
            n, length, d = f.shape
            side = math.isqrt(length - self.prefix)
            if side * side == length - self.prefix:
                grid = f[:, self.prefix:].transpose(1, 2).reshape(n, d, side, side)
                grid = self.cam(grid)
                f = torch.cat([f[:, :self.prefix], grid.flatten(2).transpose(1, 2)], dim=1)
        elif f.ndim == 4 and self.nhwc:
            f = self.cam(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        elif f.ndim == 4:
            f = self.cam(f)
        return self.net.forward_head(f, pre_logits=True)


def create_timm(arch: str, num_classes: int, input_size: int | None = None,
                weights: str | Path | None = None, dropout: float = 0.0, hidden: int | None = None,
                drop_path_rate: float | None = None, **timm_kwargs: Any) -> Classifier:
    """``timm.create_model(arch)`` without its classifier, under a synthmix head.

    ``input_size``: the square input side; passed as ``img_size`` to architectures with a fixed
    input size (ViT, Swin, ...; timm resizes pretrained position embeddings), ignored by CNNs.
    ``weights``: see the module docstring. ``dropout`` / ``hidden``: the synthmix head.
    ``drop_path_rate`` and ``timm_kwargs`` go to ``timm.create_model``.
    """
    timm = _timm()
    pcfg = _pretrained_cfg(arch)
    kwargs: dict[str, Any] = dict(timm_kwargs)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    if input_size is not None and pcfg.fixed_input_size and int(pcfg.input_size[-1]) != int(input_size):
        kwargs["img_size"] = int(input_size)
    pretrained, overlay = False, None
    path = None
    if weights is not None:
        path = resolve_weights(arch, weights)
        overlay = {"state_dict": load_state_dict_file(path), "source": "", "hf_hub_id": None, "url": None,
                   "file": None}
        pretrained = True
    try:
        with _capture_timm_log() as log:
            net = timm.create_model(arch, pretrained=pretrained, num_classes=0,
                                    pretrained_cfg_overlay=overlay, **kwargs)
    except TypeError as err:  # an argument this architecture does not take
        raise ConfigError(f"model.model_kwargs: timm {arch!r}: {err}") from None
    except (RuntimeError, KeyError, ValueError) as err:
        if path is None:
            raise ConfigError(f"model: timm could not build {arch!r}: {err}") from None
        raise ConfigError(f"model.weights: {path} does not fit timm {arch!r}: {str(err)[:400]}") from None
    bad = [m for m in log if m.startswith(("Missing keys", "Unexpected keys"))]
    if bad:
        raise ConfigError(f"model.weights: {path} does not fit timm {arch!r}: {bad[0][:400]}")
    for attr in ("pretrained_cfg", "default_cfg"):  # do not keep a second copy of the weights
        if isinstance(getattr(net, attr, None), dict):
            getattr(net, attr).pop("state_dict", None)
    backbone = TimmBackbone(net)
    dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    return Classifier(backbone, dim, num_classes, head_dropout=dropout, hidden=hidden, cam_layer=backbone.cam)
