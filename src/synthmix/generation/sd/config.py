"""Settings of the Stable Diffusion backends (validated; YAML is only their serialised form).

``generator:`` section of a ``synthmix generate`` config, e.g.::

    generator:
      type: text2img            # or dafusion
      model: stable-diffusion-v1-5/stable-diffusion-v1-5   # hub id (pre-downloaded) or a local folder
      steps: 30
      guidance: 7.5
      images_per_class: 100
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator, model_validator

from synthmix.core.config import StrictModel

DEFAULT_TEMPLATES = (
    "a photo of a {name}",
    "a close-up photo of a {name}",
    "a photo of a {name} on a table",
    "a bright photo of a {name}",
    "a cropped photo of a {name}",
)
DEFAULT_NEGATIVE = "blurry, low quality, drawing, cartoon, text, watermark"


# Fields added after images were first made with these configs: left out of content hashes while
# unset, so the ids (and files) of images made before they existed stay valid.
_ADDED_FIELDS = ("contexts", "captions", "load_from", "recipe")
_ADDED_DEFAULTS = {"vectors": 1}  # added fields left out while at these defaults


def content_dump(model, exclude=None) -> dict:
    """``model.model_dump(mode="json", exclude=exclude)`` without unset :data:`_ADDED_FIELDS` (any depth)."""
    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if not (k in _ADDED_FIELDS and v in (None, {}, []))
                    and not (k in _ADDED_DEFAULTS and v == _ADDED_DEFAULTS[k])}
        return d

    return strip(model.model_dump(mode="json", exclude=exclude))


def template_fields(template: str) -> set[str]:
    """Names of the ``{...}`` fields in a template."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def check_templates(templates: list[str], problem: Callable[[set[str]], str | None]) -> list[str]:
    """At least one template, each a valid format string whose fields ``problem(fields)`` accepts
    (it returns None, or what is wrong, raised as ``template '...'<problem>``)."""
    if not templates:
        raise ValueError("needs at least one template")
    for t in templates:
        try:
            fields = template_fields(t)
        except ValueError as err:
            raise ValueError(f"template {t!r} is not a valid format string: {err}") from None
        msg = problem(fields)
        if msg:
            raise ValueError(f"template {t!r}{msg}")
    return templates


def _check_prompt_templates(templates: list[str]) -> list[str]:
    """Generation prompt templates: each names the class by ``{name}`` and/or ``{token}``; other
    fields are context lists (``prompts.contexts``) or ``{caption}``, checked by :class:`PromptConfig`."""
    def problem(fields: set[str]) -> str | None:
        if not fields & {"name", "token"}:
            return (f" must contain {{name}} (the class words) or {{token}} (the learned class token); "
                    f"it has {sorted(fields)}")
        bad = sorted(f for f in fields if not f.isidentifier())
        return f": fields must be plain names, got {bad}" if bad else None

    return check_templates(templates, problem)


def _check_templates(templates: list[str], field: str = "name") -> list[str]:
    return check_templates(templates, lambda fields: None if fields == {field} else
                           f" must contain {{{field}}} and no other field (has {sorted(fields)})")


def check_strengths(v: list[float]) -> list[float]:
    """img2img strengths: at least one, each in (0, 1], no repeats."""
    if not v:
        raise ValueError("needs at least one strength")
    bad = [s for s in v if not 0.0 < s <= 1.0]
    if bad:
        raise ValueError(f"each strength must be in (0, 1], got {bad}")
    if len(set(v)) != len(v):
        raise ValueError(f"strengths repeat: {v}")
    return v


