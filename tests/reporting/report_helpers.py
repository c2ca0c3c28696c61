"""A run directory of saved results for report tests: a real scan, saved cell metrics and figures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))

from study_helpers import study_dict, tiny_dataset  # noqa: E402

from synthmix.core.io import atomic_write_json  # noqa: E402
from synthmix.experiments.executor import DONE, execute, stage_dir  # noqa: E402
from synthmix.experiments.load import parse_study  # noqa: E402
from synthmix.experiments.runner import prepare  # noqa: E402


def save_png(path: Path, colour: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 0.2, 1], [0, 0.8, 1], color=colour)
    fig.savefig(path)
    plt.close(fig)


def saved_run(tmp_path: Path) -> Path:
    """Setups real (reference) and real-long over seeds 0-2; seed 2 of real-long failed."""
    data = tiny_dataset(tmp_path / "data", per_class=3, test_per_class=1)
    d = study_dict(data, seeds=[0, 1, 2])
    d["setups"].append({"name": "real-long", "training": {"lr": 0.01}})
    d["evaluation"] = {"far_ood": True, "gradcam": True}
    cfg, plan, run = prepare(parse_study(d), tmp_path / "run")
    execute(run, [plan.shared["scan"]])  # the real scan: the report shows its data summary and samples
    for i, c in enumerate(plan.cells):
        if c.cell.id == "real-long/tiny_cnn/s2":
            d = stage_dir(run, c.train.key)
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_json(d / "failed.json", {"message": "TrainingError: non-finite loss"})
            continue
        td = stage_dir(run, c.train.key)
        save_png(td / "run" / "eval" / "test" / "roc.png", "C0")
        save_png(td / "run" / "eval" / "test" / "confusion.png", "C1")
        save_png(td / "run" / "eval" / "test" / "gradcam.png", "C2")
        save_png(td / "run" / "eval" / "val" / "roc.png", "C3")  # val figures are left out
        save_png(td / "run" / "far_ood" / "images" / "crop_00.png", "C5")  # data a stage keeps, not a figure
        atomic_write_json(td / DONE, {"summary": {"run": "run"}})
        ed = stage_dir(run, c.evaluate.key)
        save_png(ed / "ood_hist.png", "C4")
        long = c.cell.setup.name == "real-long"
        atomic_write_json(ed / "metrics.json", {
            "test/accuracy": 0.70 + 0.05 * c.cell.seed + (0.04 if long else 0.0),
            "test/macro_f1": 0.60 + 0.01 * i,
            "test/roc_auc": 0.9 - 0.01 * c.cell.seed,
            "ood/near_ood/energy/auroc": 0.6 + 0.02 * c.cell.seed,
            "ood/near_ood/energy/fpr95": 0.8 - (0.1 if long else 0.0) + 0.01 * c.cell.seed,
            "ood/far_ood/energy/auroc": 0.7, "ood/far_ood/energy/fpr95": 0.5})
        atomic_write_json(ed / DONE, {"summary": {}})
    return run
