"""Sharded generation: per-rank manifest shards, merge, a dying rank, same rank twice, audit.

In-process tests use a seeded-noise backend; the slow test launches 2 real processes
(torchrun, gloo) running ``-m synthmix generate`` with the tiny Stable Diffusion pipeline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from dist_helpers import torchrun_start
from typer.testing import CliRunner

from synthmix.audit import audit_run, errors
from synthmix.core.errors import ConfigError, DataError
from synthmix.core.io import read_jsonl
from synthmix.generation.jobs import GenerateConfig, run_generate
from synthmix.generation.merge import merge_shards, shard_manifest, shard_manifests, writer_lock
from synthmix.generation.protocol import planned_id
from synthmix.generation.registry import register_backend
from synthmix.generation.sd.config import StrictModel

sys.path.insert(0, str(Path(__file__).parents[1] / "generation"))
from sd_helpers import real_manifest  # noqa: E402


class NoiseConfig(StrictModel):
    per_real: int = 3


class NoiseGenerator:
    name = "dist-noise"

    def render(self, rows):
        return [np.random.default_rng(r["seed"]).integers(0, 255, (8, 8, 3), dtype=np.uint8) for r in rows]


def build_noise(cfg, real_rows, manifest_path, out_dir):
    planned = [dict(id=planned_id("noise", r["id"], i), label=r["label"], split="train", source="dist-noise",
                    role="unsorted", parent_id=r["id"], seed=1000 * n + i, method="sample", generator="dist-noise")
               for n, r in enumerate(real_rows) for i in range(cfg.per_real)]
    return NoiseGenerator(), planned


register_backend("dist-noise", NoiseConfig, build_noise)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return real_manifest(tmp_path_factory.mktemp("data"), {"apple": 2, "banana": 2})


def _cfg(manifest, out, **gen):
    return GenerateConfig(manifest=manifest, out_dir=out, batch_size=2, generator={"type": "dist-noise", **gen})


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "images").rglob("*.png"))}


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """One process, uninterrupted."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert run_generate(_cfg(manifest, out)) == {"planned": 12, "skipped": 0, "ok": 12, "failed": 0}
    return out


def test_ranks_write_shards_and_the_last_one_merges(tmp_path, manifest, reference):
    out = tmp_path / "out"
    c0 = run_generate(_cfg(manifest, out), rank=0, world_size=2)
    assert shard_manifests(out) == [shard_manifest(out, 0)] and not (out / "manifest.jsonl").exists()
    c1 = run_generate(_cfg(manifest, out), rank=1, world_size=2)
    assert c0["ok"] + c1["ok"] == 12 and c0["ok"] > 0 and c1["ok"] > 0
    assert shard_manifests(out) == [] and not list(out.glob("manifest.rank*"))
    # same images, same manifest and plan, byte for byte
    assert _files(out) == _files(reference)
    assert (out / "manifest.jsonl").read_bytes() == (reference / "manifest.jsonl").read_bytes()
    assert (out / "manifest.plan.json").read_bytes() == (reference / "manifest.plan.json").read_bytes()
    problems, counts = audit_run(out)
    assert problems == [] and counts["rows"] == counts["planned"] == 12


