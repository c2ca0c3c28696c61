"""One process of a launcher test: ``torchrun ... world_worker.py OUT_DIR CPU`` (CPU: 1 or 0).

Calls :func:`synthmix.distributed.init_world` and writes ``OUT_DIR/rank{r}.json``; on a
launcher/world-size mismatch the ConfigError propagates (non-zero exit, message on stderr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from synthmix.distributed import init_world

    out, cpu = Path(sys.argv[1]), sys.argv[2] == "1"
    world = init_world(cpu=cpu)
    (out / f"rank{world.rank}.json").write_text(json.dumps({"rank": world.rank, "world_size": world.world_size,
                                                            "device": world.device}))


if __name__ == "__main__":
    from synthmix.distributed import finish

    main()
    finish()
