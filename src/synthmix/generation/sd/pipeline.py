"""Loading any SD-family pipeline (SD 1.x/2.x, SDXL, SD3, Flux, ...) offline, and its speed settings.

Everything goes through diffusers' ``AutoPipelineForText2Image`` / ``AutoPipelineForImage2Image``:
no model class is hard-coded, so whatever the model folder's ``model_index.json`` names is
used. synthmix never downloads: a hub id must already be in the local Hugging Face cache
(``huggingface-cli download <id>``), a local folder is used as it is.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

from synthmix.core.errors import ConfigError

log = logging.getLogger(__name__)

# Scheduler names -> (diffusers class, extra config). Flow-matching models (SD3, Flux) keep their own.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
}


def resolve_model(model: str, revision: str | None = None) -> tuple[Path, str | None]:
    """The local folder of ``model`` (a folder, or a hub id already in the HF cache) and its revision.

    Returns ``(folder, revision)``; for a cached hub id the revision is the snapshot's commit hash.
    Raises :class:`ConfigError` naming the model when it is neither a folder nor cached.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError(f"generator.model: {path} is a folder but has no model_index.json "
                              "(expected a diffusers pipeline folder, as written by save_pretrained)")
        return path.resolve(), revision
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ConfigError(f"generator.model: {model!r} is neither a diffusers model folder nor a hub id "
                          "of the form owner/name")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError and friends: not in the cache
        raise ConfigError(
            f"generator.model: {model!r} (revision {revision or 'main'}) is not in the local Hugging Face cache "
            f"and synthmix never downloads. Fetch it first: huggingface-cli download {model}"
            + (f" --revision {revision}" if revision else "") + f" ({type(err).__name__})") from None
    return folder, folder.name


def resolve_dtype(name: str, device: str):
    """torch dtype for ``name``; ``auto`` is bf16 on CUDA (fp16 without bf16 support), fp32 elsewhere."""
    import torch

    if name == "auto":
        if str(device).startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_pipeline(cfg, task: str, device: str):
    """Load ``cfg.model`` as a text2img or img2img pipeline on ``device``, speed settings applied.

    ``cfg``: an :class:`~synthmix.generation.sd.config.SDCommon`; ``task``: "text2img" | "img2img".
    The safety checker is disabled explicitly (black images are caught by the writer instead).
    """
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    folder, _ = resolve_model(cfg.model, cfg.revision)
    auto = {"text2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image}[task]
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    extra: dict[str, Any] = {}
    if "safety_checker" in index:  # only pipelines that have one accept these arguments
        extra = {"safety_checker": None, "requires_safety_checker": False}
    dtype = resolve_dtype(cfg.speed.dtype, device)
    try:
        pipe = auto.from_pretrained(folder, local_files_only=True, dtype=dtype, variant=cfg.variant, **extra)
    except (OSError, ValueError) as err:
        raise ConfigError(f"generator.model: cannot load {cfg.model!r} from {folder} as a {task} pipeline: "
                          f"{err}") from None
    check_loaded_dtype(pipe, dtype, cfg.model)
    return prepare_pipeline(pipe, cfg.speed, device, cfg.scheduler)


def check_loaded_dtype(pipe, dtype, model: str) -> None:
    """ConfigError unless the pipeline's denoiser was loaded in ``dtype``.

    diffusers before 0.40 does not know ``from_pretrained(dtype=...)`` and silently loads float32:
    on a GPU that would be a slower run using twice the memory asked for, so it is refused instead.
    """
    net = denoiser(pipe)
    got = getattr(net, "dtype", None)
    if got is not None and got != dtype:
        import diffusers

        raise ConfigError(f"generator.speed.dtype: {model!r} was loaded as {got}, not the requested {dtype} "
                          f"(diffusers {diffusers.__version__} ignored dtype=; synthmix needs diffusers >= 0.40)")


def denoiser(pipe):
    """The pipeline's denoising network: ``unet`` (SD 1/2/XL) or ``transformer`` (SD3, Flux)."""
    net = getattr(pipe, "unet", None)
    return net if net is not None else getattr(pipe, "transformer", None)


def set_scheduler(pipe, name: str | None) -> None:
    """Replace the pipeline's scheduler by ``name`` (see :data:`SCHEDULERS`), keeping its noise schedule."""
    if name is None:
        return
    if name not in SCHEDULERS:
        raise ConfigError(f"generator.scheduler: unknown scheduler {name!r}; one of {', '.join(SCHEDULERS)}")
    import diffusers

    cls_name, extra = SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)


def check_speed_supported(pipe, speed) -> None:
    """ConfigError naming every ``speed`` flag this pipeline has no way to apply (it would be ignored)."""
    net, vae = denoiser(pipe), getattr(pipe, "vae", None)
    missing = [flag for flag, on, obj, method in (
        ("attention: classic", speed.attention == "classic", net, "set_default_attn_processor"),
        ("fuse_qkv", speed.fuse_qkv, pipe, "fuse_qkv_projections"),
        ("vae_tiling", speed.vae_tiling, vae, "enable_tiling"),
        ("vae_slicing", speed.vae_slicing, vae, "enable_slicing"),
    ) if on and not hasattr(obj, method)]
    if missing:
        raise ConfigError(f"generator.speed: {', '.join(missing)} not supported by {type(pipe).__name__} "
                          "(it would be silently ignored); remove it")


def prepare_pipeline(pipe, speed, device: str, scheduler: str | None = None):
    """Apply device, scheduler and speed flags (:class:`SpeedConfig`) to a loaded pipeline; returns it."""
    import torch

    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None  # flagged images would come back black
    check_speed_supported(pipe, speed)
    set_scheduler(pipe, scheduler)
    pipe.to(device)
    net = denoiser(pipe)
    if speed.attention == "classic" and hasattr(net, "set_default_attn_processor"):
        net.set_default_attn_processor()
    if speed.fuse_qkv and hasattr(pipe, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()
    if speed.channels_last:
        net.to(memory_format=torch.channels_last)
        if getattr(pipe, "vae", None) is not None:
            pipe.vae.to(memory_format=torch.channels_last)
    vae = getattr(pipe, "vae", None)
    if speed.vae_tiling and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if speed.vae_slicing and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if speed.compile:
        net.compile(mode=speed.compile_mode)
    pipe.set_progress_bar_config(disable=True)
    return pipe


_WARNED: set[tuple[str, str]] = set()


def call_kwargs(pipe, quiet: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any]:
    """``kwargs`` the pipeline's ``__call__`` accepts, ``None`` values dropped.

    Keeps the call generic across pipeline classes (e.g. Flux has no ``negative_prompt``);
    a dropped setting is logged once, unless named in ``quiet`` (known to be optional).
    """
    params = inspect.signature(pipe.__call__).parameters
    out = {}
    for k, v in kwargs.items():
        if v is None:
            continue
        if k in params:
            out[k] = v
        elif k not in quiet and (type(pipe).__name__, k) not in _WARNED:
            _WARNED.add((type(pipe).__name__, k))
            log.warning("%s does not take %r; ignored", type(pipe).__name__, k)
    return out


def image_generators(seeds: list[int]):
    """One CPU ``torch.Generator`` per image: noise then does not depend on device, batch size or order."""
    from synthmix.core.seeding import torch_generator

    return [torch_generator(int(s), "cpu") for s in seeds]
