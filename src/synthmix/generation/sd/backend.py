"""Registers the ``text2img`` and ``dafusion`` backends (importing this module pulls in nothing heavy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.device import pick_device
from synthmix.core.errors import ConfigError
from synthmix.data.manifest import class_names, resolve_path
from synthmix.generation.registry import register_backend
from synthmix.generation.sd.config import DAFusionConfig, Text2ImgConfig


def _classes(cfg, real_rows: list[dict[str, Any]], manifest_path) -> list[str]:
    have = class_names(real_rows)
    if cfg.classes is None:
        return have
    missing = [c for c in cfg.classes if c not in have]
    if missing:
        raise ConfigError(f"generator.classes: {missing} not among the train classes of {manifest_path} "
                          f"({', '.join(have)})")
    return list(cfg.classes)


def build_text2img(cfg: Text2ImgConfig, real_rows, manifest_path, out_dir, pipe=None):
    """-> (Text2ImgGenerator, planned rows). The model is resolved now (a missing one fails fast)."""
    from synthmix.generation.sd.pipeline import resolve_model
    from synthmix.generation.sd.text2img import Text2ImgGenerator, plan_text2img

    _, revision = resolve_model(cfg.model, cfg.revision) if pipe is None else (None, cfg.revision)
    classes = _classes(cfg, real_rows, manifest_path)
    planned = plan_text2img(cfg, classes, revision, prompt_extras(cfg, real_rows, manifest_path, out_dir, classes))
    return Text2ImgGenerator(cfg, pick_device(cfg.device), pipe=pipe), planned


def prompt_extras(cfg, real_rows, manifest_path, out_dir, classes) -> dict[str, dict[str, list[str]]]:
    """label -> {"caption": [...]} when ``prompts.captions`` is set (a local captioning model), else {}."""
    if cfg.prompts.captions is None:
        return {}
    from synthmix.generation.sd.prompts import class_captions

    rows = [r for r in real_rows if r["label"] in set(classes)]
    caps = class_captions(cfg.prompts.captions, rows, manifest_path, out_dir, pick_device(cfg.prompts.captions.device))
    return {label: {"caption": c} for label, c in caps.items()}


def build_dafusion(cfg: DAFusionConfig, real_rows, manifest_path, out_dir, pipe=None):
    """-> (DAFusionGenerator, planned rows): img2img children of every real train row of the classes."""
    from synthmix.generation.sd.img2img import DAFusionGenerator, plan_dafusion
    from synthmix.generation.sd.pipeline import resolve_model

    _, revision = resolve_model(cfg.model, cfg.revision) if pipe is None else (None, cfg.revision)
    classes = set(_classes(cfg, real_rows, manifest_path))
    if cfg.textual_inversion.enabled and cfg.textual_inversion.load_from:
        from synthmix.generation.sd.img2img import tokens_for
        from synthmix.generation.sd.textual_inversion import check_token_files

        check_token_files(cfg.textual_inversion.load_from, list(tokens_for(sorted(classes)).values()))
    parents_rows = sorted((r for r in real_rows if r["label"] in classes), key=lambda r: r["id"])
    parents = {r["id"]: (r["label"], resolve_path(manifest_path, r["path"])) for r in parents_rows}
    planned = plan_dafusion(cfg, parents_rows, revision)
    gen = DAFusionGenerator(cfg, pick_device(cfg.device), parents, Path(out_dir), revision=revision, pipe=pipe)
    return gen, planned


register_backend("text2img", Text2ImgConfig, build_text2img)
register_backend("dafusion", DAFusionConfig, build_dafusion)


def _parents(cfg, real_rows, manifest_path, classes):
    rows = sorted((r for r in real_rows if r["label"] in set(classes)), key=lambda r: r["id"])
    return rows, {r["id"]: (r["label"], resolve_path(manifest_path, r["path"])) for r in rows}


def build_lora(cfg, real_rows, manifest_path, out_dir, pipe=None):
    """-> (generator, planned rows) of ``type: lora``; finished adapters named by ``lora.adapter`` are
    checked now (a missing one fails before any image is made)."""
    from synthmix.generation.sd.adapted import (
        AdaptedImg2ImgGenerator,
        AdaptedText2ImgGenerator,
        check_adapter_files,
        plan_lora,
    )
    from synthmix.generation.sd.pipeline import resolve_model

    _, revision = resolve_model(cfg.model, cfg.revision) if pipe is None else (None, cfg.revision)
    classes = _classes(cfg, real_rows, manifest_path)
    check_adapter_files(cfg.lora, classes)
    rows, parents = _parents(cfg, real_rows, manifest_path, classes)
    planned = plan_lora(cfg, classes, rows, revision, prompt_extras(cfg, real_rows, manifest_path, out_dir, classes))
    device = pick_device(cfg.device)
    if cfg.method == "txt2img":
        items: dict[str, list] = {}
        for pid, (label, path) in sorted(parents.items()):
            items.setdefault(label, []).append((pid, path))
        return AdaptedText2ImgGenerator(cfg, device, items, Path(out_dir), revision, pipe=pipe), planned
    return AdaptedImg2ImgGenerator(cfg, device, parents, Path(out_dir), revision, pipe=pipe), planned


def build_diffmix(cfg, real_rows, manifest_path, out_dir, pipe=None):
    """-> (generator, planned rows) of ``type: diffmix`` (inter-class translation with soft labels)."""
    from synthmix.generation.sd.adapted import AdaptedImg2ImgGenerator, check_adapter_files
    from synthmix.generation.sd.pipeline import resolve_model
    from synthmix.generation.sd.translate import NAME, plan_diffmix

    _, revision = resolve_model(cfg.model, cfg.revision) if pipe is None else (None, cfg.revision)
    classes = _classes(cfg, real_rows, manifest_path)
    if cfg.lora is not None:
        check_adapter_files(cfg.lora, classes)
    rows, parents = _parents(cfg, real_rows, manifest_path, classes)
    planned = plan_diffmix(cfg, rows, classes, revision,
                           prompt_extras(cfg, real_rows, manifest_path, out_dir, classes))
    gen = AdaptedImg2ImgGenerator(cfg, pick_device(cfg.device), parents, Path(out_dir), revision, pipe=pipe, name=NAME)
    return gen, planned


def _register_adapted() -> None:
    # config classes import nothing heavy (pydantic only); torch loads inside the generators
    from synthmix.generation.sd.adapted import LoRAGenConfig
    from synthmix.generation.sd.translate import DiffMixConfig

    register_backend("lora", LoRAGenConfig, build_lora)
    register_backend("diffmix", DiffMixConfig, build_diffmix)


_register_adapted()


def preflight(gen_type: str, settings: dict) -> None:
    """Machine checks of a Stable Diffusion generator before a study starts (no GPU, no model load):
    the model is a local folder or cached hub id, and the folders of finished adapters
    (``lora.adapter``) / token files (``textual_inversion.load_from``) exist. ``settings``: the
    generator's ``generate:`` mapping. Raises :class:`ConfigError` naming the field."""
    from synthmix.generation.registry import parse_generator_config
    from synthmix.generation.sd.pipeline import resolve_model

    if gen_type not in ("text2img", "dafusion", "lora", "diffmix"):
        return
    _, cfg = parse_generator_config({"type": gen_type, **settings}, source="generate")
    resolve_model(cfg.model, cfg.revision)
    lora = getattr(cfg, "lora", None)
    ti = getattr(cfg, "textual_inversion", None)
    for field, folder in (("lora.adapter", lora.adapter if lora else None),
                          ("textual_inversion.load_from", ti.load_from if ti and ti.enabled else None)):
        if folder and not Path(folder).expanduser().is_dir():
            raise ConfigError(f"generate.{field}: {folder} is not a folder")
