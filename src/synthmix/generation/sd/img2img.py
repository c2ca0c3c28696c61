"""DA-Fusion: img2img from each real train image, with the class's learned token in the prompt.

Each real image gives ``images_per_real`` images at each strength; the strength sets the role
(low -> ``in_dist``, high -> ``near_ood``). Textual inversion (step a) runs on first use, per
class, with resumable checkpoints under ``<out_dir>/textual_inversion/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthmix.core.errors import ConfigError
from synthmix.core.seeding import derive_seed
from synthmix.generation.protocol import planned_id
from synthmix.generation.sd.batching import OomSplitter
from synthmix.generation.sd.config import role_for_strength
from synthmix.generation.sd.prompts import class_name, placeholder_token, prompt_for, require_token
from synthmix.generation.sd.text2img import content_hash
from synthmix.generation.sd.textual_inversion import ti_filename

NAME = "dafusion"
TI_DIR = "textual_inversion"
NOT_CONTENT = {"speed", "device", "classes", "images_per_real", "strengths", "in_dist_max", "near_ood_min"}


def tokens_for(classes: Sequence[str]) -> dict[str, str]:
    """label -> placeholder token; two labels that would share a token are an error."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for c in classes:
        t = placeholder_token(c)
        if t in seen:
            raise ConfigError(f"generator.classes: {c!r} and {seen[t]!r} would share the token {t}; rename one")
        seen[t] = c
        out[c] = t
    return out


def plan_dafusion(cfg, real_rows: Sequence[dict[str, Any]], revision: str | None) -> list[dict[str, Any]]:
    """Planned rows: for each real row x strength x ``images_per_real``. Sorted by strength, so batches
    (one pipeline call needs one strength) are mostly uniform."""
    from synthmix.generation.sd.recipes import recipe_record

    h = content_hash(cfg, {**dict.fromkeys(NOT_CONTENT, True),
                           "textual_inversion": {"checkpoint_every": True, "recipe": True}})
    ti = cfg.textual_inversion.enabled
    recipe = recipe_record("textual_inversion", cfg.textual_inversion, cfg.model) if ti else None
    tokens = tokens_for(sorted({r["label"] for r in real_rows}))
    p = cfg.prompts
    rows = []
    for s in sorted(cfg.strengths):
        role = role_for_strength(s, cfg.in_dist_max, cfg.near_ood_min)
        for parent in real_rows:
            label = parent["label"]
            for m in range(cfg.images_per_real):
                prompt = prompt_for(p, label, m, cfg.seed, name=tokens[label] if ti else None)
                if ti:
                    require_token(prompt, tokens[label], "generator.prompts.templates")
                rows.append({
                    "id": planned_id(NAME, h, parent["id"], s, m), "label": label, "split": "train",
                    "source": NAME, "role": role, "parent_id": parent["id"], "parent_label": label,
                    "seed": derive_seed(cfg.seed, parent["id"], s, m), "strength": s,
                    "guidance": cfg.guidance, "steps": cfg.steps,
                    "prompt": prompt,
                    "negative_prompt": p.negative_prompt or None, "method": "img2img", "generator": NAME,
                    "model_id": cfg.model, "model_revision": revision, "scheduler": cfg.scheduler,
                    "checkpoint": f"{TI_DIR}/{ti_filename(tokens[label])}" if ti else None,
                    "recipe": recipe,
                })
    return rows


