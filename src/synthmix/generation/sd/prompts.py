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
