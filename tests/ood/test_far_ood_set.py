"""The offline far-OOD set: loads without network, deterministic, manifest rows split far_ood."""

from __future__ import annotations

import pytest

from synthmix.data.manifest import read_manifest, resolve_path
from synthmix.evaluation.far_ood import build_far_ood


def test_far_ood_set_written_and_deterministic(tmp_path):
    rows = build_far_ood(tmp_path / "a", size=16, crops_per_image=2, images=("astronaut", "camera"))
    again = build_far_ood(tmp_path / "b", size=16, crops_per_image=2, images=("astronaut", "camera"))
    assert len(rows) == 4 and [r["id"] for r in rows] == [r["id"] for r in again]
    back = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert {r["split"] for r in back} == {"far_ood"} and all(r["label"] is None for r in back)
    from PIL import Image

    with Image.open(resolve_path(tmp_path / "a" / "manifest.jsonl", back[0]["path"])) as im:
        assert im.size == (16, 16) and im.mode == "RGB"


def test_unknown_image_named():
    from synthmix.core.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such_picture"):
        build_far_ood("/nonexistent-never-written", images=("no_such_picture",))
