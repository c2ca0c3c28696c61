"""``inspect_manifest``: every diagnostic of the synthetic rows of a manifest, per role and class.

``inspect_manifest(manifest, run_dir, out_dir, cfg=None, *, cas_runs=()) -> dict`` loads the
classifier of a finished real-trained run (``training.rundir.load_run_model``), the real
train / val / test rows (from ``manifest``, or from the run's own manifest when ``manifest`` holds
only generated rows) and the synthetic rows whose role is in ``cfg.roles``; then, for each role
("group") overall and per class, synthetic vs the real TRAIN images of the same class:

- precision, recall, density, coverage (k-NN manifolds), FID, KID, in ``cfg.features``' space;
- diversity (mean pairwise feature distance, synthetic / real);
- label agreement of the real-trained classifier with each row's intended class;
- memorisation: nearest real TRAIN image by feature cosine and by pixels (``pixel_size`` px),
  the share flagged as a copy, and the same against the real TEST images (a leak);
  ``nearest_is_parent``: share of img2img rows whose nearest train image is their own parent.

The real validation images go through the same computation as a reference group
(``reference.real_val``): what the numbers look like for real held-out photos, e.g. how many
of them the copy test flags (its false-alarm level) and the FID between two real samples.
``cas_runs``: finished synthetic-only runs (one per seed) -> Classification Accuracy Score.

Writes ``out_dir/diagnostics.json``, ``nearest.jsonl`` (per synthetic row: nearest real train /
test image by features and by pixels, the copy verdicts, the classifier's prediction) and PNG grids
(samples per class, closest pairs); every path inside the JSON is relative to ``out_dir``.
Returns the JSON as a dict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from synthmix.core.config import StrictModel
from synthmix.diagnostics.features import NOTE, FeatureSpaceConfig

METRICS = ("precision", "recall", "density", "coverage", "fid", "kid", "diversity_ratio", "agreement",
           "memorised_train", "leak_test", "clip_score")


class MemorisationConfig(StrictModel):
    """When is a synthetic image called a copy of a real one?

    Either test flags it: the feature cosine similarity to its nearest real image is at or above
    ``cosine_threshold`` (None: calibrated = the ``cosine_percentile`` of the same similarity for
    real validation images, which are no copies; a fixed number means little in a classifier's
    features, where most images of a class are cosine-similar), or the mean absolute pixel
    difference at ``pixel_size`` is at or below ``pixel_threshold``.
    """

    cosine_threshold: float | None = Field(None, ge=-1, le=1, description="fixed feature-cosine "
                                           "threshold (None: calibrated on real validation images)")
    cosine_percentile: float = Field(99.0, ge=0, le=100, description="percentile of the real validation "
                                     "images' nearest-train cosine used as the calibrated threshold")
    fallback_cosine: float = Field(0.95, ge=-1, le=1, description="threshold when there are no real "
                                   "validation images to calibrate on")
    pixel_threshold: float = Field(0.02, ge=0, le=1, description="mean absolute pixel difference "
                                   "(0-1 scale, at pixel_size) at or below which it counts as copied")
    pixel_size: int = Field(16, ge=4, le=128, description="side of the low-resolution pixel comparison")
    pairs: int = Field(16, ge=0, description="closest pairs shown in each grid")


class InspectConfig(StrictModel):
    """Settings of ``synthmix inspect``."""

    features: FeatureSpaceConfig = Field(default_factory=FeatureSpaceConfig)
    roles: list[str] = Field(default_factory=lambda: ["in_dist", "near_ood", "unsorted"],
                             description="synthetic roles inspected, each as its own group")
    k: int = Field(5, ge=1, description="neighbours of the k-NN manifolds")
    kid_subsets: int = Field(100, ge=1)
    kid_subset_size: int = Field(1000, ge=2)
    memorisation: MemorisationConfig = Field(default_factory=MemorisationConfig)
    clip_prompt: str = Field("a photo of a {label}", description="text of each class for the CLIP score "
                             "(CLIP-like hf feature spaces only)")
    samples_per_class: int = Field(8, ge=1)
    display_size: int = Field(64, ge=8, le=512, description="side of the images in the PNG grids")
    batch_size: int = Field(128, ge=1)
    device: str = "cpu"
    seed: int = 0


def _rel(path: str | Path, out_dir: Path) -> str:
    return os.path.relpath(Path(path).resolve(), out_dir.resolve())


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def set_metrics(real_f: np.ndarray, fake_f: np.ndarray, logits: np.ndarray, y: np.ndarray,
                cfg: InspectConfig) -> dict[str, Any]:
    """Distribution metrics of one synthetic set vs one real set (features [N, D] / [M, D]),
    plus label agreement (logits [M, C], intended labels [M]). None where a set is too small."""
    from synthmix.diagnostics.diversity import diversity
    from synthmix.diagnostics.fid import fid, kid
    from synthmix.diagnostics.labels import label_agreement
    from synthmix.diagnostics.manifold import prdc

    out: dict[str, Any] = {"n": int(len(fake_f)), "n_real": int(len(real_f))}
    if len(real_f) >= 2 and len(fake_f) >= 2:
        m = prdc(real_f, fake_f, k=cfg.k)
        out.update({k: m[k] for k in ("precision", "recall", "density", "coverage")}, k=m["k"])
        out["fid"] = fid(real_f, fake_f)
        kd = kid(real_f, fake_f, subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size, seed=cfg.seed)
        out.update(kid=kd["kid"], kid_std=kd["kid_std"], kid_subset_size=kd["subset_size"])
    else:
        out.update(dict.fromkeys(("precision", "recall", "density", "coverage", "fid", "kid", "kid_std")))
    out.update(diversity(real_f, fake_f))
    la = label_agreement(logits, y)
    out.update(agreement=la["agreement"], label_confidence=la["label_confidence"])
    return {k: _finite(v) for k, v in out.items()}


def inspect_manifest(manifest: str | Path, run_dir: str | Path, out_dir: str | Path,
                     cfg: InspectConfig | None = None, *, cas_runs: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Diagnostics of the synthetic rows of ``manifest`` (see the module docstring)."""
    from synthmix.core.errors import DataError
    from synthmix.core.io import atomic_write_json
    from synthmix.curation.run import _load_images, scoring_setup
    from synthmix.diagnostics.features import feature_space
    from synthmix.diagnostics.labels import cas_from_run
    from synthmix.diagnostics.memorisation import (
        flags,
        low_res,
        memorisation_summary,
        nearest_cosine,
        nearest_pixels,
    )
    from synthmix.evaluation.features import extract

    cfg = cfg or InspectConfig()
    manifest, out_dir = Path(manifest), Path(out_dir)
    rows, model, run_cfg, classes, size, norm, pre, index, real, real_manifest = scoring_setup(manifest, run_dir)
    split = {s: [r for r in real if r.get("split") == s] for s in ("train", "val", "test")}
    if not split["train"]:
        raise DataError(real_manifest, f"no real train rows of the run's classes {classes}: the "
                        "diagnostics compare synthetic images with the real training images")

    def intended(r):
        return r.get("label") if r.get("label") in index else r.get("parent_label")

    warnings: list[str] = []
    syn_all = [r for r in rows if r.get("source") != "real" and r.get("status") in (None, "ok")]
    syn = [r for r in syn_all if (r.get("role") or "unsorted") in cfg.roles and intended(r) in index]
    if len(syn) < len([r for r in syn_all if (r.get("role") or "unsorted") in cfg.roles]):
        warnings.append("synthetic rows whose class is not a class of the classifier were left out")
    if not syn:
        raise DataError(manifest, f"no synthetic rows with a role in {cfg.roles} and a class of the run "
                        f"{classes} ({len(syn_all)} synthetic rows in all)")

    space = feature_space(cfg.features)
    px_size = min(cfg.memorisation.pixel_size, size)

    def load(rs, name):
        x, bad = _load_images(rs, manifest, size, pre)
        keep = [i for i in range(len(rs)) if i not in bad]
        if bad:
            first = next(iter(bad))
            warnings.append(f"{len(bad)} {name} image(s) could not be read and were left out "
                            f"(first: {rs[first]['path']}: {bad[first]})")
        rs, x = [rs[i] for i in keep], x[keep]
        f, lg = extract(model, x, norm, cfg.batch_size, cfg.device)
        if space.encode is not None:
            xs, _ = _load_images(rs, manifest, space.image_size, pre.model_copy(update={"size": space.image_size}))
            f = space.encode(xs)
        y = np.array([index[r["label"] if name != "synthetic" else intended(r)] for r in rs], np.int64)
        out = {"rows": rs, "x": x, "f": np.asarray(f, np.float32), "logits": lg, "y": y, "px": low_res(x, px_size)}
        if text_f is not None and len(rs):  # CLIP score: 100 * max(cos(image, text of its class), 0)
            fi = out["f"] / np.linalg.norm(out["f"], axis=1, keepdims=True).clip(1e-12)
            out["clip"] = 100.0 * np.clip((fi * text_f[y]).sum(1), 0.0, None)
        return out

    text_f = None
    if space.encode_text is not None:
        text_f = np.asarray(space.encode_text([cfg.clip_prompt.format(label=c) for c in classes]), np.float32)
        text_f = text_f / np.linalg.norm(text_f, axis=1, keepdims=True).clip(1e-12)

    tr, va, te = load(split["train"], "real train"), load(split["val"], "real val"), load(split["test"], "real test")
    sy = load(syn, "synthetic")
    mem = cfg.memorisation

    def nn(q, ref):
        """Nearest ref image by features and by pixels of each query image (None if ref is empty)."""
        if len(ref["rows"]) == 0 or len(q["rows"]) == 0:
            return None
        ic, cos = nearest_cosine(q["f"], ref["f"])
        ip, mad = nearest_pixels(q["px"], ref["px"])
        return {"ic": ic, "cos": cos, "ip": ip, "mad": mad}

    ref_train, ref_test = nn(va, tr), nn(va, te)  # real held-out images: the false-alarm level
    syn_train, syn_test = nn(sy, tr), nn(sy, te)
    if mem.cosine_threshold is not None:
        cos_thr, cos_src = mem.cosine_threshold, "fixed (config)"
    elif ref_train is not None:
        cos_thr = float(np.percentile(ref_train["cos"], mem.cosine_percentile))
        cos_src = (f"calibrated: {mem.cosine_percentile:g}th percentile of the nearest-train cosine of "
                   f"{len(va['rows'])} real validation images")
    else:
        cos_thr, cos_src = mem.fallback_cosine, "fixed fallback (no real validation images)"
        warnings.append("no real validation images: the copy test's cosine threshold is not calibrated")
    for res in (ref_train, ref_test, syn_train, syn_test):
        if res is not None:
            res["flag"] = flags(res["cos"], res["mad"], cos_thr, mem.pixel_threshold)
    role_of = np.array([(r.get("role") or "unsorted") for r in sy["rows"]])
    train_ids = [r["id"] for r in tr["rows"]]
    train_id_set = set(train_ids)

    def mem_block(sel: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, res, ref in (("train", syn_train, ref_train), ("test", syn_test, ref_test)):
            if res is None:
                out[f"memorised_{key}" if key == "train" else "leak_test"] = None
                continue
            s = memorisation_summary(res["cos"][sel], res["mad"][sel], cosine_threshold=cos_thr,
                                     pixel_threshold=mem.pixel_threshold,
                                     ref_cos=None if ref is None else ref["cos"],
                                     ref_mad=None if ref is None else ref["mad"])
            name = "memorised_train" if key == "train" else "leak_test"
            out[name] = _finite(s["share_flagged"])
            out[f"{name}_cosine"] = _finite(s["share_cosine"])
            out[f"{name}_pixel"] = s["share_pixel"]
            out[f"{name}_reference"] = s["reference_share"]
            out[f"median_cosine_{key}"] = _finite(s["median_cosine"])
        parents = [(j, sy["rows"][j].get("parent_id")) for j in np.flatnonzero(sel)]
        parents = [(j, p) for j, p in parents if p in train_id_set]
        out["nearest_is_parent"] = (float(np.mean([train_ids[syn_train["ic"][j]] == p for j, p in parents]))
                                    if parents and syn_train is not None else None)
        return out

    def group_metrics(sel: np.ndarray, q=None) -> dict[str, Any]:
        q = sy if q is None else q
        res: dict[str, Any] = {"overall": {}, "per_class": {}}
        res["overall"] = set_metrics(tr["f"], q["f"][sel], q["logits"][sel], q["y"][sel], cfg)
        if "clip" in q:
            res["overall"]["clip_score"] = float(q["clip"][sel].mean())
        for c, i in index.items():
            cs = sel & (q["y"] == i)
            if not cs.any():
                continue
            res["per_class"][c] = set_metrics(tr["f"][tr["y"] == i], q["f"][cs], q["logits"][cs], q["y"][cs], cfg)
            if "clip" in q:
                res["per_class"][c]["clip_score"] = float(q["clip"][cs].mean())
            if q is sy:
                res["per_class"][c].update(mem_block(cs))
        if q is sy:
            res["overall"].update(mem_block(sel))
        return res

    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, Any] = {}
    for g in [r for r in cfg.roles if (role_of == r).any()]:
        sel = role_of == g
        groups[g] = group_metrics(sel)
        groups[g]["grids"] = _grids(g, sel, sy, tr, te, syn_train, syn_test, classes, cfg, out_dir,
                                    lambda rs: _load_images(rs, manifest, cfg.display_size,
                                                            pre.model_copy(update={"size": cfg.display_size}))[0])
        groups[g]["closest_train"] = _closest(sel, sy, tr, syn_train, mem.pairs)
        groups[g]["closest_test"] = _closest(sel, sy, te, syn_test, mem.pairs)
    reference: dict[str, Any] = {}
    if len(va["rows"]):
        reference["real_val"] = group_metrics(np.ones(len(va["rows"]), bool), va)
        for key, res in (("memorised_train", ref_train), ("leak_test", ref_test)):
            reference["real_val"]["overall"][key] = None if res is None else float(res["flag"].mean())

    cas = None
    if cas_runs:
        per = [cas_from_run(r) for r in cas_runs]
        cas = {"cas": float(np.mean([p["cas"] for p in per])), "per_run": [p["cas"] for p in per],
               "runs": [_rel(r, out_dir) for r in cas_runs],
               "per_class": {c: float(np.mean([p["per_class"][c] for p in per if c in p["per_class"]]))
                             for c in classes if any(c in p["per_class"] for p in per)}}
    _write_nearest(out_dir / "nearest.jsonl", sy, tr, te, syn_train, syn_test, classes)
    result = {
        "files": {"nearest": "nearest.jsonl"},
        "feature_space": {"name": space.name if space.encode is not None else
                          f"classifier penultimate features ({run_cfg.train.model}, {sy['f'].shape[1]}-d)",
                          "kind": cfg.features.kind, "dim": int(sy["f"].shape[1]), "note": NOTE,
                          "clip_prompt": cfg.clip_prompt if text_f is not None else None},
        "pixel_measure": f"mean absolute RGB difference (0-1) at {px_size}x{px_size} of the L2-nearest image",
        "copy_test": {"cosine_threshold": cos_thr, "cosine_threshold_source": cos_src,
                      "pixel_threshold": mem.pixel_threshold, "pixel_size": px_size},
        "manifest": _rel(manifest, out_dir), "classifier_run": _rel(run_dir, out_dir),
        "classes": list(classes), "input_size": size,
        "real": {s: len(d["rows"]) for s, d in (("train", tr), ("val", va), ("test", te))},
        "groups": groups, "reference": reference, "cas": cas, "warnings": warnings,
        "config": cfg.model_dump(mode="json"),
    }
    atomic_write_json(out_dir / "diagnostics.json", result)
    return result


