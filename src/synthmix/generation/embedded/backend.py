"""The ``embedded`` generator backend: plan rows, render them with a trained checkpoint.

Methods (manifest ``method``), each row with its own seed:

* ``sample``  — class-conditional sample from noise (role ``in_dist``);
* ``img2img`` — a real train image noised to ``strength`` and denoised with its label
  (DA-Fusion style; role ``in_dist`` or ``near_ood`` by the configured strength lists);
* ``interp``  — a sample conditioned on a mix of the class's and another class's embedding
  (``interp_weight`` of the other): an explicit near-OOD image (role ``near_ood``);
* ``vos``     — a sample conditioned on a point sampled around the class embedding at radius
  ``vos_radius`` (VOS / Dream-OOD style, :mod:`synthmix.generation.embedded.vos`): role
  ``near_ood``, ``parent_label`` the nearest class, distances to every class in ``scores``.

Importing this module registers the backend: ``register_backend("embedded", ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from synthmix.core.errors import ConfigError
from synthmix.core.hashing import config_hash
from synthmix.core.seeding import derive_seed
from synthmix.generation.embedded.checkpoint import LoadedGenerator, load_generator
from synthmix.generation.embedded.config import EmbeddedGenerateConfig, TrainConfig
from synthmix.generation.protocol import planned_id
from synthmix.generation.registry import register_backend

GENERATOR_NAME = "embedded"
# Settings that do not change any image (so changing them keeps planned ids and done work).
_NOT_IN_ID = {"batch_size", "device", "train", "checkpoint", "split",
              "vos_per_class", "vos_radii"}  # vos rows carry their radius in their own ids


class EmbeddedGenerator:
    """``render(rows)`` -> list of float [S, S, 3] arrays in [0, 1] (see module doc for methods).

    ``parents``: real rows by id (img2img parents), read from ``manifest_path``'s directory.
    ``batch_size``: most rows per sampling (denoise) call, bounding memory (None: a whole group of
    rows that share method and settings at once); images do not depend on it (one generator per row).
    """

    name = GENERATOR_NAME

    def __init__(self, loaded: LoadedGenerator, sampler: str = "ddim",
                 parents: dict[str, dict[str, Any]] | None = None, manifest_path: str | Path | None = None,
                 batch_size: int | None = None, precision: str = "fp32"):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.loaded = loaded
        self.batch_size = batch_size
        self.precision = precision  # fp32 or bf16 (autocast of the denoiser)
        self.sampler = sampler
        self.parents = parents or {}
        self.manifest_path = manifest_path
        self.class_index = {c: i for i, c in enumerate(loaded.classes)}

    def render(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        out: list[Any] = [None] * len(rows)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            key = (r["method"], r.get("strength"), r["guidance"], r["steps"], r.get("interp_weight"))
            groups.setdefault(key, []).append(i)
        for (method, strength, guidance, steps, weight), idx in groups.items():
            step = self.batch_size or len(idx)
            for start in range(0, len(idx), step):
                part = idx[start:start + step]
                imgs = self._render_group([rows[i] for i in part], method, strength, guidance, steps, weight)
                for i, img in zip(part, imgs, strict=True):
                    out[i] = img
        return out

    def _render_group(self, rows, method, strength, guidance, steps, weight) -> list[Any]:
        from synthmix.generation.embedded.diffusion import class_weights, denoise, from_uint8, to_unit

        lg = self.loaded
        labels = torch.tensor([self.class_index[r["label"]] for r in rows])
        gens = [torch.Generator().manual_seed(int(r["seed"])) for r in rows]
        init = None
        cond: torch.Tensor = labels
        model = lg.model
        if method == "img2img":
            init = from_uint8(self.parent_images(rows))
        elif method == "interp":
            other = torch.tensor([self.class_index[r["interp_label"]] for r in rows])
            cond = class_weights(labels, other, float(weight), lg.model.num_classes)
        elif method == "vos":  # free conditioning embeddings (synthmix.generation.embedded.vos)
            from synthmix.generation.embedded.vos import EmbeddingConditioned, vos_embeddings

            z, _ = vos_embeddings(lg.model.class_embed.weight, lg.model.num_classes, labels.tolist(),
                                  [float(r["vos_radius"]) for r in rows], [int(r["seed"]) for r in rows])
            model, cond = EmbeddingConditioned(lg.model, z), torch.arange(len(rows))
        elif method != "sample":
            raise ValueError(f"embedded generator: unknown method {method!r}")
        x = denoise(model, lg.model_cfg, cond, gens, steps=int(steps), guidance=float(guidance),
                    sampler=self.sampler, init=init, strength=1.0 if strength is None else float(strength),
                    precision=self.precision)
        return list(to_unit(x).permute(0, 2, 3, 1).cpu().numpy())

    def parent_images(self, rows) -> torch.Tensor:
        """uint8 [N, 3, S, S] of the rows' parents (resized like the training images)."""
        from synthmix.data.tensors import load_tensor

        return load_tensor([self.parents[r["parent_id"]] for r in rows], self.manifest_path,
                           self.loaded.resolution)


