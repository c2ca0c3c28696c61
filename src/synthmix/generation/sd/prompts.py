"""Class prompts from templates, with per-class names for vague labels."""

from __future__ import annotations

from collections.abc import Sequence


def class_name(label: str, names: dict[str, str]) -> str:
    """Words for a class in a prompt: the override if given, else the label with ``_``/``-`` as spaces."""
    return names.get(label) or label.replace("_", " ").replace("-", " ")


def class_prompt(label: str, index: int, templates: Sequence[str], names: dict[str, str]) -> str:
    """Prompt of the ``index``-th image of a class: templates are used in turn."""
    return templates[index % len(templates)].format(name=class_name(label, names))


def placeholder_token(label: str) -> str:
    """The textual-inversion token of a class, e.g. ``<granny_smith>`` (lower case: CLIP lower-cases text)."""
    slug = "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_") or "class"
    return f"<{slug}>"


def prompt_for(prompts, label: str, index: int, seed: int, *, name: str | None = None,
               token: str | None = None, extra: dict[str, Sequence[str]] | None = None) -> str:
    """Prompt of the ``index``-th image of class ``label`` from a :class:`PromptConfig`.

    Templates are used in turn (as :func:`class_prompt`); ``{name}`` is ``name`` or the class words,
    ``{token}`` the class's learned token; every other field draws one value of its list
    (``prompts.contexts``, or ``extra`` such as per-class captions) with
    ``derive_seed(seed, label, index, field)``: the same seed gives the same prompts, in any order
    of work. Without context fields the result equals :func:`class_prompt`.
    """
    from synthmix.core.errors import ConfigError
    from synthmix.core.seeding import derive_seed
    from synthmix.generation.sd.config import template_fields

    template = prompts.templates[index % len(prompts.templates)]
    fields = template_fields(template)
    values = {"name": name if name is not None else class_name(label, prompts.names)}
    if "token" in fields:
        if token is None:
            raise ConfigError(f"prompts.templates: {template!r} uses {{token}} but class {label!r} has no token")
        values["token"] = token
    pools = {**prompts.contexts, **(extra or {})}
    for f in sorted(fields - {"name", "token"}):
        pool = pools.get(f)
        if not pool:
            raise ConfigError(f"prompts.templates: {template!r} uses {{{f}}} but class {label!r} has no values for it")
        values[f] = pool[derive_seed(seed, label, index, f) % len(pool)]
    return template.format(**values)


def require_token(prompt: str, token: str, where: str) -> None:
    """Loud failure: a prompt meant to carry a learned token must contain it (else the adaptation is
    silently unused, the DA-Fusion users' complaint)."""
    from synthmix.core.errors import ConfigError

    if token not in prompt:
        raise ConfigError(f"{where}: the prompt {prompt!r} does not contain the class token {token!r}; "
                          "put {token} (or {name} for dafusion) in every template")


def caption_images(cfg, paths: Sequence, device: str = "cpu") -> list[str]:
    """Captions of ``paths`` by the LOCAL captioning model of a :class:`CaptionConfig` (BLIP-like).

    The model folder must exist and hold a transformers model (``config.json``); nothing is
    downloaded. Raises :class:`ConfigError` naming ``prompts.captions.model`` otherwise.
    """
    from pathlib import Path

    from synthmix.core.errors import ConfigError

    folder = Path(cfg.model).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"prompts.captions.model: {folder} is not a folder (a local captioning model saved "
                          "with save_pretrained, e.g. a BLIP model; synthmix never downloads)")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"prompts.captions.model: {folder} has no config.json (not a transformers model folder)")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from synthmix.data.images import load_rgb

    try:
        processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(str(folder), local_files_only=True).to(device).eval()
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"prompts.captions.model: cannot load {folder} as an image-captioning model: {err}") from None
    out = []
    with torch.inference_mode():
        for p in paths:
            kwargs = {"text": cfg.prefix} if cfg.prefix else {}
            inputs = processor(images=load_rgb(p), return_tensors="pt", **kwargs).to(device)
            ids = model.generate(**inputs, max_new_tokens=cfg.max_new_tokens, do_sample=False)
            out.append(processor.decode(ids[0], skip_special_tokens=True).strip())
    return out


def class_captions(cfg, rows: Sequence[dict], manifest_path, out_dir, device: str = "cpu") -> dict[str, list[str]]:
    """label -> captions of up to ``cfg.per_class`` real train images (sorted by id), cached in
    ``<out_dir>/captions.json`` (keyed by image id, so a re-run does not load the captioner)."""
    from pathlib import Path

    from synthmix.core.io import atomic_write_json, read_json
    from synthmix.data.manifest import resolve_path

    cache_path = Path(out_dir) / "captions.json"
    cache = read_json(cache_path) if cache_path.exists() else {}
    chosen: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        if len(chosen.setdefault(r["label"], [])) < cfg.per_class:
            chosen[r["label"]].append(r)
    todo = [r for rs in chosen.values() for r in rs if r["id"] not in cache]
    if todo:
        caps = caption_images(cfg, [resolve_path(manifest_path, r["path"]) for r in todo], device)
        cache.update({r["id"]: c for r, c in zip(todo, caps, strict=True)})
        atomic_write_json(cache_path, cache)
    return {label: [cache[r["id"]] for r in rs if cache[r["id"]]] for label, rs in chosen.items()}