def _write_nearest(path: Path, sy, tr, te, syn_train, syn_test, classes) -> None:
    """One line per inspected synthetic row: its nearest real train / test images and verdicts."""
    from synthmix.core.io import write_jsonl

    pred = sy["logits"].argmax(1) if len(sy["rows"]) else np.zeros(0, np.int64)
    lines = []
    for j, r in enumerate(sy["rows"]):
        line: dict[str, Any] = {"id": r["id"], "role": r.get("role") or "unsorted", "label": classes[sy["y"][j]],
                                "predicted": classes[int(pred[j])]}
        for key, ref, res in (("train", tr, syn_train), ("test", te, syn_test)):
            if res is None:
                continue
            line.update({f"{key}_nearest_feature_id": ref["rows"][res["ic"][j]]["id"],
                         f"{key}_cosine": float(res["cos"][j]),
                         f"{key}_nearest_pixel_id": ref["rows"][res["ip"][j]]["id"],
                         f"{key}_pixel_mad": float(res["mad"][j]), f"{key}_copy": bool(res["flag"][j])})
        lines.append(line)
    write_jsonl(path, lines)


def _closest(sel, sy, ref, res, n: int) -> list[dict[str, Any]]:
    """The ``n`` synthetic rows of ``sel`` closest in pixels to a reference image."""
    if res is None or n == 0:
        return []
    idx = np.flatnonzero(sel)
    idx = idx[np.argsort(res["mad"][idx], kind="stable")][:n]
    return [{"id": sy["rows"][j]["id"], "label": sy["rows"][j].get("label"), "real_id": ref["rows"][res["ip"][j]]["id"],
             "pixel_mad": float(res["mad"][j]), "cosine_nearest": float(res["cos"][j]),
             "flagged": bool(res["flag"][j])} for j in idx]


