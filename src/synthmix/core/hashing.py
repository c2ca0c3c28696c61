"""Content hashes (image ids) and config hashes (run ids)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def short_id(full_hash: str, n: int = 16) -> str:
    """Manifest ids are the first ``n`` hex digits of a sha256 (64 bits: no practical collisions)."""
    return full_hash[:n]


def config_hash(obj: Any, n: int = 12) -> str:
    """A stable hash of a JSON-able config (key order does not matter)."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]
