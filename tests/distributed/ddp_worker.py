"""One rank of a data-parallel training test: ``torchrun ... ddp_worker.py OUT_DIR BATCH [KILL_AFTER_EPOCH]``.

Writes ``OUT_DIR/rank{r}.pt`` (final weights) and ``OUT_DIR/rank{r}.json`` (history); the run
directory (checkpoints, TensorBoard) is ``OUT_DIR/run``. ``KILL_AFTER_EPOCH`` exits with
status 3 after that epoch's checkpoint (a simulated crash of every rank).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from dist_helpers import toy_config, toy_data, toy_model  # noqa: E402


def main() -> None:
    import torch

    from synthmix.distributed import init_world
    from synthmix.training.ddp import fit_ddp

    out, batch = Path(sys.argv[1]), int(sys.argv[2])
    kill_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    world = init_world(cpu=True)
    train, val = toy_data()
    cfg = toy_config(batch)
    model = toy_model(cfg)

    def on_epoch_end(epoch, record):
        if kill_after is not None and epoch == kill_after:
            sys.exit(3)

    res = fit_ddp(model, train, val, cfg, out / "run", world=world, progress=False, on_epoch_end=on_epoch_end)
    torch.save(model.state_dict(), out / f"rank{world.rank}.pt")
    (out / f"rank{world.rank}.json").write_text(json.dumps({"history": res.history,
                                                            "resumed": res.resumed_from_epoch,
                                                            "world_size": world.world_size}))


if __name__ == "__main__":
    from synthmix.distributed import finish

    main()
    finish()