def _grids(g, sel, sy, tr, te, syn_train, syn_test, classes, cfg, out_dir: Path, load) -> dict[str, str | None]:
    """samples_<g>.png (one row per class) and pairs_<g>_{train,test}.png (synthetic, nearest real in
    pixels, side by side), images re-read at ``cfg.display_size`` by ``load(rows) -> uint8 [N,3,S,S]``."""
    import torch

    from synthmix.curation.grid import save_grid

    grids: dict[str, str | None] = {}
    n = cfg.samples_per_class
    picked: list[int | None] = []
    for i, _ in enumerate(classes):
        idx = list(np.flatnonzero(sel & (sy["y"] == i))[:n])
        if idx:
            picked += idx + [None] * (n - len(idx))
    p = None
    if picked:
        x = load([sy["rows"][j] for j in picked if j is not None])
        blank = torch.full((3, cfg.display_size, cfg.display_size), 255, dtype=torch.uint8)
        it = iter(x)
        tiles = torch.stack([next(it) if j is not None else blank for j in picked])
        p = save_grid(tiles, out_dir / f"samples_{g}.png", nrow=n, max_images=len(tiles))
    grids["samples"] = p.name if p else None
    for key, ref, res in (("train", tr, syn_train), ("test", te, syn_test)):
        if res is None or cfg.memorisation.pairs == 0:
            grids[f"pairs_{key}"] = None
            continue
        idx = np.flatnonzero(sel)
        idx = idx[np.argsort(res["mad"][idx], kind="stable")][:cfg.memorisation.pairs]
        rows = [r for j in idx for r in (sy["rows"][j], ref["rows"][res["ip"][j]])]
        p = save_grid(load(rows), out_dir / f"pairs_{g}_{key}.png", nrow=8, max_images=len(rows))
        grids[f"pairs_{key}"] = p.name if p else None
    return grids


