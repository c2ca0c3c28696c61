"""Run directories: load a finished training run (CE or SupCon) and evaluate it again.

A run directory (``synthmix.training.train.train_run``, ``synthmix.training.supcon_run.supcon_run``)
holds ``config.yaml`` (a TrainRunConfig, portable paths), ``classes.json`` and
``checkpoints/final.pt``. ``load_run_model(run_dir) -> (model, TrainRunConfig, classes)`` rebuilds
the classifier; ``evaluate_run(run_dir, *, split="test" | folder=Path, name=None) -> dict``
evaluates it on a split of its manifest or on another ImageFolder (classes matched by name, see
``evaluation.crossdata``), writing to ``run_dir/eval/<name>/``. Here, not in ``evaluation``, so
that evaluation never imports training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.core.errors import DataError
from synthmix.core.io import read_json
from synthmix.training.train import load_rows, load_run_config


def load_run_model(run_dir: str | Path):
    """(model with final weights, TrainRunConfig, classes) of a finished run."""
    from synthmix.models import create_model
    from synthmix.training.checkpoint import load_weights

    run_dir = Path(run_dir)
    for f in ("config.yaml", "classes.json", "checkpoints/final.pt"):
        if not (run_dir / f).exists():
            raise DataError(run_dir / f, "missing: not a finished training run directory")
    cfg = load_run_config(run_dir)
    classes = read_json(run_dir / "classes.json")
    model = create_model(cfg.train.model, len(classes), **cfg.train.model_args())
    load_weights(run_dir / "checkpoints" / "final.pt", model)
    model.eval()
    return model, cfg, classes


def evaluate_run(run_dir: str | Path, *, split: str = "test", folder: str | Path | None = None,
                 name: str | None = None, gradcam: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a finished run on ``split`` of its manifest, or on the ImageFolder ``folder``."""
    from synthmix.data.tensors import label_tensor, load_tensor
    from synthmix.evaluation.evaluate import evaluate_model

    run_dir = Path(run_dir)
    model, cfg, classes = load_run_model(run_dir)
    size, norm = cfg.train.input_size, cfg.train.normalization
    if folder is not None:
        from synthmix.evaluation.crossdata import evaluate_folder

        return evaluate_folder(model, folder, classes, run_dir / "eval", name=name, input_size=size,
                               normalization=norm, preprocess=cfg.preprocess, gradcam=gradcam,
                               device=device)
    rows = [r for r in load_rows(cfg) if r.get("split") == split and r.get("label") in set(classes)]
    if not rows:
        raise DataError(cfg.manifest or run_dir, f"no rows of split {split!r} with a class of the run "
                        f"({', '.join(classes)})")
    x = load_tensor(rows, cfg.manifest, size, preprocess=cfg.preprocess, cache_dir=cfg.cache_dir)
    y = label_tensor(rows, classes)
    return evaluate_model(model, x, y.numpy(), classes, run_dir / "eval", name=name or split,
                          ids=[r["id"] for r in rows], gradcam=gradcam, normalization=norm, device=device)
