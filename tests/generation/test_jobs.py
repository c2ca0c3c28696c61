"""The generic generation job (any backend): train-only input, resume, sharding, config errors, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from sd_helpers import real_manifest

from synthmix.core.errors import ConfigError, DataError
from synthmix.core.io import read_jsonl
from synthmix.data.manifest import read_manifest, write_manifest
from synthmix.generation.jobs import GenerateConfig, load_generate_config, run_generate
from synthmix.generation.protocol import planned_id
from synthmix.generation.registry import register_backend
from synthmix.generation.sd.config import StrictModel

SEEN: dict[str, list] = {}


class FakeConfig(StrictModel):
    per_real: int = 2


class FakeGenerator:
    """Grey-level noise images; ``render`` records its batch sizes."""

    name = "fake-test"

    def __init__(self):
        self.batches = []

    def render(self, rows):
        self.batches.append(len(rows))
        return [np.random.default_rng(r["seed"]).integers(0, 255, (8, 8, 3), dtype=np.uint8) for r in rows]


def build_fake(cfg, real_rows, manifest_path, out_dir):
    SEEN["real_rows"] = list(real_rows)
    gen = FakeGenerator()
    SEEN["generator"] = gen
    planned = [dict(id=planned_id("fake", r["id"], i), label=r["label"], split="train", source="fake-test",
                    role="unsorted", parent_id=r["id"], seed=i, method="sample", generator="fake-test")
               for r in real_rows for i in range(cfg.per_real)]
    return gen, planned


register_backend("fake-test", FakeConfig, build_fake)


@pytest.fixture
def manifest(tmp_path):
    return real_manifest(tmp_path / "data", {"apple": 2, "banana": 2})


def test_only_real_train_rows_reach_the_backend(tmp_path, manifest):
    rows = read_manifest(manifest)
    rows.append({**rows[0], "id": "synthetic0000001", "source": "text2img", "split": "train"})
    write_manifest(manifest, rows)
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", generator={"type": "fake-test"})
    counts = run_generate(cfg)
    assert counts == {"planned": 8, "skipped": 0, "ok": 8, "failed": 0}
    assert {(r["split"], r["source"]) for r in SEEN["real_rows"]} == {("train", "real")}
    assert len(SEEN["real_rows"]) == 4


def test_no_train_rows_is_a_clear_error(tmp_path, manifest):
    write_manifest(manifest, [r for r in read_manifest(manifest) if r["split"] == "test"])
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", generator={"type": "fake-test"})
    with pytest.raises(DataError, match="no real train rows"):
        run_generate(cfg)


def test_batches_and_kill_resume(tmp_path, manifest):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=3, generator={"type": "fake-test"})

    def kill(_n):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_generate(cfg, on_batch=kill)
    assert len(read_jsonl(tmp_path / "out/manifest.jsonl")) == 3
    assert run_generate(cfg) == {"planned": 8, "skipped": 3, "ok": 5, "failed": 0}
    assert SEEN["generator"].batches == [3, 2]
    ids = [r["id"] for r in read_jsonl(tmp_path / "out/manifest.jsonl")]
    assert len(ids) == len(set(ids)) == 8


def test_shards_cover_every_id_once(tmp_path, manifest):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", generator={"type": "fake-test"})
    c0 = run_generate(cfg, rank=0, world_size=2)
    c1 = run_generate(cfg, rank=1, world_size=2)
    assert c0["planned"] + c1["planned"] == 8 and c0["ok"] + c1["ok"] == 8
    ids = [r["id"] for r in read_jsonl(tmp_path / "out/manifest.jsonl")]
    assert len(ids) == len(set(ids)) == 8
    with pytest.raises(ConfigError, match="rank 2"):
        run_generate(cfg, rank=2, world_size=2)


def test_config_errors_name_file_and_field(tmp_path, manifest):
    import yaml

    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump({"manifest": str(manifest), "out_dir": "x", "generator": {"type": "nope"}}))
    with pytest.raises(ConfigError, match="gen.yaml: generator.type: unknown generator 'nope'"):
        load_generate_config(path)
    path.write_text(yaml.safe_dump({"manifest": str(manifest), "out_dir": "x",
                                    "generator": {"type": "fake-test", "per_reel": 1}}))
    with pytest.raises(ConfigError, match=r"(?s)gen.yaml: generator.*per_reel"):
        load_generate_config(path)
    path.write_text(yaml.safe_dump({"manifest": str(manifest), "out_dir": "x", "batch_size": 0,
                                    "generator": {"type": "fake-test"}}))
    with pytest.raises(ConfigError, match="batch_size"):
        load_generate_config(path)


def test_cli_generate_runs_and_resumes(tmp_path, manifest):
    import yaml
    from typer.testing import CliRunner

    import synthmix.cli.generate  # noqa: F401  (registers the command)
    from synthmix.cli.app import app

    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump({"manifest": str(manifest), "out_dir": str(tmp_path / "out"),
                                    "generator": {"type": "fake-test", "per_real": 1}}))
    res = CliRunner().invoke(app, ["generate", str(path)])
    assert res.exit_code == 0, res.output
    assert "written 4" in res.output
    res = CliRunner().invoke(app, ["generate", str(path), "--rank", "0", "--world-size", "1"])
    assert res.exit_code == 0 and "skipped (done) 4" in res.output