class DAFusionGenerator:
    """Renders planned dafusion rows with an AutoPipelineForImage2Image (loaded on first use).

    ``parents``: real row id -> image file path. On first use, textual inversion learns (or
    loads) the token of every class in ``parents`` and installs it in the pipeline.
    ``render(rows)`` -> list of [H, W, 3] float arrays in [0, 1].
    """

    name = NAME

    def __init__(self, cfg, device: str, parents: dict[str, tuple[str, Path]], out_dir: str | Path,
                 revision: str | None = None, pipe=None, max_batch: int | None = None):
        self.cfg = cfg
        self.device = device
        self.parents = parents
        self.out_dir = Path(out_dir)
        self.revision = revision
        self.pipe = pipe
        self.ready = False
        self.splitter = OomSplitter(max_batch)
        self.ti_results: dict[str, Any] = {}

    def _pipeline(self):
        if self.pipe is None:
            from synthmix.generation.sd.pipeline import load_pipeline

            self.pipe = load_pipeline(self.cfg, "img2img", self.device)
        if not self.ready:
            if self.cfg.textual_inversion.enabled:
                self.learn_tokens()
            self.ready = True
        return self.pipe

    def prepare(self) -> None:
        """One-time work kept in ``out_dir`` (pipeline + textual inversion); the job runs it under a
        lock, one process after another, so N ranks train the tokens once and then load them."""
        self._pipeline()

    def learn_tokens(self) -> dict[str, Any]:
        """Textual inversion for every class of the parents (resumes / loads finished ones)."""
        from synthmix.core.log import console
        from synthmix.data.images import load_rgb
        from synthmix.generation.sd.textual_inversion import (
            check_supported,
            fingerprint,
            load_token,
            train_token,
        )

        check_supported(self.pipe)
        ti = self.cfg.textual_inversion
        by_class: dict[str, list[tuple[str, Path]]] = {}
        for pid, (label, path) in sorted(self.parents.items()):
            by_class.setdefault(label, []).append((pid, path))
        tokens = tokens_for(sorted(by_class))
        for label, items in sorted(by_class.items()):
            token = tokens[label]
            init = ti.initializer or class_name(label, self.cfg.prompts.names)
            fp = fingerprint(self.cfg.model, self.revision, ti, token, init, [pid for pid, _ in items])
            if ti.load_from:
                self.ti_results[label] = load_token(self.pipe, token, ti.load_from, ti.vectors)
                continue
            images = [load_rgb(p) for _, p in items]
            if not (self.out_dir / TI_DIR / ti_filename(token)).exists():
                console().print(f"textual inversion {token}: {len(images)} images, {ti.steps} steps ...",
                                highlight=False)
            res = train_token(self.pipe, images, token, init, ti, self.out_dir / TI_DIR, self.device, fp)
            if res.losses:
                console().print(f"textual inversion {token}: steps {res.start_step}-{ti.steps} done, "
                                f"mean loss of the last 10 {sum(res.losses[-10:]) / len(res.losses[-10:]):.4f}",
                                highlight=False)
            self.ti_results[label] = res
        return self.ti_results

    def render(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        self._pipeline()
        if self.cfg.textual_inversion.enabled:
            from synthmix.generation.sd.textual_inversion import check_tokens_known

            labels = sorted({label for label, _ in self.parents.values()})
            check_tokens_known(self.pipe.tokenizer, [r["prompt"] for r in rows], list(tokens_for(labels).values()))
        out: dict[int, Any] = {}
        # one pipeline call per strength (a scalar of the call); rows keep their own generators
        for s in sorted({r["strength"] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r["strength"] == s]
            images = self.splitter(self._render_batch, [rows[i] for i in idx])
            out.update(zip(idx, images, strict=True))
        return [out[i] for i in range(len(rows))]

    def _size(self) -> tuple[int, int]:
        vae_factor = getattr(self.pipe, "vae_scale_factor", 8)
        default = (getattr(self.pipe, "default_sample_size", None) or 64) * vae_factor
        return self.cfg.width or default, self.cfg.height or default

    def _render_batch(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        import torch

        from synthmix.data.images import load_rgb
        from synthmix.generation.sd.pipeline import call_kwargs, image_generators

        pipe = self.pipe
        w, h = self._size()
        # RGB PIL images: a 4-channel array or tensor would be taken as latents (PITFALLS)
        inits = [load_rgb(self.parents[r["parent_id"]][1]).resize((w, h), resample=3) for r in rows]
        negative = [r["negative_prompt"] or "" for r in rows]
        kwargs = call_kwargs(
            pipe, quiet=("height", "width"), prompt=[r["prompt"] for r in rows], image=inits, strength=rows[0]["strength"],
            negative_prompt=negative if any(negative) else None,
            num_inference_steps=self.cfg.steps, guidance_scale=self.cfg.guidance,
            height=h, width=w, generator=image_generators([r["seed"] for r in rows]), output_type="np")
        with torch.inference_mode():
            images = pipe(**kwargs).images
        return [images[i] for i in range(len(rows))]
