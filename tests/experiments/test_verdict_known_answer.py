"""The whole study path on fixtures whose right answer is known (issue: "a verdict you can trust").

Each class is made of 4 visual modes (a disc of a mode-specific colour); every image, train, test
or held out, shows a mode drawn at random, so a few images per class cover only some modes and
accuracy rises with the number of real images. Two registered test backends feed the study's
generator slot:

- ``heldout_copies``: one child per real image that is another *real* image of the same class drawn
  the same way — exactly as good as more real data: the verdict must be "helps", worth more than
  the real set per class (beyond the measured range: flagged as extrapolated);
- ``noise``: uniform noise images: "no detectable effect" or "hurts".
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import Field

from synthmix.core.config import StrictModel

CLASSES = ("a", "b", "c")
MODES = 4
rng = np.random.default_rng(7)
COLOURS = rng.integers(20, 236, size=(len(CLASSES), MODES, 3))


def mode_image(c: int, mode: int, seed: int, size: int = 24):
    r = np.random.default_rng(seed)
    img = r.integers(200, 256, size=(size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (xx - size / 2 + r.uniform(-2, 2)) ** 2 + (yy - size / 2 + r.uniform(-2, 2)) ** 2 < (size * 0.45) ** 2
    img[mask] = np.clip(COLOURS[c, mode] + r.integers(-12, 12, 3), 0, 255)
    return img


class FixtureConfig(StrictModel):
    kind: str = Field("copies")


class FixtureGenerator:
    def __init__(self, kind: str):
        self.name = kind

    def render(self, rows):
        out = []
        for r in rows:
            if self.name == "noise":
                out.append(np.random.default_rng(r["seed"]).integers(0, 256, (24, 24, 3), dtype=np.uint8))
            else:  # another real image of the parent's class, its mode drawn like every real image's
                c = CLASSES.index(r["label"])
                mode = int(np.random.default_rng(10_000 + r["seed"]).integers(MODES))
                out.append(mode_image(c, mode, 10_000 + r["seed"]))
        return out


def _build(kind):
    def build(cfg, real_rows, manifest_path, out_dir):
        from synthmix.generation.protocol import planned_id

        planned = []
        for i, p in enumerate(sorted(real_rows, key=lambda r: r["id"])):
            planned.append({"id": planned_id(kind, p["id"]), "label": p["label"], "split": "train",
                            "source": kind, "role": "in_dist", "parent_id": p["id"],
                            "parent_label": p["label"], "seed": 100 * i + len(kind), "method": kind,
                            "generator": kind})
        return FixtureGenerator(kind), planned
    return build


def _dataset(root):
    from PIL import Image

    seed = 0
    for split, n in (("train", 5), ("test", 30)):
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for _ in range(n):
                seed += 1
                m = int(np.random.default_rng(seed).integers(MODES))
                Image.fromarray(mode_image(c, m, seed)).save(d / f"{m}_{seed}.png")
    return root


@pytest.mark.slow
def test_copies_of_real_images_help_and_noise_does_not(tmp_path):
    from synthmix.experiments.load import parse_study
    from synthmix.experiments.runner import run_study
    from synthmix.generation.registry import register_backend

    register_backend("heldout_copies", FixtureConfig, _build("heldout_copies"))
    register_backend("noise", FixtureConfig, _build("noise"))
    data = _dataset(tmp_path / "data")
    study = {
        "name": "known-answer", "dataset": {"path": str(data), "val_fraction": 0.25, "near_ood_class": None},
        "preprocessing": {"image_size": 16, "augment": {}},
        "generators": {"copies": {"type": "heldout_copies"}, "noise": {"type": "noise"}},
        "curation": {"enabled": False},
        "budget": {"epochs_over_real": 150},
        "training": {"batch_size": 8, "lr": 0.01},
        "controls": {"augment": False, "real_fractions": [0.25, 0.5]},
        "verdict": {"bootstrap": 2000, "min_seeds": 3},
        "models": [{"name": "tiny_cnn", "args": {"width": 8}}],
        "setups": [{"name": "real"},
                   {"name": "real+copies", "generator": "copies", "mix": {"kind": "per_real", "k": 1}},
                   {"name": "real+noise", "generator": "noise", "mix": {"kind": "per_real", "k": 1}}],
        "seeds": [0, 1, 2, 3, 4], "threads": 1,
        "evaluation": {"near_ood": False, "far_ood": False, "gradcam": False},
    }
    summary = run_study(parse_study(study), tmp_path / "run", verbose=False)
    assert not summary["incomplete"], summary["incomplete"]
    comps = {c["setup"]: c for c in summary["verdict"]["comparisons"]}
    assert comps["real+copies"]["verdict"] == "helps", comps["real+copies"]
    assert comps["real+noise"]["verdict"] in ("no detectable effect", "hurts"), comps["real+noise"]
    per_class = np.mean(list(summary["data"]["real_train_counts"].values()))
    worth = summary["verdict"]["worth"]["real+copies|tiny_cnn"]
    # copies of held-out real images: worth more than the real set, beyond the measured range (flagged
    # as extrapolated). The log-linear fit over a 1-4 images-per-class curve overshoots "twice the
    # real set" (measured: ~50 per class for 4 real + 4 copies): only the direction and the flag are
    # asserted, the size is not calibrated at such small n.
    assert worth["worth"] is not None and worth["worth"] > 1.3 * per_class and worth["extrapolated"], worth
    noise = summary["verdict"]["worth"].get("real+noise|tiny_cnn", {})
    assert noise.get("worth") is None or noise["worth"] < 1.3 * per_class
