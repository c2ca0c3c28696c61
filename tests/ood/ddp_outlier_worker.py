"""One rank of the data-parallel outlier test: ``torchrun ... ddp_outlier_worker.py OUT_DIR BATCH LOSS``.

Trains the toy model of tests/distributed with outliers (``loss`` oe or energy) and writes
``OUT_DIR/rank{r}.pt`` (final weights) and ``OUT_DIR/rank{r}.json`` (history)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))

from dist_helpers import toy_config, toy_data, toy_model  # noqa: E402


def outliers_and_loss(loss: str):
    import torch

    from synthmix.training.outliers import OutlierLossConfig

    g = torch.Generator().manual_seed(11)
    x = torch.randint(0, 256, (17, 3, 16, 16), dtype=torch.uint8, generator=g)
    return x, OutlierLossConfig(loss=loss, weight=1.0, m_in=-4.0, m_out=-1.0)


def main() -> None:
    import torch

    from synthmix.distributed import init_world
    from synthmix.training.ddp import fit_ddp

    out, batch, loss = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    world = init_world(cpu=True)
    train, val = toy_data()
    cfg = toy_config(batch)
    model = toy_model(cfg)
    x_out, ol = outliers_and_loss(loss)
    res = fit_ddp(model, train, val, cfg, None, world=world, progress=False, outliers=x_out, outlier_loss=ol)
    torch.save(model.state_dict(), out / f"rank{world.rank}.pt")
    (out / f"rank{world.rank}.json").write_text(json.dumps({"history": res.history}))


if __name__ == "__main__":
    from synthmix.distributed import finish

    main()
    finish()
