"""Published adaptation recipes, written down: ``recipe: <name>`` in a config fills every field the
config does not set explicitly, and the recipe (name + the values actually used) is recorded in the
``recipe`` column of every image row made with it.

Why: users of DA-Fusion report losing ~10 points when they re-train the tokens with the public
scripts, because the settings of the paper (vectors per token, steps, batch, base model) were not
written next to the code. Each entry below says where its numbers come from; values marked
"not in the source" are our choice and say so.

Differences from the published methods that the values cannot express are listed in ``differs``:
read them before comparing a synthmix number with a paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synthmix.core.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """A named preset: ``settings`` are field values of the config section it applies to (``kind``)."""

    name: str
    kind: str                       # "textual_inversion" | "lora"
    settings: dict[str, Any]
    base_model: str                 # the model the recipe was published with (informational)
    source: str                     # where the numbers were read
    differs: tuple[str, ...] = field(default_factory=tuple)

    def record(self, effective: dict[str, Any]) -> dict[str, Any]:
        """What a manifest row stores: the name, the values used, the published base model."""
        return {"name": self.name, "kind": self.kind, "base_model": self.base_model, **effective}


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        name="dafusion",
        kind="textual_inversion",
        settings={"steps": 1000, "learning_rate": 5.0e-4, "batch_size": 4, "resolution": 512, "flip": True,
                  "vectors": "pieces"},
        base_model="CompVis/stable-diffusion-v1-4",
        source="DA-Fusion (Trabucco et al., ICLR 2024), github.com/brandontrabucco/da-fusion: fine_tune.py "
               "(initialises one new token per word piece of the class name from that piece's embedding, "
               "constant lr, AdamW weight decay 1e-2, 512 px); the launch settings (1000 steps, batch 4, "
               "lr 5e-4 with --scale_lr, SD 1.4, fp16) are those of the repository's README example",
        differs=("DA-Fusion trains the pieces' tokens of all classes in one run and shares a piece between "
                 "classes whose names share it ('<red>' in 'red apple' and 'red pepper'); synthmix gives each "
                 "class its own tokens (<red_apple>, <red_apple>_1, ...) initialised from its pieces",
                 "DA-Fusion's --scale_lr multiplies lr by the number of GPUs x accumulation / classes per batch; "
                 "synthmix uses lr as given",
                 "synthmix trains each class separately; fine_tune.py trains all classes in one run with a "
                 "class-balanced sampler"),
    ),
    Recipe(
        name="dreambooth-lora",
        kind="lora",
        settings={"rank": 4, "alpha": 4.0, "steps": 500, "learning_rate": 1.0e-4, "batch_size": 1,
                  "resolution": 512, "text_encoder": False, "per_class": True, "lr_schedule": "constant",
                  "warmup_steps": 0},
        base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        source="diffusers examples/dreambooth/train_dreambooth_lora.py: --rank default 4 (diffusers PR #3945); "
               "lr 1e-4, batch 1, 500 steps, constant schedule: the example command of its README",
        differs=("the instance prompt uses synthmix's class token text (e.g. '<apple>') as the rare identifier "
                 "instead of 'sks'",),
    ),
    Recipe(
        name="datadream",
        kind="lora",
        settings={"rank": 16, "alpha": 16.0, "steps": 400, "learning_rate": 1.0e-4, "batch_size": 8,
                  "resolution": 512, "text_encoder": True, "per_class": True, "lr_schedule": "cosine",
                  "warmup_steps": 100, "max_grad_norm": 1.0, "weight_decay": 1.0e-2},
        base_model="stabilityai/stable-diffusion-2-1",
        source="DataDream (Kim et al., ECCV 2024), github.com/ExplainableML/DataDream: DataDream/bash_run.sh "
               "(batch 8, lr 1e-4, cosine, warmup 100, 200 epochs, text-encoder LoRA, one run per class, "
               "16 shots) and DataDream/config.py (--rank 16, max_grad_norm 1.0, weight decay 1e-2, SD 2.1)",
        differs=("DataDream trains 200 EPOCHS; 400 steps = 200 epochs of 16 shots at batch 8: set steps to "
                 "200 * images_per_class / batch_size for other shot counts",),
    ),
    Recipe(
        name="diffmix",
        kind="lora",
        settings={"rank": 10, "alpha": 10.0, "steps": 35000, "learning_rate": 5.0e-5, "batch_size": 2,
                  "resolution": 512, "text_encoder": False, "per_class": False, "lr_schedule": "constant",
                  "warmup_steps": 0, "flip": True},
        base_model="runwayml/stable-diffusion-v1-5",
        source="Diff-Mix (Wang et al., CVPR 2024), github.com/Zhicaiwww/Diff-Mix: scripts/finetune.sh "
               "(rank 10, lr 5e-5, constant, 35000 steps, batch 2 per GPU, random flip, SD 1.5, one model "
               "for all classes)",
        differs=("Diff-Mix's default strategy 'ti_db' also learns a textual-inversion token per class jointly "
                 "with the LoRA; synthmix's LoRA uses a fixed token text per class",),
    ),
)}


def get_recipe(name: str, kind: str, field_name: str = "recipe") -> Recipe:
    """The recipe ``name`` for a config section of ``kind``; a ConfigError lists the available ones."""
    r = RECIPES.get(name)
    if r is None or r.kind != kind:
        names = sorted(n for n, x in RECIPES.items() if x.kind == kind)
        raise ConfigError(f"{field_name}: unknown {kind} recipe {name!r}; available: {', '.join(names)}")
    return r


def apply_recipe(data: Any, kind: str) -> Any:
    """Pydantic ``mode="before"`` helper: fill the fields a mapping does not set from its ``recipe``."""
    if not isinstance(data, dict) or not data.get("recipe"):
        return data
    r = RECIPES.get(data["recipe"])
    if r is None or r.kind != kind:
        names = sorted(n for n, x in RECIPES.items() if x.kind == kind)
        raise ValueError(f"unknown {kind} recipe {data['recipe']!r}; available: {', '.join(names)}")
    return {**r.settings, **data}


# Settings of each kind written into the ``recipe`` column of the rows it makes.
RECORDED: dict[str, tuple[str, ...]] = {
    "textual_inversion": ("steps", "learning_rate", "batch_size", "resolution", "flip", "vectors", "seed"),
    "lora": ("rank", "alpha", "steps", "learning_rate", "batch_size", "resolution", "text_encoder", "per_class",
             "lr_schedule", "warmup_steps", "weight_decay", "max_grad_norm", "prior", "seed"),
}


def recipe_record(kind: str, section, model: str, **more: Any) -> dict[str, Any]:
    """The ``recipe`` column of a row: recipe name (``custom`` without one), the model actually used,
    the effective settings (after the preset and any override) and ``more`` (adapter files ...)."""
    d = section.model_dump(mode="json")
    out: dict[str, Any] = {"name": section.recipe or "custom", "kind": kind, "model": model}
    out.update({k: d[k] for k in RECORDED[kind] if k in d})
    if section.recipe:
        out["published_base_model"] = RECIPES[section.recipe].base_model
    out.update(more)
    return out
