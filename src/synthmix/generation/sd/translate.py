"""``type: diffmix``: inter-class translation (Diff-Mix, Wang et al., CVPR 2024).

img2img from a real TRAIN image of class A with the prompt (token, adapter) of another class B at
strength ``s``: the result keeps A's layout and background and takes B's foreground. The row's
``label`` is the target B, ``parent_label`` the source A, ``role`` is ``translation`` and
``soft_label`` the training target::

    w_B = s ** gamma,   w_A = 1 - w_B          soft_label = {B: w_B, A: w_A}

This is Diff-Mix's rule as implemented in its code (github.com/Zhicaiwww/Diff-Mix,
``dataset/base.py``, ``get_syn_item``: ``onehot[src] += 1 - strength**gamma``,
``onehot[tar] += strength**gamma``, with ``soft_scaler`` 1). Our default ``gamma`` is 0.5; the
public classification script (``scripts/classification.sh``) runs ``gamma=0.8`` with ``s=0.7``.
At ``s=1`` the target is pure B; as ``s -> 0`` it tends to pure A.

Targets: each real image gets ``targets_per_real`` distinct target classes among the other
classes, drawn with ``derive_seed(seed, parent id, "targets")`` (deterministic, order-free).
The adapter (``lora``, by default one for all classes, Diff-Mix's fine-tuning) is trained on
the real train images of every class; ``lora: null`` translates with the base model and the
class names (Diff-Mix's "real-guidance" mixing).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator, model_validator

from synthmix.core.errors import ConfigError
from synthmix.core.seeding import derive_seed
from synthmix.generation.protocol import planned_id
from synthmix.generation.sd.adapted import (
    ADAPTED_TEMPLATES,
    adapter_checkpoint,
    check_steps,
    require_token_field,
)
from synthmix.generation.sd.config import PromptConfig, SDCommon, check_strengths
from synthmix.generation.sd.lora import LoRAConfig
from synthmix.generation.sd.prompts import prompt_for, require_token
from synthmix.generation.sd.text2img import content_hash

NAME = "diffmix"
ROLE = "translation"
NOT_CONTENT = {"speed", "device", "classes", "images_per_target", "strengths", "targets_per_real"}


def translation_weights(strength: float, gamma: float) -> tuple[float, float]:
    """Diff-Mix soft-label weights ``(w_source, w_target) = (1 - s**gamma, s**gamma)``; they sum to 1."""
    if not 0.0 < strength <= 1.0 or gamma <= 0:
        raise ValueError(f"strength must be in (0, 1] and gamma > 0 (got {strength}, {gamma})")
    w_target = float(strength) ** float(gamma)
    return 1.0 - w_target, w_target


def soft_label(source: str, target: str, strength: float, gamma: float) -> dict[str, float]:
    """The ``soft_label`` column of a translated row: {target: s**gamma, source: 1 - s**gamma}."""
    w_source, w_target = translation_weights(strength, gamma)
    return {target: w_target, source: w_source}


class DiffMixConfig(SDCommon):
    """``type: diffmix`` settings (see the module docstring)."""

    strengths: list[float] = Field(default_factory=lambda: [0.7])   # Diff-Mix's "fixed_0.7" setting
    targets_per_real: int = Field(1, ge=1)      # distinct target classes per real image
    images_per_target: int = Field(1, ge=1)     # images per (real image, target, strength)
    gamma: float = Field(0.5, gt=0)             # w_target = strength ** gamma
    lora: LoRAConfig | None = Field(default_factory=lambda: LoRAConfig(per_class=False))
    prompts: PromptConfig = Field(default_factory=lambda: PromptConfig(templates=list(ADAPTED_TEMPLATES)))

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, v: list[float]) -> list[float]:
        return check_strengths(v)

    @model_validator(mode="after")
    def _checks(self) -> DiffMixConfig:
        check_steps(self.steps, self.strengths)
        if self.lora is not None:
            require_token_field(self.prompts)
        elif self.prompts.uses_token():
            raise ValueError("prompts.templates use {token} but lora is null (no adapter learns a token); "
                             "use {name} or configure lora")
        return self


def pick_targets(parent_id: str, source: str, classes: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` distinct target classes (not ``source``) for one real image, deterministic per seed."""
    others = sorted(c for c in classes if c != source)
    if k > len(others):
        raise ConfigError(f"generator.targets_per_real: {k} targets asked, but only {len(others)} other classes "
                          f"({', '.join(others)})")
    return sorted(random.Random(derive_seed(seed, parent_id, "targets")).sample(others, k))


def plan_diffmix(cfg: DiffMixConfig, parents: Sequence[dict[str, Any]], classes: Sequence[str],
                 revision: str | None, extra: dict[str, dict[str, list[str]]] | None = None) -> list[dict[str, Any]]:
    """Planned rows: real row x target class x strength x image, each with its soft label."""
    from synthmix.generation.sd.img2img import tokens_for
    from synthmix.generation.sd.recipes import recipe_record

    if len(classes) < 2:
        raise ConfigError(f"generator.classes: inter-class translation needs at least 2 classes, got {list(classes)}")
    h = content_hash(cfg, {**dict.fromkeys(NOT_CONTENT, True), "lora": {"checkpoint_every": True, "recipe": True}})
    tokens = tokens_for(sorted(classes))
    p = cfg.prompts
    rows = []
    for s in sorted(cfg.strengths):
        for parent in parents:
            source = parent["label"]
            for target in pick_targets(parent["id"], source, classes, cfg.targets_per_real, cfg.seed):
                for m in range(cfg.images_per_target):
                    token = tokens[target] if cfg.lora is not None else None
                    prompt = prompt_for(p, target, m, cfg.seed, token=token, extra=(extra or {}).get(target))
                    if token is not None:
                        require_token(prompt, token, "generator.prompts.templates")
                    ckpt = adapter_checkpoint(cfg.lora, target) if cfg.lora is not None else None
                    rows.append({
                        "id": planned_id(NAME, h, parent["id"], target, s, m), "label": target, "split": "train",
                        "source": NAME, "role": ROLE, "parent_id": parent["id"], "parent_label": source,
                        "seed": derive_seed(cfg.seed, parent["id"], target, s, m), "strength": s,
                        "guidance": cfg.guidance, "steps": cfg.steps, "prompt": prompt,
                        "negative_prompt": p.negative_prompt or None, "method": "img2img", "generator": NAME,
                        "model_id": cfg.model, "model_revision": revision, "scheduler": cfg.scheduler,
                        "checkpoint": ckpt,
                        "recipe": (recipe_record("lora", cfg.lora, cfg.model, adapter=ckpt, gamma=cfg.gamma)
                                   if cfg.lora is not None else {"name": "base-model", "model": cfg.model,
                                                                 "gamma": cfg.gamma}),
                        "soft_label": soft_label(source, target, s, cfg.gamma),
                    })
    return rows