def headline(diag: dict[str, Any], group: str = "in_dist") -> dict[str, float]:
    """Flat {diagnostic: value} of one group's overall numbers (+ CAS): the input of ``relate``."""
    g = diag["groups"].get(group) or {}
    out = {k: v for k, v in (g.get("overall") or {}).items() if k in METRICS and v is not None}
    if diag.get("cas"):
        out["cas"] = diag["cas"]["cas"]
    return out


def headlines(diag_dirs: dict[str, str | Path], group: str = "in_dist") -> dict[str, dict[str, float]]:
    """{setup: headline of the diagnostics.json in its folder}: ``relate``'s first argument when
    each setup (generator, strength, ...) has its own ``inspect_manifest`` output folder."""
    from synthmix.core.io import read_json

    return {k: headline(read_json(Path(d) / "diagnostics.json"), group) for k, d in diag_dirs.items()}


def columns(diag: dict[str, Any]) -> tuple[str, ...]:
    """The METRICS a table shows: the CLIP score only where it was computed."""
    has_clip = any("clip_score" in d["overall"] for d in diag["groups"].values())
    return tuple(m for m in METRICS if m != "clip_score" or has_clip)


def markdown_table(diag: dict[str, Any]) -> str:
    """The per-group, per-class table as markdown (feature space named in the caption)."""
    cols = ("n", *columns(diag))
    lines = [f"Feature space: {diag['feature_space']['name']}. {diag['feature_space']['note']}", "",
             "| set | class | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]

    def fmt(v):
        if v is None:
            return "–"
        return str(v) if isinstance(v, int) else f"{v:.3f}"

    sets = [(g, d) for g, d in diag["groups"].items()] + [(f"{g} (reference)", d)
                                                          for g, d in diag.get("reference", {}).items()]
    for g, d in sets:
        for cls, m in [("all", d["overall"]), *d["per_class"].items()]:
            lines.append(f"| {g} | {cls} | " + " | ".join(fmt(m.get(c)) for c in cols) + " |")
    if diag.get("cas"):
        lines += ["", f"CAS (synthetic-only runs, real test accuracy): {diag['cas']['cas']:.3f} "
                  f"over {len(diag['cas']['per_run'])} run(s)"]
    return "\n".join(lines)
