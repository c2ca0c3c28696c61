"""LoRA / DreamBooth adaptation (DataDream, Diff-Mix, DreamBooth-LoRA): low-rank weights on the
UNet's attention projections (optionally the text encoder's), learned from the real train images.

Our own loop, like :mod:`~synthmix.generation.sd.textual_inversion` (whose helpers it reuses):

* LoRA layers are injected with peft (``inject_adapter_in_model``, ``init_lora_weights="gaussian"``
  as in diffusers' DreamBooth-LoRA script, so the adapter starts as the identity); only the
  ``lora_A`` / ``lora_B`` weights of this adapter get gradients, every base weight is frozen;
* one adapter per class (``per_class: true``; DataDream, DreamBooth) or one for all classes
  (``per_class: false``; Diff-Mix), trained on instance prompts ``"a photo of a {token} {name}"``
  where ``{token}`` is the class's identifier text (e.g. ``<apple>``);
* prior preservation (optional): ``prior.num_images`` class images per class are first made by the
  base model from ``prior.template`` and stored; each step adds ``prior.weight`` x their loss;
* step ``k`` draws from ``derive_seed(seed, key, k)`` and the learning rate is a function of ``k``,
  so a run resumed from ``<key>.state.safetensors`` (LoRA weights + Adam moments, atomic) equals an
  uninterrupted one.

Files under ``<out_dir>/lora/``: ``<key>.safetensors`` — the adapter (``unet.*`` / ``text_encoder.*``
LoRA tensors) with metadata ``synthmix`` (JSON: base model id, a hash of the base model's
configuration and a probe of its weights, rank, alpha, target modules, classes and tokens, the
fingerprint of the settings) — and ``prior/<class>/<i>.png``. Loading an adapter checks that
metadata against the pipeline: an adapter for another base model fails before any image is made.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from synthmix.core.config import StrictModel
from synthmix.core.errors import ConfigError, TrainingError
from synthmix.core.hashing import config_hash
from synthmix.core.schedule import lr_schedule
from synthmix.core.seeding import derive_seed, torch_generator

log = logging.getLogger(__name__)

ADAPTER_DIR = "lora"
FORMAT = "synthmix-lora-1"
PROBE_SIZE = 64          # weights of the UNet's conv_in compared between an adapter and its base model
PROBE_RTOL = 1e-2        # loose enough for a bf16/fp16 load of the same weights, not for another model


class PriorConfig(StrictModel):
    """DreamBooth prior preservation: class images made by the base model keep the class prior."""

    enabled: bool = False
    num_images: int = Field(8, ge=1)          # per class
    weight: float = Field(1.0, ge=0.0)        # loss weight of the prior batch
    template: str = "a photo of a {name}"    # class prompt (no token)
    steps: int | None = Field(None, ge=1)     # sampling steps for the class images (default: the generator's)

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        from synthmix.generation.sd.config import template_fields

        if template_fields(v) != {"name"}:
            raise ValueError(f"template {v!r} must contain {{name}} and no other field")
        return v


class LoRAConfig(StrictModel):
    """LoRA / DreamBooth training settings (``recipe:`` fills unset fields, see ``recipes.py``)."""

    recipe: str | None = None
    adapter: str | None = None        # folder of finished adapters (<key>.safetensors) to load instead of training
    rank: int = Field(4, ge=1)
    alpha: float | None = Field(None, gt=0)   # None: = rank (scale 1)
    steps: int = Field(500, ge=0)
    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(1, ge=1)
    resolution: int = Field(512, ge=8)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(1e-2, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    text_encoder: bool = False        # also adapt the text encoder (DataDream)
    unet_modules: list[str] = Field(default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"])
    text_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj"])
    per_class: bool = True            # one adapter per class; false: one adapter for all classes
    templates: list[str] = Field(default_factory=lambda: ["a photo of a {token} {name}"])  # instance prompts
    flip: bool = True
    prior: PriorConfig = Field(default_factory=PriorConfig)
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data):
        from synthmix.generation.sd.recipes import apply_recipe

        return apply_recipe(data, "lora")

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: list[str]) -> list[str]:
        from synthmix.generation.sd.config import check_templates

        return check_templates(v, lambda f: None if "token" in f and f <= {"token", "name"} else
                               f" must contain {{token}} (and may contain {{name}}), got {sorted(f)}")

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"must be a multiple of 8 (got {v})")
        return v

    @property
    def scale_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)


@dataclass
class AdapterResult:
    """One trained (or loaded) adapter: its peft adapter name, file and the losses of the steps run now."""

    key: str
    name: str
    path: Path
    labels: list[str]
    losses: list[float] = field(default_factory=list)
    start_step: int = 0


def adapter_key(label: str | None) -> str:
    """File / adapter key: the class slug for a per-class adapter, ``all`` for a shared one."""
    from synthmix.generation.sd.prompts import placeholder_token

    return "all" if label is None else "c_" + placeholder_token(label).strip("<>")


def adapter_path(out_dir: str | Path, key: str) -> Path:
    return Path(out_dir) / ADAPTER_DIR / f"{key}.safetensors"


# ----------------------------------------------------------------------------- base-model identity

def base_signature(pipe) -> dict[str, Any]:
    """What identifies the base model an adapter belongs to: a hash of the UNet + text-encoder
    configurations and the first :data:`PROBE_SIZE` weights of the UNet's ``conv_in`` (fp32)."""
    unet_cfg = {k: v for k, v in dict(pipe.unet.config).items() if not k.startswith("_")}
    te = pipe.text_encoder.config
    te_cfg = {k: getattr(te, k, None) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                 "num_attention_heads", "max_position_embeddings", "projection_dim")}
    probe = pipe.unet.conv_in.weight.detach().reshape(-1)[:PROBE_SIZE].float().cpu().tolist()
    return {"config_hash": config_hash({"unet": unet_cfg, "text_encoder": te_cfg}, n=16), "probe": probe}


