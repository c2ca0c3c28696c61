import json

import pytest

from synthmix.core.config import StrictModel, parse_config
from synthmix.core.errors import ConfigError, SynthmixError
from synthmix.core.hashing import config_hash
from synthmix.core.io import append_jsonl, atomic_path, atomic_write_json, read_jsonl
from synthmix.core.paths import safe_join


def test_atomic_path_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_read_jsonl_ignores_torn_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, [{"id": "a"}, {"id": "b"}])
    with open(p, "a") as fh:
        fh.write('{"id": "c", "pa')  # a writer killed mid-line
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b"]
    append_jsonl(p, [{"id": "d"}])  # the next append starts a clean line
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b", "d"]


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_strict_config_names_the_field():
    class Cfg(StrictModel):
        steps: int
        strength: float = 0.5

    with pytest.raises(ConfigError, match="stepz"):
        parse_config(Cfg, {"steps": 1, "stepz": 2}, source="x.yaml")
    with pytest.raises(ConfigError, match=r"x.yaml[\s\S]*steps"):
        parse_config(Cfg, {"steps": "many"}, source="x.yaml")


def test_safe_join_refuses_escape(tmp_path):
    assert safe_join(tmp_path, "a/b.png") == (tmp_path / "a/b.png").resolve()
    with pytest.raises(SynthmixError, match="escapes"):
        safe_join(tmp_path, "../outside.png")
    with pytest.raises(SynthmixError, match="absolute"):
        safe_join(tmp_path, "/etc/passwd")


def test_atomic_files_honour_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
