"""The fruits demo data shipped inside the package (resized copy, with VOC boxes and attribution).

See ``assets/fruits/README.md`` for the source and what was changed; the copy is made by
``scripts/make_bundled_fruits.py``.
"""

from __future__ import annotations

from pathlib import Path

from synthmix.core.errors import DataError

FRUIT_CLASSES = ("apple", "banana", "orange")  # classification classes; "mixed" is near-OOD
NEAR_OOD_CLASS = "mixed"


def fruits_path() -> Path:
    """Root of the bundled fruits ImageFolder: ``train/``, ``test/``, ``annotations/``, ``README.md``."""
    root = Path(__file__).resolve().parent.parent / "assets" / "fruits"
    if not (root / "train").is_dir():
        raise DataError(root, "bundled fruits data is missing (a broken install? reinstall synthmix)")
    return root