def check_base(meta: dict[str, Any], pipe, path: Path, model: str) -> None:
    """Loud failure if the adapter described by ``meta`` was trained on another base model."""
    import numpy as np

    sig = base_signature(pipe)
    trained_on = meta.get("base_model")
    if meta.get("base_config_hash") != sig["config_hash"]:
        raise ConfigError(f"{path}: LoRA adapter trained for base model {trained_on!r} with another architecture "
                          f"(config hash {meta.get('base_config_hash')} != {sig['config_hash']} of {model!r}); "
                          "use the adapter's base model or retrain it")
    a, b = np.asarray(meta.get("base_probe") or [], np.float64), np.asarray(sig["probe"], np.float64)
    if a.shape != b.shape or not np.allclose(a, b, rtol=PROBE_RTOL, atol=1e-4):
        raise ConfigError(f"{path}: LoRA adapter trained for base model {trained_on!r}, whose weights differ from "
                          f"those of {model!r} (same architecture, other checkpoint); use that base model or retrain")


# ----------------------------------------------------------------------------- adapters in a pipeline

def _peft_config(cfg_like: dict[str, Any], modules: list[str]):
    from peft import LoraConfig

    return LoraConfig(r=int(cfg_like["rank"]), lora_alpha=float(cfg_like["alpha"]), target_modules=list(modules),
                      init_lora_weights="gaussian", lora_dropout=0.0)


def _tuner_layers(model):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def activate(pipe, name: str | None) -> None:
    """Make adapter ``name`` the only active one in the UNet and text encoder; ``None``: the base model."""
    for model in (pipe.unet, pipe.text_encoder):
        for layer in _tuner_layers(model):
            if name is None or name not in layer.lora_A:
                layer.enable_adapters(False)
            else:
                layer.enable_adapters(True)
                layer.set_adapter(name)


def lora_parameters(model, name: str) -> dict[str, Any]:
    """The LoRA weights of adapter ``name`` in ``model``, by parameter name (sorted)."""
    suffixes = (f"lora_A.{name}.weight", f"lora_B.{name}.weight")
    return {n: p for n, p in sorted(model.named_parameters()) if n.endswith(suffixes)}


