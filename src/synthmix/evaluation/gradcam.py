"""Grad-CAM maps and overlays (pytorch-grad-cam) on a model's ``gradcam_layer()``.

``gradcam_maps(model, x [N,3,H,W] float normalised, targets [N] | None) -> float32 [N,H,W]``
in [0, 1] (each map min-max scaled by pytorch-grad-cam; ``targets=None`` explains the
predicted class). ``gradcam_figure`` writes a PNG grid of overlays for a sample of correct
and wrong predictions per class.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def gradcam_maps(model, x, targets: Sequence[int] | None = None) -> np.ndarray:
    """Grad-CAM of ``model`` for ``x`` [N,3,H,W] (already normalised) -> [N,H,W] in [0, 1]."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = model.training
    model.eval()
    tg = None if targets is None else [ClassifierOutputTarget(int(k)) for k in targets]
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=[model.gradcam_layer()]) as cam:
            maps = cam(input_tensor=x, targets=tg)
    finally:
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def pick_examples(y, pred, n_classes: int, per_class: int = 2, seed: int = 0) -> list[tuple[int, bool]]:
    """Up to ``per_class`` correct and ``per_class`` wrong sample indices per true class,
    drawn with a seeded RNG: [(index, correct), ...] ordered by class."""
    y, pred = np.asarray(y), np.asarray(pred)
    rng = random.Random(seed)
    out: list[tuple[int, bool]] = []
    for k in range(n_classes):
        for correct in (True, False):
            idx = np.flatnonzero((y == k) & ((pred == y) == correct)).tolist()
            out += [(i, correct) for i in sorted(rng.sample(idx, min(per_class, len(idx))))]
    return out


def gradcam_figure(model, x_uint8, y, pred, classes: Sequence[str], path: str | Path, *,
                   normalization: str = "imagenet", per_class: int = 2, seed: int = 0,
                   device: str = "cpu") -> list[dict]:
    """Overlay grid PNG of Grad-CAM (for the predicted class) on sampled correct and wrong
    predictions of each class. Returns one dict per panel (index, true, pred, correct)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from synthmix.data.augment import normalize, to_float
    from synthmix.evaluation.curves import figure, save_figure

    picks = pick_examples(y, pred, len(classes), per_class, seed)
    if not picks:
        return []
    idx = [i for i, _ in picks]
    xs = to_float(x_uint8[idx]).to(device)
    maps = gradcam_maps(model, normalize(xs, normalization), [int(pred[i]) for i in idx])
    rgb = xs.permute(0, 2, 3, 1).cpu().numpy()
    cols = min(len(picks), 2 * per_class)
    rows = int(np.ceil(len(picks) / cols))
    fig, _ = figure((2.0 * cols, 2.2 * rows))
    fig.clf()  # panels are added one by one below
    panels = []
    for j, ((i, correct), m) in enumerate(zip(picks, maps, strict=True)):
        ax = fig.add_subplot(rows, cols, j + 1)
        ax.imshow(show_cam_on_image(rgb[j], m, use_rgb=True, image_weight=0.55))
        ax.set_title(f"{classes[int(y[i])]}→{classes[int(pred[i])]}", fontsize=8,
                     color="green" if correct else "red")
        ax.axis("off")
        panels.append({"index": int(i), "true": classes[int(y[i])], "pred": classes[int(pred[i])],
                       "correct": bool(correct)})
    save_figure(fig, path)
    return panels