class SpeedConfig(StrictModel):
    """Execution settings: they change speed, not which image is made (ids and seeds ignore them)."""

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: bf16 on CUDA (fp16 if no bf16), fp32 on CPU
    channels_last: bool = True
    # sdpa: torch scaled_dot_product_attention (diffusers' default on torch 2);
    # classic: diffusers' AttnProcessor (matmul + softmax), for comparisons and debugging
    attention: Literal["sdpa", "classic"] = "sdpa"
    compile: bool = False            # torch.compile the UNet / transformer (first batch is slow)
    compile_mode: str = "max-autotune-no-cudagraphs"
    vae_tiling: bool = False         # decode big images tile by tile (less memory)
    vae_slicing: bool = False        # decode a batch one image at a time (less memory)
    fuse_qkv: bool = False           # fuse attention q/k/v projections (diffusers fuse_qkv_projections)

    @model_validator(mode="after")
    def _fused_needs_sdpa(self) -> SpeedConfig:
        # diffusers' fuse_qkv_projections() installs its own FusedAttnProcessor2_0 (SDPA): it would
        # silently replace the classic processor, and diffusers has no classic fused processor.
        if self.fuse_qkv and self.attention == "classic":
            raise ValueError("attention: classic cannot be combined with fuse_qkv: true (diffusers' fused "
                             "q/k/v projections always use scaled_dot_product_attention); "
                             "use attention: sdpa or fuse_qkv: false")
        return self


class CaptionConfig(StrictModel):
    """A LOCAL image-captioning model (transformers, BLIP-like) whose captions of the real train
    images fill the ``{caption}`` field of the prompt templates (synthmix never downloads it)."""

    model: str                          # folder with config.json + weights (save_pretrained)
    per_class: int = Field(20, ge=1)    # caption at most this many real train images per class
    max_new_tokens: int = Field(20, ge=1)
    prefix: str | None = None           # conditional captioning text, e.g. "a photo of"
    device: str = "auto"


# Fields a template may use besides its context lists: the class words and the learned token.
CLASS_FIELDS = ("name", "token")


class PromptConfig(StrictModel):
    """Class prompts: ``templates`` cycle over the images of a class; ``names`` replace vague class names.

    Prompt diversity (ALIA / "Diversify, Don't Fine-Tune"): a template may use any field of
    ``contexts`` (e.g. ``"a photo of a {name} {background}, {weather}"``); each image draws one
    value per field, deterministically from (seed, class, image index, field). ``{caption}`` draws
    from captions of the class's real train images made by a local ``captions`` model.
    """

    # contexts / captions come first: the templates' validator checks its fields against them
    contexts: dict[str, list[str]] = Field(default_factory=dict)  # field -> values (weather, background, ...)
    captions: CaptionConfig | None = None
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    names: dict[str, str] = Field(default_factory=dict)  # label -> words used in the prompt
    negative_prompt: str = DEFAULT_NEGATIVE

    @field_validator("contexts")
    @classmethod
    def _contexts(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, values in v.items():
            if key in (*CLASS_FIELDS, "caption") or not key.isidentifier():
                raise ValueError(f"{key!r} is not a usable field name (reserved or not an identifier)")
            if not values:
                raise ValueError(f"{key}: needs at least one value")
        return v

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: list[str], info) -> list[str]:
        _check_prompt_templates(v)
        contexts = info.data.get("contexts") or {}
        known = {*CLASS_FIELDS, *contexts} | ({"caption"} if info.data.get("captions") else set())
        for t in v:
            unknown = sorted(template_fields(t) - known)
            if unknown:
                raise ValueError(f"template {t!r} uses {unknown}, which are neither {{name}}/{{token}} nor "
                                 f"keys of prompts.contexts ({sorted(contexts)})"
                                 + ("" if info.data.get("captions") else " ({caption} needs prompts.captions)"))
        return v

    def uses_token(self) -> bool:
        return any("token" in template_fields(t) for t in self.templates)


class SDCommon(StrictModel):
    """What both Stable Diffusion backends share: the model, sampling settings and speed flags."""

    model: str                         # hub id (already in the local HF cache) or a local model folder
    revision: str | None = None        # hub branch / tag / commit
    variant: str | None = None         # weight file variant, e.g. "fp16"
    device: str = "auto"
    scheduler: str | None = None       # ddim, ddpm, pndm, lms, euler, euler_a, heun, dpm++, dpm++_karras, unipc, ...
    steps: int = Field(30, ge=1)
    guidance: float = Field(7.5, ge=0.0)
    width: int | None = Field(None, ge=8)    # None: the model's default size
    height: int | None = Field(None, ge=8)
    seed: int = 0
    classes: list[str] | None = None   # subset of the manifest's classes (default: all)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    speed: SpeedConfig = Field(default_factory=SpeedConfig)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise ValueError(f"must be a multiple of 8 (got {v})")
        return v