def test_a_dying_rank_loses_only_its_unfinished_images(tmp_path, manifest, reference):
    out = tmp_path / "out"

    def die(_n):
        raise RuntimeError("rank 0 killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_generate(_cfg(manifest, out), rank=0, world_size=2, on_batch=die)
    c1 = run_generate(_cfg(manifest, out), rank=1, world_size=2)
    done0 = len(read_jsonl(shard_manifest(out, 0)))
    assert done0 == 2 and not (out / "manifest.jsonl").exists()  # incomplete: nobody merged
    # the audit sees the shards (rows of both) and names what is missing
    problems = errors(audit_run(out)[0])
    assert len(problems) == 1 and "planned images have no row" in str(problems[0])
    # re-run with another world size: finishes only the missing ones, then merges
    c = run_generate(_cfg(manifest, out))
    assert c == {"planned": 12, "skipped": done0 + c1["ok"], "ok": 12 - done0 - c1["ok"], "failed": 0}
    ids = [r["id"] for r in read_jsonl(out / "manifest.jsonl")]
    assert len(ids) == len(set(ids)) == 12 and shard_manifests(out) == []
    assert _files(out) == _files(reference)
    assert audit_run(out)[0] == []


def test_the_same_rank_twice_is_refused(tmp_path, manifest):
    out = tmp_path / "out"
    with writer_lock(shard_manifest(out, 1)):  # a live process already writes rank 1
        with pytest.raises(ConfigError, match="another process is writing.*same rank"):
            run_generate(_cfg(manifest, out), rank=1, world_size=2)
    assert read_jsonl(shard_manifest(out, 1)) == []  # nothing was made twice


def test_manual_merge_cli_and_audit_with_shards(tmp_path, manifest, reference):
    from synthmix.cli.app import _register, app

    _register()
    out = tmp_path / "out"
    for r in range(3):
        run_generate(_cfg(manifest, out), rank=r, world_size=3, merge=False)
    assert len(shard_manifests(out)) == 3
    assert audit_run(out)[0] == []  # shards + their plans, side by side, are one consistent dir
    with writer_lock(shard_manifest(out, 2)):  # a writer still running: the merge must not delete its shard
        res = CliRunner().invoke(app, ["generate", "--merge", str(out)])
        assert res.exit_code != 0 and "another process is writing" in str(res.exception)
    res = CliRunner().invoke(app, ["generate", "--merge", str(out)])
    assert res.exit_code == 0 and "merged 3 shard(s)" in res.output and "12 rows" in res.output, res.output
    assert shard_manifests(out) == [] and audit_run(out)[0] == []
    rows = read_jsonl(out / "manifest.jsonl")
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # manual merge: by id
    assert sorted(map(str, rows)) == sorted(map(str, read_jsonl(reference / "manifest.jsonl")))
    assert _files(out) == _files(reference)
    res = CliRunner().invoke(app, ["generate", "--merge", str(out)])
    assert res.exit_code == 0 and "nothing to merge" in res.output


def test_merge_refuses_conflicting_rows_and_missing_files(tmp_path, manifest):
    out = tmp_path / "out"
    for r in range(2):
        run_generate(_cfg(manifest, out), rank=r, world_size=2, merge=False)
    rows0 = read_jsonl(shard_manifest(out, 0))
    bad = out / "manifest.rank7.jsonl"
    bad.write_text(__import__("json").dumps({**rows0[0], "sha256": "0" * 64}) + "\n")
    with pytest.raises(DataError, match=f"id {rows0[0]['id']} has a different row"):
        merge_shards(out)
    bad.unlink()
    (out / rows0[1]["path"]).unlink()
    with pytest.raises(DataError, match="is missing; not merging"):
        merge_shards(out)
    assert len(shard_manifests(out)) == 2  # nothing deleted


@pytest.mark.slow
def test_two_processes_equal_one_process_byte_for_byte(tmp_path, manifest):
    """2 real processes (torchrun, gloo) x tiny Stable Diffusion == 1 process, image for image."""
    import yaml

    from synthmix.generation.sd.tiny import build_tiny_pipeline

    model = build_tiny_pipeline(tmp_path / "tiny-sd")
    gen = {"type": "text2img", "model": str(model), "steps": 2, "width": 32, "height": 32,
           "images_per_class": 2, "seed": 7, "device": "cpu"}
    one, two = tmp_path / "one", tmp_path / "two"
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump({"manifest": str(manifest), "out_dir": str(two), "batch_size": 2,
                                   "generator": gen}))
    proc = torchrun_start(2, "-m", "synthmix", "generate", str(cfg))
    try:  # the one-process reference runs here meanwhile
        run_generate(GenerateConfig(manifest=manifest, out_dir=one, batch_size=2, generator=gen))
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "rank 0/2" in out + err and "rank 1/2" in out + err
    assert shard_manifests(two) == []
    ids = [r["id"] for r in read_jsonl(two / "manifest.jsonl")]
    assert len(ids) == len(set(ids)) == 4
    assert _files(two) == _files(one) and len(_files(one)) == 4
    assert (two / "manifest.jsonl").read_bytes() == (one / "manifest.jsonl").read_bytes()
    assert audit_run(two)[0] == []


def test_crash_between_merge_and_shard_deletion_is_harmless(tmp_path, manifest):
    """Merged manifest + a leftover shard with the same rows: the audit passes, a re-merge cleans up."""
    out = tmp_path / "out"
    for r in range(2):
        run_generate(_cfg(manifest, out), rank=r, world_size=2, merge=False)
    kept = shard_manifest(out, 1).read_bytes()
    assert merge_shards(out).merged
    shard_manifest(out, 1).write_bytes(kept)  # as if the merge died before deleting this shard
    assert audit_run(out)[0] == []
    res = merge_shards(out)
    assert res.merged and res.rows == 12 and shard_manifests(out) == []
    assert len(read_jsonl(out / "manifest.jsonl")) == 12 and audit_run(out)[0] == []