def _inject(pipe, name: str, spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """Add adapter ``name`` (``spec``: rank, alpha, unet_modules, text_modules, text_encoder) to the
    pipeline; its gaussian init draws from ``seed``. Returns {"unet.<p>": param, "text_encoder.<p>": ...}."""
    import torch
    from peft import inject_adapter_in_model

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # several adapters in one model (one per class) is what we want here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        torch.manual_seed(seed)
        inject_adapter_in_model(_peft_config(spec, spec["unet_modules"]), pipe.unet, adapter_name=name)
        if spec["text_encoder"]:
            inject_adapter_in_model(_peft_config(spec, spec["text_modules"]), pipe.text_encoder, adapter_name=name)
    params = {f"unet.{n}": p for n, p in lora_parameters(pipe.unet, name).items()}
    if spec["text_encoder"]:
        params.update({f"text_encoder.{n}": p for n, p in lora_parameters(pipe.text_encoder, name).items()})
    if not params:
        raise ConfigError(f"generator.lora: no module of this model matches unet_modules {spec['unet_modules']}"
                          + (f" / text_modules {spec['text_modules']}" if spec["text_encoder"] else ""))
    # peft returns adapters in the base weights' dtype: train (and keep) LoRA weights in fp32
    for p in params.values():
        p.data = p.data.float()
    return params


def read_adapter_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    if not path.is_file():
        raise ConfigError(f"generator.lora.adapter: {path} not found (a missing adapter would silently give the "
                          "base model's images)")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("synthmix")
    except Exception as err:  # safetensors raises its own error types for a damaged file
        raise ConfigError(f"{path}: not a readable safetensors file ({err})") from None
    if not raw:
        raise ConfigError(f"{path}: not a synthmix LoRA adapter (no 'synthmix' metadata)")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: adapter format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_adapter(pipe, path: Path, model: str, labels: Sequence[str], tokens: dict[str, str],
                 fp: str | None = None) -> AdapterResult:
    """Install a finished adapter file into ``pipe`` after checking it (base model, classes, tokens,
    and the settings fingerprint when ``fp`` is given). Any mismatch is a :class:`ConfigError`."""
    from safetensors.torch import load_file

    meta = read_adapter_meta(path)
    check_base(meta, pipe, path, model)
    missing = [c for c in labels if c not in meta.get("labels", [])]
    if missing:
        raise ConfigError(f"{path}: adapter trained for classes {meta.get('labels')}, not for {missing}")
    wrong = {c: (meta["tokens"].get(c), tokens[c]) for c in labels if meta["tokens"].get(c) != tokens[c]}
    if wrong:
        raise ConfigError(f"{path}: adapter tokens differ from the prompts' tokens {wrong} (adapter, config)")
    if fp is not None and meta.get("fingerprint") != fp:
        raise ConfigError(f"{path}: LoRA adapter made with other settings, images or model; use a new out_dir "
                          "or delete this file to retrain")
    name = meta["name"]
    params = _inject(pipe, name, meta, seed=0)
    tensors = load_file(str(path))
    if set(tensors) != set(params):
        extra, absent = sorted(set(tensors) - set(params))[:3], sorted(set(params) - set(tensors))[:3]
        raise ConfigError(f"{path}: adapter tensors do not fit this model (unexpected {extra}, missing {absent})")
    import torch

    with torch.no_grad():
        for k, p in params.items():
            if tensors[k].shape != p.shape:
                raise ConfigError(f"{path}: {k} has shape {tuple(tensors[k].shape)}, the model needs {tuple(p.shape)}")
            p.copy_(tensors[k])
    return AdapterResult(meta["key"], name, path, list(meta["labels"]), [], int(meta.get("step", 0)))


# ----------------------------------------------------------------------------- training

def fingerprint(model: str, revision: str | None, cfg: LoRAConfig, key: str, labels: Sequence[str],
                tokens: dict[str, str], names: dict[str, str], image_ids: Sequence[str]) -> str:
    """What an adapter depends on; a checkpoint or file with another fingerprint is not reused."""
    from synthmix.generation.sd.config import content_dump

    data = content_dump(cfg, exclude={"checkpoint_every", "recipe", "adapter"})
    return config_hash({"model": model, "revision": revision, "lora": data, "key": key, "labels": sorted(labels),
                        "tokens": tokens, "names": names, "images": sorted(image_ids)}, n=16)


def lr_factor(cfg: LoRAConfig, step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warmup, then constant or cosine to 0 (stateless: resume-safe)."""
    return lr_schedule(step, total=cfg.steps, warmup=cfg.warmup_steps,
                       kind="cosine" if cfg.lr_schedule == "cosine" else "none")


def make_prior_images(pipe, cfg: LoRAConfig, labels: Sequence[str], names: dict[str, str], out_dir: Path,
                      steps: int, guidance: float, size: int) -> dict[str, list[Any]]:
    """Class images of the BASE model (no adapter active) for prior preservation, made once and stored
    as ``<out_dir>/prior/<key>/<i>.png`` (atomic); existing files are reused. Returns label -> PIL images."""
    import torch
    from diffusers import AutoPipelineForText2Image
    from PIL import Image

    from synthmix.core.io import atomic_path
    from synthmix.generation.sd.pipeline import image_generators
    from synthmix.generation.writer import to_uint8

    pr = cfg.prior
    t2i = None
    out: dict[str, list[Any]] = {}
    for label in labels:
        folder = out_dir / "prior" / adapter_key(label)
        paths = [folder / f"{i}.png" for i in range(pr.num_images)]
        todo = [i for i, p in enumerate(paths) if not p.is_file()]
        if todo:
            if t2i is None:
                t2i = AutoPipelineForText2Image.from_pipe(pipe)
                t2i.set_progress_bar_config(disable=True)
            activate(pipe, None)
            prompt = pr.template.format(name=names[label])
            for i in todo:
                with torch.inference_mode():
                    img = t2i(prompt=prompt, num_inference_steps=pr.steps or steps, guidance_scale=guidance,
                              height=size, width=size, output_type="np",
                              generator=image_generators([derive_seed(cfg.seed, "prior", label, i)])).images[0]
                folder.mkdir(parents=True, exist_ok=True)
                with atomic_path(paths[i]) as tmp:
                    Image.fromarray(to_uint8(img)).save(tmp, format="PNG")
        out[label] = [Image.open(p).convert("RGB") for p in paths]
    return out


def train_adapter(pipe, key: str, images: dict[str, list[Any]], tokens: dict[str, str], names: dict[str, str],
                  cfg: LoRAConfig, out_dir: str | Path, device: str, fp: str, model: str,
                  prior_images: dict[str, list[Any]] | None = None, recipe: dict[str, Any] | None = None
                  ) -> AdapterResult:
    """Learn (or load, or resume) the adapter ``key`` from ``images`` (label -> PIL RGB images).

    Writes ``<out_dir>/<key>.safetensors`` when done; checkpoints every ``cfg.checkpoint_every``
    steps. On return the adapter is installed (and left inactive: call :func:`activate`).
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from synthmix.generation.sd.textual_inversion import (
        check_supported,
        encode_images,
        load_state,
        save_state,
    )

    try:
        check_supported(pipe)
    except ConfigError:
        missing = [n for n in ("unet", "vae", "text_encoder", "tokenizer") if getattr(pipe, n, None) is None]
        raise ConfigError(f"generator.lora: {type(pipe).__name__} is not supported: LoRA adaptation here needs a "
                          "UNet and exactly one CLIP text encoder, as in SD 1.x / 2.x"
                          + (f" (missing {', '.join(missing)})" if missing else " (this model has two text encoders)")
                          ) from None
    out_dir = Path(out_dir)
    final = out_dir / f"{key}.safetensors"
    state_path = out_dir / f"{key}.state.safetensors"
    labels = sorted(images)
    if final.exists():
        return load_adapter(pipe, final, model, labels, tokens, fp)

    name = key
    spec = {"rank": cfg.rank, "alpha": cfg.scale_alpha, "unet_modules": cfg.unet_modules,
            "text_modules": cfg.text_modules, "text_encoder": cfg.text_encoder}
    params = _inject(pipe, name, spec, seed=derive_seed(cfg.seed, key, "init"))
    for model_ in (pipe.unet, pipe.text_encoder, pipe.vae):
        for p in model_.parameters():
            p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    activate(pipe, name)
    order = sorted(params)
    opt = torch.optim.AdamW([params[k] for k in order], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    start = 0
    if state_path.exists():
        start, tensors = load_state(state_path, fp)
        with torch.no_grad():
            for k in order:
                params[k].copy_(tensors[f"w.{k}"])
                if f"m.{k}" in tensors:
                    opt.state[params[k]] = {"step": torch.tensor(float(start)),
                                            "exp_avg": tensors[f"m.{k}"].to(params[k].device),
                                            "exp_avg_sq": tensors[f"v.{k}"].to(params[k].device)}
        log.info("%s: resuming LoRA training at step %d", key, start)

    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    n_train = noise_sched.config.num_train_timesteps
    prediction = noise_sched.config.prediction_type
    scale = pipe.vae.config.scaling_factor
    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0
    tok, te, unet = pipe.tokenizer, pipe.text_encoder, pipe.unet

    def ids_of(prompts):
        return tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids.to(device)

    # instance latents of every class of this adapter, with the class index of each latent
    means, stds, owner = [], [], []
    for li, label in enumerate(labels):
        m, s = encode_images(pipe, images[label], cfg.resolution, cfg.flip, device)
        means.append(m)
        stds.append(s)
        owner += [li] * len(m)
    lat_mean, lat_std = torch.cat(means), torch.cat(stds)
    owner_t = torch.tensor(owner)
    inst_ids = torch.stack([ids_of([t.format(token=tokens[c], name=names[c]) for t in cfg.templates]) for c in labels])
    prior = cfg.prior.enabled and bool(prior_images)
    if prior:
        pm, ps, powner = [], [], []
        for li, label in enumerate(labels):
            m, s = encode_images(pipe, prior_images[label], cfg.resolution, False, device)
            pm.append(m)
            ps.append(s)
            powner += [li] * len(m)
        prior_mean, prior_std, prior_owner = torch.cat(pm), torch.cat(ps), torch.tensor(powner)
        prior_ids = ids_of([cfg.prior.template.format(name=names[c]) for c in labels])

    def diffusion_loss(g, mean, std, hidden_ids):
        bs = cfg.batch_size
        eps_lat = torch.randn(mean.shape, generator=g)
        latents = ((mean + std * eps_lat.to(device)) - shift) * scale
        noise = torch.randn(latents.shape, generator=g).to(device)
        t = torch.randint(0, n_train, (bs,), generator=g).to(device)
        noisy = noise_sched.add_noise(latents, noise, t)
        hidden = te(hidden_ids)[0]
        pred = unet(noisy.to(unet.dtype), t, hidden.to(unet.dtype)).sample
        target = noise if prediction == "epsilon" else noise_sched.get_velocity(latents, noise, t)
        return F.mse_loss(pred.float(), target.float())

    losses = []
    for step in range(start, cfg.steps):
        g = torch_generator(derive_seed(cfg.seed, key, step))
        idx = torch.randint(len(lat_mean), (cfg.batch_size,), generator=g)
        which = torch.randint(len(cfg.templates), (cfg.batch_size,), generator=g)
        loss = diffusion_loss(g, lat_mean[idx], lat_std[idx], inst_ids[owner_t[idx], which])
        if prior:
            pidx = torch.randint(len(prior_mean), (cfg.batch_size,), generator=g)
            loss = loss + cfg.prior.weight * diffusion_loss(g, prior_mean[pidx], prior_std[pidx],
                                                            prior_ids[prior_owner[pidx]])
        if not torch.isfinite(loss):
            raise TrainingError(f"LoRA {key}: loss is {loss.item()} at step {step} "
                                "(try a lower learning_rate or dtype float32)")
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate * lr_factor(cfg, step)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([params[k] for k in order], cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            tensors = {f"w.{k}": params[k] for k in order}
            for k in order:
                st = opt.state.get(params[k])
                if st:
                    tensors[f"m.{k}"], tensors[f"v.{k}"] = st["exp_avg"], st["exp_avg_sq"]
            save_state(state_path, tensors, step + 1, fp)
    for p in params.values():
        p.requires_grad_(False)
    meta = {"format": FORMAT, "key": key, "name": name, "base_model": model, **_base_meta(pipe), **spec,
            "labels": labels, "tokens": {c: tokens[c] for c in labels}, "fingerprint": fp, "step": cfg.steps,
            "recipe": recipe}
    save_adapter(final, params, meta)
    state_path.unlink(missing_ok=True)
    return AdapterResult(key, name, final, labels, losses, start)


def _base_meta(pipe) -> dict[str, Any]:
    sig = base_signature(pipe)
    return {"base_config_hash": sig["config_hash"], "base_probe": sig["probe"]}


def save_adapter(path: Path, params: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write an adapter file atomically: LoRA tensors + ``synthmix`` JSON metadata."""
    from synthmix.generation.sd.textual_inversion import save_state

    save_state(path, params, int(meta.get("step", 0)), str(meta.get("fingerprint")), synthmix=json.dumps(meta))
