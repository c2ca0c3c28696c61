"""Safety: manifest/config values never make synthmix write outside its directories, and model
files are loaded without executing pickled code.

The static check walks the source of ``synthmix`` (AST, not grep) for loaders that can run
pickled code: ``torch.load`` without ``weights_only=True``, ``pickle`` / ``dill`` / ``joblib``
loads, ``np.load(allow_pickle=True)``, ``yaml.load`` / ``unsafe_load``, ``trust_remote_code=True``,
``eval`` / ``exec`` of text, and ``shell=True``.
"""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from synthmix.core.errors import SynthmixError

SRC = Path(__file__).resolve().parents[2] / "src" / "synthmix"


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(root: Path = SRC) -> list[str]:
    """``file:line: what`` for every call that could execute pickled or remote code."""
    found = []
    for f in sorted(root.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
            where = f"{f.relative_to(root.parent)}:{node.lineno}"
            if owner == "torch" and name == "load" and not _is_true(_kw(node, "weights_only")):
                found.append(f"{where}: torch.load without weights_only=True")
            elif owner in ("pickle", "dill", "cloudpickle", "joblib") and name in ("load", "loads"):
                found.append(f"{where}: {owner}.{name}")
            elif owner in ("np", "numpy") and name == "load" and _is_true(_kw(node, "allow_pickle")):
                found.append(f"{where}: np.load(allow_pickle=True)")
            elif owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
                found.append(f"{where}: yaml.{name}")
            elif _is_true(_kw(node, "trust_remote_code")):
                found.append(f"{where}: trust_remote_code=True")
            elif _is_true(_kw(node, "shell")):
                found.append(f"{where}: shell=True")
            elif isinstance(fn, ast.Name) and name in ("eval", "exec"):
                found.append(f"{where}: {name}()")
    return found


def test_no_loader_can_execute_pickled_or_remote_code():
    assert unsafe_loads() == []


def test_the_static_check_finds_what_it_looks_for(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text(
        "import torch, pickle, numpy as np, yaml\n"
        "torch.load('a')\n"
        "torch.load('a', weights_only=False)\n"
        "torch.load('a', weights_only=True)\n"
        "pickle.loads(b'')\n"
        "np.load('x', allow_pickle=True)\n"
        "np.load('x')\n"
        "yaml.load('x')\n"
        "yaml.safe_load('x')\n"
        "eval('1')\n")
    found = unsafe_loads(tmp_path / "pkg")
    assert [f.split(": ", 1)[1] for f in found] == [
        "torch.load without weights_only=True", "torch.load without weights_only=True", "pickle.loads",
        "np.load(allow_pickle=True)", "yaml.load", "eval()"]


class _Evil:
    """Unpickling this runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("loader", ["training", "embedded", "backbone_weights"])
def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, loader):
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Evil(marker), "state_dict": _Evil(marker)}, evil, pickle_module=pickle)
    if loader == "training":
        from synthmix.training.checkpoint import load_checkpoint as load
    elif loader == "embedded":
        from synthmix.generation.embedded.checkpoint import load_state as load
    else:
        from synthmix.models.builtin import _load_state_dict as load
    with pytest.raises(Exception) as info:
        load(evil)
    assert "weights only" in str(info.value).lower() or "weights_only" in str(info.value).lower()
    assert not marker.exists()
    assert isinstance(info.value, SynthmixError) and str(evil) in str(info.value)


def _writer(tmp_path):
    from synthmix.generation.writer import ImageWriter

    return ImageWriter(tmp_path / "run" / "gen" / "manifest.jsonl")


def _picture():
    return np.random.default_rng(0).random((8, 8, 3))


@pytest.mark.parametrize("label", ["../../outside", "/tmp/abs-label", "a/../../../x"])
def test_generated_image_cannot_escape_through_its_label(tmp_path, label):
    writer = _writer(tmp_path)
    with pytest.raises(SynthmixError, match="escapes its root|absolute path is not allowed"):
        writer.write(dict(id="ab12", label=label, split="train", source="t", seed=0), _picture())
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert all((tmp_path / "run") in p.parents for p in written)
    assert not (tmp_path / "run" / "gen" / "manifest.jsonl").exists()  # no row for an image not written
    assert not Path("/tmp/abs-label").exists()


def test_generated_image_cannot_escape_through_its_id(tmp_path):
    writer = _writer(tmp_path)
    with pytest.raises(SynthmixError, match="escapes its root"):
        writer.write(dict(id="../../../../evil", label="apple", split="train", source="t", seed=0), _picture())
    assert not list(tmp_path.rglob("evil.png"))


def test_a_label_with_a_subfolder_stays_inside(tmp_path):
    writer = _writer(tmp_path)
    row = writer.write(dict(id="ab12", label="fruit/apple", split="train", source="t", seed=0), _picture())
    assert row["path"] == "images/fruit/apple/ab12.png"
    assert (tmp_path / "run" / "gen" / row["path"]).is_file()


def test_cache_entry_cannot_escape_through_a_manifest_id(tmp_path):
    from conftest import make_image
    from synthmix.data.cache import load_array
    from synthmix.data.preprocess import PreprocessConfig

    make_image((200, 30, 30)).save(tmp_path / "x.png")
    row = {"id": "../../../escaped", "path": str(tmp_path / "x.png")}
    cache = tmp_path / "deep" / "er" / "cache"
    with pytest.raises(SynthmixError, match="escapes its root"):
        load_array(row, None, PreprocessConfig(size=8), folder=cache)
    assert not list(tmp_path.rglob("escaped*"))


def test_symlink_inside_the_root_pointing_out_is_refused(tmp_path):
    from synthmix.core.paths import safe_join

    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "root" / "link")
    assert safe_join(tmp_path / "root", "a/b.png") == (tmp_path / "root" / "a" / "b.png").resolve()
    with pytest.raises(SynthmixError, match="escapes its root"):
        safe_join(tmp_path / "root", "link/x.png")


def test_audit_flags_a_manifest_path_that_escapes(tmp_path):
    import json

    from synthmix.audit import audit_run

    (tmp_path / "run").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "run" / "manifest.jsonl").write_text(json.dumps({"id": "a", "path": "../secret.png"}) + "\n")
    problems = [str(p) for p in audit_run(tmp_path / "run")[0]]
    assert problems == [f"{tmp_path / 'run' / 'manifest.jsonl'}: row a: path ../secret.png escapes the run dir"]
