"""Class fidelity of generated images, measured with classifiers trained here.

* a classifier trained on the real train images labels the real test images (baseline) and
  the generated images (class fidelity: the fraction it labels as the class they were made for),
  per class and, for img2img, per strength;
* a classifier trained on generated samples only is scored on the real test images, and one
  trained on img2img variants (chosen in-dist strength) of every real train image;
* img2img similarity to the parent: mean absolute pixel change (images in [0, 1]) and the cosine
  similarity of the real classifier's features.

The classifier is the fruit study's ``small_cnn`` with flips and small crops, trained by a short
self-contained loop (kept small: this module measures the generator, it is not the training stage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from synthmix.core.seeding import derive_seed
from synthmix.data.augment import AugmentConfig

CLASSIFIER_AUGMENT = AugmentConfig(hflip=0.5, crop_scale=(0.75, 1.0), brightness=0.1, contrast=0.1)


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int = 40,
                     batch_size: int = 32, lr: float = 1e-3, seed: int = 0):
    """small_cnn trained on uint8 images x [N, 3, S, S] with labels y [N]; returned in eval mode."""
    from synthmix.data.augment import augment_batch
    from synthmix.models import create_model

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the model's initial weights
    model = create_model("small_cnn", num_classes, input_size=x.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=total)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            xb = augment_batch(x[idx], CLASSIFIER_AUGMENT, gen) * 2 - 1
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 or [0, 1] float images [N, 3, S, S] -> (predicted labels [N], features [N, D])."""
    preds, feats = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        xb = (xb.float() / 255.0 if xb.dtype == torch.uint8 else xb.float()) * 2 - 1
        f = model.forward_features(xb)
        preds.append(model.forward_head(f).argmax(1))
        feats.append(f)
    return torch.cat(preds), torch.cat(feats)


