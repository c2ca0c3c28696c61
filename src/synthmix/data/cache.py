"""Decode + preprocess each image once; later calls (epochs, runs, stages) read uint8 arrays.

Layout: ``cache_dir/<preprocess hash>/<row id>-<sha256[:8]>.npy``, one uint8 array
[size, size, 3] per image, written atomically, plus ``config.json`` (the preprocessing
config, for humans). The key is content + settings: a real row's id is its content
hash, and the sha256 part catches a synthetic row whose file was regenerated under the
same id. Per-image files (rather than one array per set) let any subset, split or
mixture of rows share the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from synthmix.core.errors import DataError
from synthmix.core.paths import safe_join
from synthmix.data.preprocess import PreprocessConfig, preprocess_row


def cache_key(row: dict[str, Any]) -> str:
    """File stem of a row's cached array."""
    if not row.get("id"):
        raise DataError(row.get("path", "?"), "manifest row has no id; cannot cache it")
    sha = row.get("sha256")
    return f"{row['id']}-{sha[:8]}" if sha else str(row["id"])


def cache_folder(cache_dir: str | Path, cfg: PreprocessConfig) -> Path:
    return Path(cache_dir) / cfg.hash()


def load_array(row: dict[str, Any], manifest_path: str | Path | None, cfg: PreprocessConfig,
               folder: Path | None = None):
    """uint8 [size, size, 3] for one row: from ``folder`` if cached there, else decoded (and stored)."""
    import numpy as np

    from synthmix.core.io import atomic_open

    if folder is None:
        return preprocess_row(row, manifest_path, cfg)
    f = safe_join(folder, f"{cache_key(row)}.npy")  # the id comes from a manifest: stay in the cache
    if f.is_file():
        try:
            a = np.load(f, allow_pickle=False)
            if a.shape == (cfg.size, cfg.size, 3) and a.dtype == np.uint8:
                return a
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    a = preprocess_row(row, manifest_path, cfg)
    with atomic_open(f, "wb") as fh:
        np.save(fh, a, allow_pickle=False)
    return a


def load_tensor(rows: Sequence[dict[str, Any]], manifest_path: str | Path | None, size: int, *,
                preprocess: PreprocessConfig | None = None, cache_dir: str | Path | None = None,
                workers: int | None = None):
    """uint8 tensor [N, 3, size, size] of the rows' images, in row order.

    ``size`` overrides ``preprocess.size``. With ``cache_dir`` each image is decoded once
    and read back from the cache by every later call. Decoding uses ``workers`` threads
    (default: up to 4); Pillow releases the GIL while decoding and resizing.
    """
    import os

    import numpy as np
    import torch

    cfg = (preprocess or PreprocessConfig(size=size))
    if cfg.size != size:
        cfg = cfg.model_copy(update={"size": size})
    folder = None
    if cache_dir is not None:
        folder = cache_folder(cache_dir, cfg)
        _write_config(folder, cfg)
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    n_workers = workers or min(4, os.cpu_count() or 1)

    def one(i: int) -> None:
        out[i] = load_array(rows[i], manifest_path, cfg, folder)

    if n_workers <= 1 or len(rows) < 8:
        for i in range(len(rows)):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(one, range(len(rows))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _write_config(folder: Path, cfg: PreprocessConfig) -> None:
    from synthmix.core.io import atomic_write_json

    f = folder / "config.json"
    if not f.is_file():
        atomic_write_json(f, cfg.model_dump(mode="json"))
