"""Outlier synthesis in conditioning space (method ``vos``) with the tiny embedded generator."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "generation"))  # embedded_helpers

from synthmix.generation.embedded.vos import class_scales, vos_embeddings  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from embedded_helpers import folder_manifest, tiny_train_config

    from conftest import make_imagefolder
    from synthmix.generation.embedded.train import train_generator

    root = tmp_path_factory.mktemp("vos")
    manifest = folder_manifest(make_imagefolder(root / "ds"), root / "manifest.jsonl")
    ckpt = train_generator(tiny_train_config(manifest, root / "model"), show_progress=False)
    return ckpt, manifest


def _generator(trained, **cfg_fields):
    from synthmix.data.manifest import read_manifest, train_rows
    from synthmix.generation.embedded.backend import build
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig

    ckpt, manifest = trained
    cfg = EmbeddedGenerateConfig(checkpoint=str(ckpt), steps=3, device="cpu", **cfg_fields)
    return build(cfg, train_rows(read_manifest(manifest)), manifest, Path(ckpt).parent)


def _u8(images):
    from synthmix.generation.writer import to_uint8

    return [to_uint8(a).astype(int) for a in images]


def test_vos_embeddings_sit_at_the_radius():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(4, 16, generator=g)  # 3 classes + null
    s = class_scales(table, 3)
    d = torch.cdist(table[:3], table[:3]) + torch.eye(3) * 1e9
    assert torch.allclose(s, d.min(1).values)
    z, dist = vos_embeddings(table, 3, [0, 1, 2, 0], [0.5, 0.5, 1.0, 0.0], [1, 2, 3, 4])
    for i, (c, r) in enumerate([(0, 0.5), (1, 0.5), (2, 1.0), (0, 0.0)]):
        assert (z[i] - table[c]).norm().item() == pytest.approx(r * s[c].item(), rel=1e-5)
        assert dist[i, c].item() == pytest.approx(r * s[c].item(), rel=1e-5, abs=1e-6)
    again, _ = vos_embeddings(table, 3, [0], [0.5], [1])
    assert torch.equal(again[0], z[0])  # the direction depends on the row's seed only
    with pytest.raises(ValueError, match="radius"):
        vos_embeddings(table, 3, [0], [-1.0], [1])


def test_vos_rows_have_complete_provenance_and_leave_other_ids_alone(trained):
    gen, planned = _generator(trained, per_class=1, interp_per_class=1, vos_per_class=2, vos_radii=[0.4, 0.8])
    classes = gen.loaded.classes
    vos = [r for r in planned if r["method"] == "vos"]
    assert len(vos) == 2 * len(classes) and len({r["id"] for r in planned}) == len(planned)
    for r in vos:
        assert r["role"] == "near_ood" and r["source"] == r["generator"] == "embedded"
        assert r["label"] in classes and r["parent_label"] in classes and r["parent_id"] is None
        assert isinstance(r["seed"], int) and r["vos_radius"] in (0.4, 0.8) and r["strength"] is None
        assert r["scores"]["vos_radius"] == r["vos_radius"]
        dist = {c: r["scores"][f"vos_distance/{c}"] for c in classes}
        assert r["parent_label"] == min(dist, key=dist.get)
        assert r["checkpoint"] == gen.loaded.checkpoint and r["steps"] == 3
    # adding vos rows changes no other row's id; another radius gives other vos ids
    _, plain = _generator(trained, per_class=1, interp_per_class=1)
    assert {r["id"] for r in plain} == {r["id"] for r in planned if r["method"] != "vos"}
    _, other = _generator(trained, per_class=1, interp_per_class=1, vos_per_class=2, vos_radii=[0.4, 0.9])
    other = [r for r in other if r["method"] == "vos"]
    ids = {r["vos_radius"]: set() for r in other}
    for r in other:
        ids[r["vos_radius"]].add(r["id"])
    assert ids[0.4] <= {r["id"] for r in vos} and not ids[0.9] & {r["id"] for r in vos}


def test_vos_radius_zero_is_the_class_sample_and_render_is_batch_independent(trained):
    gen, planned = _generator(trained, per_class=1, vos_per_class=2, vos_radii=[0.0, 1.5])
    samples = {r["label"]: r for r in planned if r["method"] == "sample"}
    zero = [r for r in planned if r["method"] == "vos" and r["vos_radius"] == 0.0]
    # same seed and z = e_c: the free-embedding path reproduces the class-conditional sample
    twins = [{**samples[r["label"]], "id": "x"} for r in zero]
    for r, t in zip(zero, twins, strict=True):
        t["seed"] = r["seed"]
    a, b = _u8(gen.render(zero)), _u8(gen.render(twins))
    for x, y in zip(a, b, strict=True):
        assert np.abs(x - y).max() <= 1
    vos = [r for r in planned if r["method"] == "vos"]
    together = _u8(gen.render(vos))
    alone = [_u8(gen.render([r]))[0] for r in vos]
    for x, y in zip(together, alone, strict=True):
        diff = np.abs(x - y)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    far = [i for i, r in enumerate(vos) if r["vos_radius"] == 1.5]
    near = {r["label"]: i for i, r in enumerate(vos) if r["vos_radius"] == 0.0}
    assert any(np.abs(together[i] - together[near[vos[i]["label"]]]).mean() > 1 for i in far)


def test_vos_generation_writes_manifest_rows(trained, tmp_path):
    from synthmix.data.manifest import read_manifest, resolve_path
    from synthmix.generation.protocol import run_generation
    from synthmix.generation.writer import ImageWriter

    gen, planned = _generator(trained, vos_per_class=1)
    out = tmp_path / "gen" / "manifest.jsonl"
    counts = run_generation(gen, planned, ImageWriter(out), batch_size=4)
    assert counts["ok"] == len(planned) == 3
    for r in read_manifest(out):
        assert r["status"] == "ok" and resolve_path(out, r["path"]).is_file() and r["method"] == "vos"
        assert r["role"] == "near_ood" and r["vos_radius"] == 0.5 and r["sha256"]


def test_vos_config_validation():
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig

    with pytest.raises(ValueError, match="vos_radii"):
        EmbeddedGenerateConfig(checkpoint="x", vos_per_class=1, vos_radii=[-0.5])
    with pytest.raises(ValueError, match="vos_radii"):
        EmbeddedGenerateConfig(checkpoint="x", vos_per_class=1, vos_radii=[])