def accuracy_report(pred: torch.Tensor, y: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """{"accuracy": float, "per_class": {class: accuracy}, "n": int}."""
    per = {c: round(float((pred[y == i] == i).float().mean()), 4) for i, c in enumerate(classes)
           if (y == i).any()}
    return {"accuracy": round(float((pred == y).float().mean()), 4), "per_class": per, "n": int(len(y))}


def to_uint8_tensor(images: Sequence[Any]) -> torch.Tensor:
    """Rendered [S, S, 3] float arrays in [0, 1] -> uint8 [N, 3, S, S] (as saved to PNG)."""
    import numpy as np

    from synthmix.generation.writer import to_uint8

    return torch.from_numpy(np.stack([to_uint8(a) for a in images])).permute(0, 3, 1, 2).contiguous()


def render_all(generator, rows: Sequence[dict[str, Any]], batch_size: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(rows), batch_size):
        out.append(to_uint8_tensor(generator.render(rows[i:i + batch_size])))
    return torch.cat(out)


def sample_quality(gen, real_clf, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor,
                   per_class: int = 100, guidance: float = 2.0, steps: int = 25, sampler: str = "ddim",
                   seed: int = 0, classifier_epochs: int = 40) -> dict[str, Any]:
    """Pure class-conditional samples (``per_class`` per class) of ``gen`` (an EmbeddedGenerator):

    * ``fidelity``: the real-trained ``real_clf`` labelling them;
    * ``synthetic_only_real_train``: a classifier trained on them alone, scored on the real train
      images xtr/ytr (uint8 [N, 3, S, S]) -- a selection score that never looks at the test split
      (optimistic: the generator learnt from these images);
    * ``synthetic_only_real_test``: the same classifier on the real test images xte/yte.
    """
    from synthmix.data.tensors import label_tensor
    from synthmix.generation.embedded.backend import plan_rows
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig

    loaded, classes = gen.loaded, gen.loaded.classes
    cfg = EmbeddedGenerateConfig(checkpoint=str(loaded.checkpoint), per_class=per_class, guidance=guidance, steps=steps,
                                 sampler=sampler, seed=seed, precision=getattr(gen, "precision", "fp32"))
    planned = plan_rows(cfg, loaded)
    t0 = time.perf_counter()
    xs = render_all(gen, planned)
    dt = time.perf_counter() - t0
    ys = label_tensor(planned, classes)
    out: dict[str, Any] = {"per_class_samples": per_class, "sampling_img_per_s": round(len(planned) / dt, 2),
                           "fidelity": accuracy_report(predict(real_clf, xs)[0], ys, classes)}
    syn_clf = train_classifier(xs, ys, len(classes), epochs=classifier_epochs, seed=seed)
    out["synthetic_only_real_train"] = accuracy_report(predict(syn_clf, xtr)[0], ytr, classes)
    out["synthetic_only_real_test"] = accuracy_report(predict(syn_clf, xte)[0], yte, classes)
    return out


def real_split_tensors(manifest: str, classes: Sequence[str], resolution: int):
    """The manifest's real train and test images of ``classes`` at ``resolution``.

    Returns ``(train_rows, (x_train uint8 [N,3,R,R], y_train [N]), (x_test, y_test))``.
    """
    from synthmix.data.manifest import read_manifest, train_rows
    from synthmix.data.tensors import label_tensor, load_tensor

    rows = read_manifest(manifest)
    train = [r for r in train_rows(rows) if r["label"] in classes]
    test = [r for r in rows if r.get("split") == "test" and r.get("source") == "real" and r["label"] in classes]
    return (train, (load_tensor(train, manifest, resolution), label_tensor(train, classes)),
            (load_tensor(test, manifest, resolution), label_tensor(test, classes)))


def measure_fidelity(checkpoint: str, manifest: str, per_class: int = 100,
                     strengths: Sequence[float] = (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                     parents_per_class: int | None = None, guidance: float = 2.0, steps: int = 25,
                     sampler: str = "ddim", seed: int = 0, classifier_epochs: int = 40,
                     device: str = "cpu", img2img_synthetic_only: bool = True,
                     precision: str = "fp32") -> dict[str, Any]:
    """The whole measurement as a JSON-able dict (see module doc). Real test rows: split "test".

    ``precision``: of the generator's sampling (fp32 or bf16); the judging classifiers are fp32."""
    from synthmix.core.errors import ConfigError, DataError
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.generation.embedded.backend import EmbeddedGenerator, plan_rows
    from synthmix.generation.embedded.checkpoint import load_generator
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig

    for name, value in (("per_class", per_class), ("classifier_epochs", classifier_epochs)):
        if value < 1:  # zero samples / epochs: empty tensors and a zero-step schedule further down
            raise ConfigError(f"fidelity: {name} must be >= 1, got {value}")
    t_start = time.perf_counter()
    loaded = load_generator(checkpoint, device=device)
    classes, res = loaded.classes, loaded.resolution
    train, (xtr, ytr), (xte, yte) = real_split_tensors(manifest, classes, res)
    for split, y in (("train", ytr), ("test", yte)):
        if len(y) == 0:
            raise DataError(manifest, f"no real {split} images of the generator's classes {classes}: "
                                      "fidelity is measured against real train and test images")
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "checkpoint_sha": loaded.checkpoint,
                              "generator_steps_trained": loaded.step, "resolution": res, "classes": classes,
                              "sampler": sampler, "sampling_steps": steps, "guidance": guidance,
                              "sampling_precision": precision}

    t0 = time.perf_counter()
    real_clf = train_classifier(xtr, ytr, len(classes), epochs=classifier_epochs, seed=seed)
    report["real_classifier_train_s"] = round(time.perf_counter() - t0, 1)
    report["real_test"] = accuracy_report(predict(real_clf, xte)[0], yte, classes)

    gen = EmbeddedGenerator(loaded, sampler, {r["id"]: r for r in train}, manifest, precision=precision)
    report.update(sample_quality(gen, real_clf, xtr, ytr, xte, yte, per_class=per_class, guidance=guidance,
                                 steps=steps, sampler=sampler, seed=seed, classifier_epochs=classifier_epochs))

    # img2img strength sweep over the real train images (the only allowed parents).
    by_id = sorted(train, key=lambda r: r["id"])
    parents = [r for c in classes for r in [p for p in by_id if p["label"] == c][:parents_per_class]]
    xp = load_tensor(parents, manifest, res)
    yp = label_tensor(parents, classes)
    _, fp = predict(real_clf, xp)
    sweep = []
    for s in strengths:
        scfg = EmbeddedGenerateConfig(checkpoint=str(checkpoint), img2img_per_parent=1, in_dist_strengths=[s],
                                      near_ood_strengths=[], guidance=guidance, steps=steps, sampler=sampler,
                                      seed=seed, precision=precision)
        planned = plan_rows(scfg, loaded, parents)
        xi = render_all(gen, planned)
        pi, fi = predict(real_clf, xi)
        change = (xi.float() - xp.float()).abs().mean(dim=(1, 2, 3)) / 255.0
        cos = F.cosine_similarity(fi, fp, dim=1)
        sweep.append({"strength": s, **accuracy_report(pi, yp, classes),
                      "mean_abs_change": round(float(change.mean()), 4),
                      "feature_cosine": round(float(cos.mean()), 4)})
    report["strength_sweep"] = sweep
    report["chosen_strengths"] = pick_strengths(sweep)

    # Synthetic-only, DA-Fusion style: one img2img variant of every real train image at the chosen
    # in-dist strength (every training pixel generated; the parents' layouts carried over).
    s_in = report["chosen_strengths"]["in_dist"]
    if img2img_synthetic_only and s_in is not None:
        scfg = EmbeddedGenerateConfig(checkpoint=str(checkpoint), img2img_per_parent=1, in_dist_strengths=[s_in],
                                      near_ood_strengths=[], guidance=guidance, steps=steps, sampler=sampler,
                                      seed=derive_seed(seed, "img2img-synthetic-only"), precision=precision)
        planned = plan_rows(scfg, loaded, train)
        xi = render_all(gen, planned)
        clf = train_classifier(xi, label_tensor(planned, classes), len(classes), epochs=classifier_epochs,
                               seed=seed)
        report["img2img_only_real_test"] = {"strength": s_in,
                                            **accuracy_report(predict(clf, xte)[0], yte, classes)}
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    return report


def pick_strengths(sweep: Sequence[dict[str, Any]], min_change_in_dist: float = 0.08,
                   min_fidelity_in_dist: float = 0.95, min_cosine_in_dist: float = 0.8) -> dict[str, float | None]:
    """Choose strengths from a measured sweep.

    in_dist: the largest strength whose images keep their class (fidelity ≥
    ``min_fidelity_in_dist``) and stay variants of their parent (feature cosine ≥
    ``min_cosine_in_dist``) while visibly differing from it (mean change ≥ ``min_change_in_dist``);
    without a visible change, the largest strength meeting the other two; failing those, the
    smallest strength. near_ood: the smallest strength above it whose fidelity has fallen at least
    half-way from the in-dist fidelity to the lowest fidelity of the sweep (the largest strength
    if none falls).
    """
    rows = sorted(sweep, key=lambda r: r["strength"])
    if not rows:
        return {"in_dist": None, "near_ood": None}
    ok = [r for r in rows if r["accuracy"] >= min_fidelity_in_dist
          and r.get("feature_cosine", 1.0) >= min_cosine_in_dist]
    visible = [r for r in ok if r["mean_abs_change"] >= min_change_in_dist]
    pick = (visible or ok or rows[:1])[-1]
    floor = min(r["accuracy"] for r in rows)
    target = pick["accuracy"] - 0.5 * (pick["accuracy"] - floor)
    near = [r for r in rows if r["strength"] > pick["strength"] and r["accuracy"] <= target]
    return {"in_dist": pick["strength"], "near_ood": near[0]["strength"] if near else rows[-1]["strength"]}
