"""Stage keys: a stage's output directory is named by a hash of its resolved config.

The key covers the stage kind, its own resolved settings and the keys of the stages it
reads from, so changing anything upstream changes every key downstream (and only those),
and two cells that need the same upstream work share one directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthmix.core.hashing import config_hash

# Bump when a stage's output layout or meaning changes: old outputs are then not reused.
KEY_VERSION = 1


def stage_key(kind: str, config: Any, deps: Sequence[str] = ()) -> str:
    """``<kind>-<12 hex>`` from the kind, the resolved config and the dependency keys (order kept)."""
    return f"{kind}-" + config_hash({"v": KEY_VERSION, "kind": kind, "config": config, "deps": list(deps)})