class Text2ImgConfig(SDCommon):
    """``type: text2img``: N images per class from class prompts."""

    images_per_class: int = Field(10, ge=1)
    role: Literal["in_dist", "near_ood", "unsorted"] = "in_dist"

    @model_validator(mode="after")
    def _no_token(self) -> Text2ImgConfig:
        _refuse_token(self.prompts, "text2img")
        return self


def _refuse_token(prompts: PromptConfig, kind: str) -> None:
    if prompts.uses_token():
        raise ValueError(f"prompts.templates: {{token}} is only for adapted generators (lora, diffmix); "
                         f"{kind} has no learned token field (dafusion puts its token in {{name}})")


class TextualInversionConfig(StrictModel):
    """DA-Fusion step (a): one new token embedding per class, learned from its real train images.

    ``recipe: dafusion`` fills unset fields from :mod:`synthmix.generation.sd.recipes`;
    ``load_from``: a folder of finished token files (``<class>.safetensors``, ``{token: [1, D]}``,
    e.g. tokens trained elsewhere) used instead of training; a missing or mismatched file fails
    before any image is made.
    """

    recipe: str | None = None
    load_from: str | None = None
    enabled: bool = True
    # vectors per class token: <apple>, <apple>_1, ...; "pieces": one per word piece of the
    # initializer (DA-Fusion); prompts keep "<apple>", the pipeline expands it to all of them
    vectors: int | Literal["pieces"] = 1

    @field_validator("vectors")
    @classmethod
    def _vectors(cls, v):
        if v != "pieces" and v < 1:
            raise ValueError(f"must be >= 1 or 'pieces' (got {v})")
        return v
    steps: int = Field(1000, ge=0)
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    resolution: int = Field(512, ge=8)
    templates: list[str] = Field(default_factory=lambda: [
        "a photo of a {token}", "a rendering of a {token}", "a cropped photo of the {token}",
        "the photo of a {token}", "a photo of a clean {token}", "a close-up photo of a {token}",
        "a bright photo of the {token}", "a good photo of a {token}"])
    initializer: str | None = None     # words whose mean embedding starts the token (default: class name)
    flip: bool = True                  # random horizontal flips of the training images
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data):
        from synthmix.generation.sd.recipes import apply_recipe

        return apply_recipe(data, "textual_inversion")

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: list[str]) -> list[str]:
        return _check_templates(v, "token")

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"must be a multiple of 8 (got {v})")
        return v


class DAFusionConfig(SDCommon):
    """``type: dafusion``: img2img from every real train image, with the learned class token in the prompt.

    Each real image gives ``images_per_real`` images at each strength. Roles follow the strength:
    ``strength <= in_dist_max`` -> in_dist, ``strength >= near_ood_min`` -> near_ood, else unsorted.
    """

    strengths: list[float] = Field(default_factory=lambda: [0.2, 0.5])
    images_per_real: int = Field(1, ge=1)
    in_dist_max: float = Field(0.2, ge=0.0, le=1.0)
    near_ood_min: float = Field(0.5, ge=0.0, le=1.0)
    textual_inversion: TextualInversionConfig = Field(default_factory=TextualInversionConfig)
    prompts: PromptConfig = Field(default_factory=lambda: PromptConfig(templates=["a photo of a {name}"]))

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, v: list[float]) -> list[float]:
        return check_strengths(v)

    @model_validator(mode="after")
    def _roles(self) -> DAFusionConfig:
        _refuse_token(self.prompts, "dafusion")
        if self.in_dist_max >= self.near_ood_min:
            raise ValueError(f"in_dist_max ({self.in_dist_max}) must be below near_ood_min ({self.near_ood_min})")
        # img2img runs int(steps * strength) denoising steps: zero would return the input unchanged
        too_few = [s for s in self.strengths if int(self.steps * s) < 1]
        if too_few:
            raise ValueError(f"steps={self.steps} gives no denoising step at strength {too_few} "
                             f"(img2img runs int(steps * strength) steps); raise steps")
        return self


def role_for_strength(strength: float, in_dist_max: float, near_ood_min: float) -> str:
    """in_dist / near_ood / unsorted from an img2img strength (curation may re-sort later)."""
    if strength <= in_dist_max:
        return "in_dist"
    if strength >= near_ood_min:
        return "near_ood"
    return "unsorted"
