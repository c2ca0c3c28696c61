"""text2img: N images per class from class prompts, batched, one generator per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthmix.core.hashing import config_hash
from synthmix.core.seeding import derive_seed
from synthmix.generation.protocol import planned_id
from synthmix.generation.sd.batching import OomSplitter
from synthmix.generation.sd.prompts import prompt_for

NAME = "text2img"


# Settings that do not change an image (speed, where it runs, how many, which role it is given).
NOT_CONTENT = {"speed", "device", "classes", "images_per_class", "role"}


def content_hash(cfg, exclude: set[str] | dict = NOT_CONTENT) -> str:
    """Hash of the settings that define the images: part of every id.

    Raising ``images_per_class`` or adding classes keeps the ids (and images) already made.
    """
    from synthmix.generation.sd.config import content_dump

    return config_hash(content_dump(cfg, exclude))


def plan_text2img(cfg, classes: Sequence[str], revision: str | None,
                  extra: dict[str, dict[str, list[str]]] | None = None) -> list[dict[str, Any]]:
    """Planned manifest rows: ``images_per_class`` per class, prompts cycling over the templates.

    The seed of image ``i`` of class ``c`` is ``derive_seed(cfg.seed, c, i)``: it does not change
    when steps, guidance or prompts change, so such sweeps compare like with like. ``extra``:
    label -> {field: values} for per-class template fields (captions).
    """
    h = content_hash(cfg)
    p = cfg.prompts
    rows = []
    for label in classes:
        for i in range(cfg.images_per_class):
            rows.append({
                "id": planned_id(NAME, h, label, i), "label": label, "split": "train", "source": NAME,
                "role": cfg.role, "parent_id": None, "parent_label": label,
                "seed": derive_seed(cfg.seed, label, i), "strength": None, "guidance": cfg.guidance,
                "steps": cfg.steps, "prompt": prompt_for(p, label, i, cfg.seed, extra=(extra or {}).get(label)),
                "negative_prompt": p.negative_prompt or None, "method": "txt2img", "generator": NAME,
                "model_id": cfg.model, "model_revision": revision, "scheduler": cfg.scheduler,
                "checkpoint": None,
            })
    return rows


class Text2ImgGenerator:
    """Renders planned text2img rows with a diffusers AutoPipelineForText2Image (loaded on first use).

    ``render(rows)`` -> list of [H, W, 3] float arrays in [0, 1] (NaN kept for the writer to catch).
    ``pipe`` may be given (benchmarks, tests); otherwise it is loaded from ``cfg.model``.
    """

    name = NAME

    def __init__(self, cfg, device: str, pipe=None, max_batch: int | None = None):
        self.cfg = cfg
        self.device = device
        self.pipe = pipe
        self.splitter = OomSplitter(max_batch)

    def _pipeline(self):
        if self.pipe is None:
            from synthmix.generation.sd.pipeline import load_pipeline

            self.pipe = load_pipeline(self.cfg, "text2img", self.device)
        return self.pipe

    def render(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        return self.splitter(self._render_batch, list(rows))

    def _render_batch(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        import torch

        from synthmix.generation.sd.pipeline import call_kwargs, image_generators

        pipe = self._pipeline()
        negative = [r["negative_prompt"] or "" for r in rows]
        kwargs = call_kwargs(
            pipe, prompt=[r["prompt"] for r in rows],
            negative_prompt=negative if any(negative) else None,
            num_inference_steps=self.cfg.steps, guidance_scale=self.cfg.guidance,
            height=self.cfg.height, width=self.cfg.width,
            generator=image_generators([r["seed"] for r in rows]), output_type="np")
        with torch.inference_mode():
            images = pipe(**kwargs).images
        return [images[i] for i in range(len(rows))]
