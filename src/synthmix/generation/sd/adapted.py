"""``type: lora``: text2img or img2img with a LoRA / DreamBooth-adapted Stable Diffusion.

The adapters are trained (or loaded, or resumed) once per output directory by the generator's
``prepare()`` (see :mod:`~synthmix.generation.sd.lora`), then every row is rendered with the
adapter of its class active (``checkpoint`` = the adapter file, ``recipe`` = the settings used).
The img2img generator is shared with ``type: diffmix`` (:mod:`~synthmix.generation.sd.translate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from synthmix.core.seeding import derive_seed
from synthmix.generation.protocol import planned_id
from synthmix.generation.sd.config import PromptConfig, SDCommon, check_strengths
from synthmix.generation.sd.img2img import DAFusionGenerator, tokens_for
from synthmix.generation.sd.lora import ADAPTER_DIR, LoRAConfig, adapter_key
from synthmix.generation.sd.prompts import class_name, prompt_for, require_token
from synthmix.generation.sd.text2img import Text2ImgGenerator, content_hash

NAME = "lora"
NOT_CONTENT = {"speed", "device", "classes", "images_per_class", "images_per_real", "strengths", "role"}
ADAPTED_TEMPLATES = ["a photo of a {token} {name}"]


class LoRAGenConfig(SDCommon):
    """``type: lora``: adapt with LoRA (per class or for all classes), then generate.

    ``method: txt2img`` makes ``images_per_class`` images per class; ``method: img2img`` makes
    ``images_per_real`` images per real train image at each strength. Every row gets ``role``.
    """

    method: Literal["txt2img", "img2img"] = "txt2img"
    images_per_class: int = Field(10, ge=1)
    strengths: list[float] = Field(default_factory=lambda: [0.5])
    images_per_real: int = Field(1, ge=1)
    role: Literal["in_dist", "near_ood", "unsorted"] = "in_dist"
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    prompts: PromptConfig = Field(default_factory=lambda: PromptConfig(templates=list(ADAPTED_TEMPLATES)))

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, v: list[float]) -> list[float]:
        return check_strengths(v)

    @model_validator(mode="after")
    def _checks(self) -> LoRAGenConfig:
        require_token_field(self.prompts)
        if self.method == "img2img":
            check_steps(self.steps, self.strengths)
        return self


def check_steps(steps: int, strengths: Sequence[float]) -> None:
    too_few = [s for s in strengths if int(steps * s) < 1]
    if too_few:
        raise ValueError(f"steps={steps} gives no denoising step at strength {too_few} "
                         "(img2img runs int(steps * strength) steps); raise steps")


def require_token_field(prompts: PromptConfig) -> None:
    """Loud failure at load time: an adapted generator's templates must all carry ``{token}``."""
    from synthmix.generation.sd.config import template_fields

    lacking = [t for t in prompts.templates if "token" not in template_fields(t)]
    if lacking:
        raise ValueError(f"prompts.templates: {lacking} lack {{token}}: the adapter was trained on prompts with "
                         "the class token, a prompt without it does not call up the adapted class")


def adapter_checkpoint(lcfg: LoRAConfig, label: str) -> str:
    """The ``checkpoint`` of a row: the adapter file (relative to out_dir, or the given ``adapter`` folder)."""
    key = adapter_key(label if lcfg.per_class else None)
    if lcfg.adapter:
        return str(Path(lcfg.adapter).expanduser() / f"{key}.safetensors")
    return f"{ADAPTER_DIR}/{key}.safetensors"


def check_adapter_files(lcfg: LoRAConfig, labels: Sequence[str]) -> None:
    """Before anything runs: every adapter a row will need exists (when loading finished adapters)."""
    from synthmix.generation.sd.lora import read_adapter_meta

    if lcfg.adapter:
        for path in sorted({adapter_checkpoint(lcfg, c) for c in labels}):
            read_adapter_meta(Path(path))


