"""Study configs over the tiny ImageFolder of tests/conftest.py (plus a `mixed` near-OOD folder)."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import make_imagefolder


def tiny_dataset(root: Path, per_class: int = 6, test_per_class: int = 3) -> Path:
    return make_imagefolder(root, per_class={"apple": per_class, "banana": per_class, "orange": per_class,
                                             "mixed": 3}, test_per_class=test_per_class, size=(24, 20))


def study_dict(data_root: Path, seeds=(0, 1), **over) -> dict:
    """A real-only CE study on the tiny folder: tiny_cnn, 1 epoch, near-OOD = mixed, no far-OOD."""
    d = {
        "name": "tiny",
        "dataset": {"path": str(data_root), "val_fraction": 0.2},
        "preprocessing": {"image_size": 16},
        "training": {"epochs": 1, "batch_size": 8},
        "models": [{"name": "tiny_cnn", "args": {"width": 4}}],
        "setups": [{"name": "real"}],
        "seeds": list(seeds),
        "curation": {"enabled": False},
        "evaluation": {"far_ood": False, "gradcam": False},
    }
    for k, v in over.items():
        d[k] = v
    return d


def write_study(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path





