"""Feature spaces for the diagnostics. Every number carries the name of the space it was
computed in: distances, FID and KID mean different things in different spaces.

- ``classifier`` (default, offline): the penultimate features (``forward_features``) of a
  real-trained classifier run of the study. Its FID is NOT comparable to the usual Inception
  FID, nor to the FID in another classifier's features.
- ``inception``: torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's FID Inception v3,
  2048-d pool features, images resized to 299 inside) with weights from a LOCAL file
  (``weights: path/to/pt_inception-2015-12-05-6726825d.pth``); needs ``torch-fidelity``.
- ``hf``: a Hugging Face vision model (CLIP / SigLIP image tower, DINOv2, ...) from a LOCAL
  ``save_pretrained`` folder (``weights``) or a ``model_id`` already in the hub cache; loaded with
  ``local_files_only=True``: synthmix never downloads weights. CLIP-like models give the image
  embedding (``get_image_features``), others the pooled / CLS output.

``feature_space(cfg) -> FeatureSpace``: ``.name``, ``.image_size`` (the side images are loaded at;
None = the classifier's input size) and ``.encode(x_uint8 [N,3,S,S]) -> float32 [N, D]``; for a
CLIP-like ``hf`` model (``get_text_features`` and a tokenizer in the folder) also
``.encode_text(list of T strings) -> float32 [T, D]`` in the same space as ``encode`` (CLIP score).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from synthmix.core.config import StrictModel

NOTE = ("FID/KID and distances are only comparable within one feature space: an FID in a "
        "classifier's features is not an Inception FID and is not comparable across classifiers.")


class FeatureSpaceConfig(StrictModel):
    """Which features the distance-based diagnostics use."""

    kind: Literal["classifier", "inception", "hf"] = "classifier"
    weights: Path | None = Field(None, description="inception: local .pth file; hf: local save_pretrained folder")
    model_id: str | None = Field(None, description="hf: a repo id already in the Hugging Face cache")
    image_size: int | None = Field(None, ge=8, description="side images are loaded at (default: "
                                   "classifier input size; 299 inception; the processor's size for hf)")
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"


@dataclass
class FeatureSpace:
    name: str
    image_size: int | None
    encode: Callable | None  # None: the classifier's own features (computed with its logits)
    encode_text: Callable | None = None  # CLIP-like models only


def feature_space(cfg: FeatureSpaceConfig) -> FeatureSpace:
    """The configured feature space; missing weights -> ConfigError naming what to provide."""
    if cfg.kind == "classifier":
        return FeatureSpace("classifier", None, None)
    if cfg.kind == "inception":
        return _inception(cfg)
    return _hf(cfg)


def _inception(cfg: FeatureSpaceConfig) -> FeatureSpace:
    from synthmix.core.errors import ConfigError

    if cfg.weights is None or not Path(cfg.weights).is_file():
        raise ConfigError(f"features.weights: {cfg.weights!s}: the Inception feature space needs a local "
                          "torch-fidelity weights file (pt_inception-2015-12-05-6726825d.pth); synthmix "
                          "never downloads weights")
    try:
        import torch_fidelity  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("features.kind: inception needs the torch-fidelity package "
                          "(pip install 'synthmix[diagnostics]')") from None
    import torch
    from torchmetrics.image.fid import NoTrainInceptionV3

    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                             feature_extractor_weights_path=str(cfg.weights)).to(cfg.device).eval()

    def encode(x_uint8):
        out = []
        with torch.no_grad():
            for i in range(0, len(x_uint8), cfg.batch_size):
                out.append(net(x_uint8[i:i + cfg.batch_size].to(cfg.device)).reshape(-1, 2048).float().cpu())
        return torch.cat(out).numpy() if out else torch.zeros(0, 2048).numpy()

    return FeatureSpace("inception-v3 (torch-fidelity weights, 2048-d pool)", cfg.image_size or 299, encode)


def _hf(cfg: FeatureSpaceConfig) -> FeatureSpace:
    from synthmix.core.errors import ConfigError

    source = cfg.weights or cfg.model_id
    if source is None:
        raise ConfigError("features: kind 'hf' needs weights (a local save_pretrained folder) or model_id "
                          "(a repo id already in the Hugging Face cache)")
    if cfg.weights is not None and not Path(cfg.weights).is_dir():
        raise ConfigError(f"features.weights: {cfg.weights}: not a folder (give a local save_pretrained "
                          "folder of a CLIP / DINOv2 model; synthmix never downloads weights)")
    import torch
    from transformers import AutoImageProcessor, AutoModel

    try:
        model = AutoModel.from_pretrained(str(source), local_files_only=True).to(cfg.device).eval()
        proc = AutoImageProcessor.from_pretrained(str(source), local_files_only=True)
    except OSError as err:
        raise ConfigError(f"features: {source}: cannot load it offline ({err}). Give a local "
                          "save_pretrained folder as features.weights, or download the model into the "
                          "Hugging Face cache yourself first; synthmix never downloads weights") from None

    def encode(x_uint8):
        out = []
        with torch.no_grad():
            for i in range(0, len(x_uint8), cfg.batch_size):
                imgs = list(x_uint8[i:i + cfg.batch_size].permute(0, 2, 3, 1).numpy())
                px = proc(images=imgs, return_tensors="pt")["pixel_values"].to(cfg.device)
                if hasattr(model, "get_image_features"):
                    f = model.get_image_features(pixel_values=px)
                    f = getattr(f, "pooler_output", f)
                else:
                    o = model(pixel_values=px)
                    f = o.pooler_output if getattr(o, "pooler_output", None) is not None \
                        else o.last_hidden_state[:, 0]
                out.append(f.reshape(len(f), -1).float().cpu())
        return torch.cat(out).numpy() if out else torch.zeros(0, 1).numpy()

    encode_text = None
    if hasattr(model, "get_text_features"):
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        except (OSError, ValueError):
            tok = None  # image features still work; the CLIP score is left out
        if tok is not None:
            def encode_text(texts):
                with torch.no_grad():
                    enc = tok(list(texts), padding=True, truncation=True, return_tensors="pt").to(cfg.device)
                    f = model.get_text_features(**enc)
                    f = getattr(f, "pooler_output", f)
                return f.float().cpu().numpy()

    name = f"{type(model).__name__} ({Path(str(source)).name})"
    return FeatureSpace(name, cfg.image_size or _proc_size(proc), encode, encode_text)


def _proc_size(proc) -> int:
    size = getattr(proc, "crop_size", None) or getattr(proc, "size", None) or {}
    if isinstance(size, (int, float)):
        return int(size)
    get = size.get if hasattr(size, "get") else (lambda k: getattr(size, k, None))
    return int(get("height") or get("shortest_edge") or 224)  # a dict or transformers' SizeDict