def plan_lora(cfg: LoRAGenConfig, classes: Sequence[str], parents: Sequence[dict[str, Any]], revision: str | None,
              extra: dict[str, dict[str, list[str]]] | None = None) -> list[dict[str, Any]]:
    """Planned rows of ``type: lora`` (txt2img: per class; img2img: per real row x strength x image)."""
    from synthmix.generation.sd.recipes import recipe_record

    h = content_hash(cfg, {**dict.fromkeys(NOT_CONTENT, True), "lora": {"checkpoint_every": True, "recipe": True}})
    tokens = tokens_for(sorted(set(classes)))
    p = cfg.prompts
    rows = []

    def row(label, i, seed, **more):
        prompt = prompt_for(p, label, i, cfg.seed, token=tokens[label], extra=(extra or {}).get(label))
        require_token(prompt, tokens[label], "generator.prompts.templates")
        ckpt = adapter_checkpoint(cfg.lora, label)
        return {"label": label, "split": "train", "source": NAME, "role": cfg.role, "parent_label": label,
                "seed": seed, "guidance": cfg.guidance, "steps": cfg.steps, "prompt": prompt,
                "negative_prompt": p.negative_prompt or None, "method": cfg.method, "generator": NAME,
                "model_id": cfg.model, "model_revision": revision, "scheduler": cfg.scheduler,
                "checkpoint": ckpt, "recipe": recipe_record("lora", cfg.lora, cfg.model, adapter=ckpt), **more}

    if cfg.method == "txt2img":
        for label in classes:
            for i in range(cfg.images_per_class):
                rows.append({"id": planned_id(NAME, h, label, i),
                             **row(label, i, derive_seed(cfg.seed, label, i), parent_id=None, strength=None)})
        return rows
    for s in sorted(cfg.strengths):
        for parent in parents:
            for m in range(cfg.images_per_real):
                rows.append({"id": planned_id(NAME, h, parent["id"], s, m),
                             **row(parent["label"], m, derive_seed(cfg.seed, parent["id"], s, m),
                                   parent_id=parent["id"], strength=s)})
    return rows


def prepare_adapters(pipe, cfg, items: dict[str, list[tuple[str, Path]]], out_dir: Path, device: str,
                     revision: str | None) -> dict[str, Any]:
    """Train / resume / load the adapters of ``cfg.lora`` for the classes of ``items``
    (label -> [(real row id, image path)]); returns label -> AdapterResult. All adapters end inactive."""
    from synthmix.core.log import console
    from synthmix.data.images import load_rgb
    from synthmix.generation.sd.lora import (
        activate,
        fingerprint,
        load_adapter,
        make_prior_images,
        train_adapter,
    )
    from synthmix.generation.sd.recipes import recipe_record

    lcfg: LoRAConfig = cfg.lora
    labels = sorted(items)
    tokens = tokens_for(labels)
    names = {c: class_name(c, cfg.prompts.names) for c in labels}
    groups = {adapter_key(c): [c] for c in labels} if lcfg.per_class else {adapter_key(None): labels}
    results: dict[str, Any] = {}
    if lcfg.adapter:
        for key, group in groups.items():
            res = load_adapter(pipe, Path(lcfg.adapter).expanduser() / f"{key}.safetensors", cfg.model, group,
                               {c: tokens[c] for c in group})
            results.update(dict.fromkeys(group, res))
        activate(pipe, None)
        return results
    lora_dir = Path(out_dir) / ADAPTER_DIR
    prior = None
    if lcfg.prior.enabled:
        size = lcfg.resolution
        prior = make_prior_images(pipe, lcfg, labels, names, lora_dir, cfg.steps, cfg.guidance, size)
    for key, group in groups.items():
        ids = [pid for c in group for pid, _ in items[c]]
        fp = fingerprint(cfg.model, revision, lcfg, key, group, {c: tokens[c] for c in group},
                         {c: names[c] for c in group}, ids)
        imgs = {c: [load_rgb(path) for _, path in items[c]] for c in group}
        if not (lora_dir / f"{key}.safetensors").exists():
            console().print(f"LoRA {key}: {sum(map(len, imgs.values()))} images, {lcfg.steps} steps ...",
                            highlight=False)
        res = train_adapter(pipe, key, imgs, {c: tokens[c] for c in group}, {c: names[c] for c in group}, lcfg,
                            lora_dir, device, fp, cfg.model, prior_images=prior,
                            recipe=recipe_record("lora", lcfg, cfg.model))
        if res.losses:
            console().print(f"LoRA {key}: steps {res.start_step}-{lcfg.steps} done, mean loss of the last 10 "
                            f"{sum(res.losses[-10:]) / len(res.losses[-10:]):.4f}", highlight=False)
        results.update(dict.fromkeys(group, res))
    activate(pipe, None)
    return results