def plan_rows(cfg: EmbeddedGenerateConfig, loaded: LoadedGenerator,
              real_rows: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Planned manifest rows (complete but for path/status/size), deterministic ids and seeds."""
    # precision fp32 (the default) stays out of the hash: ids planned before the field existed hold.
    not_in_id = _NOT_IN_ID | ({"precision"} if cfg.precision == "fp32" else set())
    h = config_hash({"cfg": {k: v for k, v in cfg.model_dump(mode="json").items() if k not in not_in_id},
                     "checkpoint": loaded.checkpoint})
    classes = loaded.classes
    base = {"split": cfg.split, "source": GENERATOR_NAME, "generator": GENERATOR_NAME, "model_id": None,
            "checkpoint": loaded.checkpoint, "guidance": cfg.guidance, "steps": cfg.steps, "prompt": None}
    rows: list[dict[str, Any]] = []

    def add(label: str, method: str, role: str, index: int, **extra: Any) -> None:
        rid = planned_id(h, method, label, extra.get("parent_id"), extra.get("strength"), index)
        rows.append({**base, "id": rid, "label": label, "method": method, "role": role,
                     "seed": derive_seed(cfg.seed, rid), "parent_label": label, **extra})

    for c in classes:
        for i in range(cfg.per_class):
            add(c, "sample", "in_dist", i, strength=None, parent_id=None)
    if cfg.img2img_per_parent:
        by_class: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(real_rows, key=lambda r: r["id"]):
            if r["label"] in classes:
                by_class.setdefault(r["label"], []).append(r)
        for c in classes:
            for p in by_class.get(c, [])[:cfg.max_parents_per_class]:
                for role, strengths in (("in_dist", cfg.in_dist_strengths), ("near_ood", cfg.near_ood_strengths)):
                    for s in strengths:
                        for j in range(cfg.img2img_per_parent):
                            add(c, "img2img", role, j, strength=float(s), parent_id=p["id"])
    check_interp_classes(cfg, classes)
    if cfg.interp_per_class:
        for ci, c in enumerate(classes):
            for i in range(cfg.interp_per_class):
                other = classes[(ci + 1 + i % (len(classes) - 1)) % len(classes)]
                add(c, "interp", "near_ood", i, strength=None, parent_id=None, interp_label=other,
                    interp_weight=cfg.interp_weight)
    if cfg.vos_per_class:
        _plan_vos(cfg, loaded, add, rows)
    return rows


def _plan_vos(cfg: EmbeddedGenerateConfig, loaded: LoadedGenerator, add, rows: list[dict[str, Any]]) -> None:
    """``vos_per_class`` rows per class (radii of ``vos_radii`` in turn), with the nearest class as
    ``parent_label`` and the distance to each class embedding in ``scores`` (known at planning)."""
    from synthmix.generation.embedded.vos import vos_embeddings

    classes, start = loaded.classes, len(rows)
    for c in classes:
        for i in range(cfg.vos_per_class):
            radius = float(cfg.vos_radii[i % len(cfg.vos_radii)])
            add(c, "vos", "near_ood", f"{i}/r{radius:g}", strength=None, parent_id=None, vos_radius=radius)
    vos = rows[start:]
    _, dist = vos_embeddings(loaded.model.class_embed.weight, len(classes), [classes.index(r["label"]) for r in vos],
                             [r["vos_radius"] for r in vos], [r["seed"] for r in vos])
    for r, d in zip(vos, dist.tolist(), strict=True):
        r["parent_label"] = classes[min(range(len(classes)), key=d.__getitem__)]
        r["scores"] = {"vos_radius": r["vos_radius"], **{f"vos_distance/{k}": float(v) for k, v in zip(classes, d, strict=True)}}


def check_interp_classes(cfg: EmbeddedGenerateConfig, classes: Sequence[str]) -> None:
    """ConfigError when ``interp_per_class > 0`` but fewer than two classes: an interpolated image
    mixes its class with another one, and there is none (the rows would silently be missing)."""
    if cfg.interp_per_class and len(classes) < 2:
        raise ConfigError(f"generator.interp_per_class: {cfg.interp_per_class} class-interpolated images per "
                          f"class need at least two generator classes to mix, got {len(classes)} "
                          f"({', '.join(classes) or 'none'}); set interp_per_class: 0 or train on more classes")


def training_classes(cfg: EmbeddedGenerateConfig, real_rows: Sequence[dict[str, Any]]) -> list[str]:
    """The classes a generator trained with ``cfg.train`` on ``real_rows`` will have (as in
    :func:`synthmix.generation.embedded.train.load_training_data`), known before any training."""
    train = cfg.train or {}
    if train.get("classes") is not None:
        return list(train["classes"])
    excluded = set(train.get("exclude_classes") or ())
    return sorted({r["label"] for r in real_rows if r["label"] not in excluded})


def resolve_checkpoint(cfg: EmbeddedGenerateConfig, manifest_path: str | Path, out_dir: str | Path) -> Path:
    """The checkpoint to use: ``cfg.checkpoint``, or one trained (resumably) into ``out_dir/model``."""
    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    from synthmix.core.config import parse_config
    from synthmix.generation.embedded.train import train_generator

    data = {"manifest": str(manifest_path), "out_dir": str(Path(out_dir) / "model"), **(cfg.train or {})}
    return train_generator(parse_config(TrainConfig, data, source="generator.train"))


def build(cfg: EmbeddedGenerateConfig, real_rows: Sequence[dict[str, Any]], manifest_path: str | Path,
          out_dir: str | Path) -> tuple[EmbeddedGenerator, list[dict[str, Any]]]:
    """Registry entry point: (generator, planned rows). Img2img parents are real train rows only."""
    from synthmix.core.device import pick_device
    from synthmix.data.manifest import assert_train_only

    parents = list(real_rows) if cfg.img2img_per_parent else []
    assert_train_only(parents, "embedded img2img")
    if not cfg.checkpoint:
        check_interp_classes(cfg, training_classes(cfg, real_rows))  # before minutes of training
    loaded = load_generator(resolve_checkpoint(cfg, manifest_path, out_dir), device=pick_device(cfg.device))
    planned = plan_rows(cfg, loaded, parents)
    gen = EmbeddedGenerator(loaded, cfg.sampler, {r["id"]: r for r in parents}, manifest_path,
                            batch_size=cfg.batch_size, precision=cfg.precision)
    return gen, planned


register_backend(GENERATOR_NAME, EmbeddedGenerateConfig, build)