def _by_adapter(rows: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault(Path(r["checkpoint"]).stem if r.get("checkpoint") else "", []).append(i)
    return out


def render_per_adapter(pipe, rows: Sequence[dict[str, Any]],
                       render: Callable[[list[dict[str, Any]]], list[Any]]) -> list[Any]:
    """Images of ``rows`` in row order: ``render`` called once per adapter with that adapter active
    (rows grouped by their ``checkpoint``); the base model is active again afterwards."""
    from synthmix.generation.sd.lora import activate

    out: dict[int, Any] = {}
    for key, idx in sorted(_by_adapter(rows).items()):
        activate(pipe, key or None)
        out.update(zip(idx, render([rows[i] for i in idx]), strict=True))
    activate(pipe, None)
    return [out[i] for i in range(len(rows))]


class AdaptedText2ImgGenerator(Text2ImgGenerator):
    """text2img with the adapter of each row's class active (adapters prepared on first use)."""

    name = NAME

    def __init__(self, cfg, device: str, items: dict[str, list[tuple[str, Path]]], out_dir: str | Path,
                 revision: str | None = None, pipe=None, max_batch: int | None = None):
        super().__init__(cfg, device, pipe=pipe, max_batch=max_batch)
        self.items, self.out_dir, self.revision = items, Path(out_dir), revision
        self.adapters: dict[str, Any] | None = None

    def _pipeline(self):
        pipe = super()._pipeline()
        if self.adapters is None:
            self.adapters = prepare_adapters(pipe, self.cfg, self.items, self.out_dir, self.device, self.revision)
        return pipe

    def prepare(self) -> None:
        self._pipeline()

    def render(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        return render_per_adapter(self._pipeline(), rows, super().render)


class AdaptedImg2ImgGenerator(DAFusionGenerator):
    """img2img from each row's ``parent_id`` image with the adapter of the row's (target) class active.

    ``parents``: real row id -> (label, path); adapters are trained on the parents' images when
    ``cfg.lora`` is set (``None``: the base model, e.g. Diff-Mix's "real guidance" ablation).
    """

    def __init__(self, cfg, device: str, parents: dict[str, tuple[str, Path]], out_dir: str | Path,
                 revision: str | None = None, pipe=None, max_batch: int | None = None, name: str = NAME):
        super().__init__(cfg, device, parents, out_dir, revision=revision, pipe=pipe, max_batch=max_batch)
        self.name = name
        self.adapters: dict[str, Any] | None = None

    def _pipeline(self):
        if self.pipe is None:
            from synthmix.generation.sd.pipeline import load_pipeline

            self.pipe = load_pipeline(self.cfg, "img2img", self.device)
        if self.adapters is None:
            self.adapters = {}
            if getattr(self.cfg, "lora", None) is not None:
                items: dict[str, list[tuple[str, Path]]] = {}
                for pid, (label, path) in sorted(self.parents.items()):
                    items.setdefault(label, []).append((pid, path))
                self.adapters = prepare_adapters(self.pipe, self.cfg, items, self.out_dir, self.device,
                                                 self.revision)
        return self.pipe

    def prepare(self) -> None:
        self._pipeline()

    def render(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        def per_strength(sub: list[dict[str, Any]]) -> list[Any]:
            # one pipeline call per strength (a scalar of the call); rows keep their own generators
            out: dict[int, Any] = {}
            for s in sorted({r["strength"] for r in sub}):
                js = [j for j, r in enumerate(sub) if r["strength"] == s]
                out.update(zip(js, self.splitter(self._render_batch, [sub[j] for j in js]), strict=True))
            return [out[j] for j in range(len(sub))]

        return render_per_adapter(self._pipeline(), rows, per_strength)
