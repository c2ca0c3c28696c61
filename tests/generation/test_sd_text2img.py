"""text2img through the production path (AutoPipeline from a local folder), tiny random weights, offline."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from sd_helpers import real_manifest, single_thread, to_u8

from synthmix.core.errors import ConfigError
from synthmix.data.manifest import read_manifest
from synthmix.generation.jobs import GenerateConfig, run_generate

assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("model") / "tiny-sd")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return real_manifest(tmp_path_factory.mktemp("data"), {"apple": 2, "banana": 2})


def gen_cfg(model, **over):
    g = {"type": "text2img", "model": str(model), "steps": 2, "width": 32, "height": 32,
         "images_per_class": 3, "guidance": 5.0, "seed": 7,
         "prompts": {"templates": ["a photo of a {name}", "a picture of a {name}"],
                     "names": {"banana": "ripe banana"}, "negative_prompt": "blurry"}}
    g.update(over)
    return g


@pytest.fixture(scope="module")
def pipe(tiny_model):
    from synthmix.generation.sd.config import Text2ImgConfig
    from synthmix.generation.sd.pipeline import load_pipeline

    cfg = Text2ImgConfig(**{k: v for k, v in gen_cfg(tiny_model).items() if k != "type"})
    return load_pipeline(cfg, "text2img", "cpu")


def test_text2img_job_writes_images_and_rows(tmp_path, tiny_model, manifest):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=4, generator=gen_cfg(tiny_model))
    counts = run_generate(cfg)
    assert counts == {"planned": 6, "skipped": 0, "ok": 6, "failed": 0}
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
        assert (r["source"], r["method"], r["generator"], r["status"]) == ("text2img", "txt2img", "text2img", "ok")
        assert (r["split"], r["role"], r["parent_label"], r["parent_id"]) == ("train", "in_dist", r["label"], None)
        assert (r["steps"], r["guidance"], r["negative_prompt"], r["strength"]) == (2, 5.0, "blurry", None)
        assert r["model_id"] == str(tiny_model) and isinstance(r["seed"], int)
        assert (r["width"], r["height"], r["mode"]) == (32, 32, "RGB")
        assert (tmp_path / "out" / r["path"]).is_file()
    assert sorted(r["prompt"] for r in by_label["banana"]) == [
        "a photo of a ripe banana", "a photo of a ripe banana", "a picture of a ripe banana"]
    assert len({r["seed"] for r in rows}) == 6
    assert (tmp_path / "out/generate.yaml").is_file()
    # a re-run makes nothing new
    assert run_generate(cfg) == {"planned": 6, "skipped": 6, "ok": 0, "failed": 0}


def _plan(model, n=3):
    from synthmix.core.config import parse_config
    from synthmix.generation.sd.config import Text2ImgConfig
    from synthmix.generation.sd.text2img import plan_text2img

    g = gen_cfg(model, images_per_class=n)
    cfg = parse_config(Text2ImgConfig, {k: v for k, v in g.items() if k != "type"})
    return cfg, plan_text2img(cfg, ["apple", "banana"], None)


def test_same_seed_same_image_and_batch_size_does_not_matter(tiny_model, pipe):
    from synthmix.generation.sd.text2img import Text2ImgGenerator

    cfg, rows = _plan(tiny_model, 2)
    gen = Text2ImgGenerator(cfg, "cpu", pipe=pipe)
    batch4 = [to_u8(a) for a in gen.render(rows)]          # mixes classes and prompts
    single = [to_u8(gen.render([r])[0]) for r in rows]
    again = [to_u8(a) for a in gen.render(rows[::-1])][::-1]  # other order
    for a, b, c in zip(batch4, single, again, strict=True):
        assert a.shape == (32, 32, 3)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(batch4[0], batch4[1])  # different seeds / prompts -> different images


def test_cuda_oom_halves_the_batch_and_loses_nothing(tiny_model, pipe, monkeypatch):
    import torch

    from synthmix.generation.sd.text2img import Text2ImgGenerator

    cfg, rows = _plan(tiny_model, 2)
    expected = [to_u8(a) for a in Text2ImgGenerator(cfg, "cpu", pipe=pipe).render(rows)]
    original = type(pipe).__call__
    sizes = []

    @functools.wraps(original)
    def oom_above_one(self, *args, **kwargs):
        sizes.append(len(kwargs["prompt"]))
        if len(kwargs["prompt"]) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", oom_above_one)
    gen = Text2ImgGenerator(cfg, "cpu", pipe=pipe)
    got = [to_u8(a) for a in gen.render(rows)]
    assert sizes[:3] == [4, 2, 1] and gen.splitter.max_batch == 1 and gen.splitter.halvings == 2
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    # other errors are not swallowed
    monkeypatch.setattr(type(pipe), "__call__", lambda self, **kw: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(ValueError):
        Text2ImgGenerator(cfg, "cpu", pipe=pipe).render(rows)


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path, tiny_model, manifest):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=2, generator=gen_cfg(tiny_model))
    made = []

    def kill_after_two(n):
        made.append(n)
        if sum(made) >= 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run_generate(cfg, on_batch=kill_after_two)
    assert len(read_manifest(tmp_path / "out/manifest.jsonl")) == 2
    counts = run_generate(cfg)
    assert counts == {"planned": 6, "skipped": 2, "ok": 4, "failed": 0}
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    ids = [r["id"] for r in rows]
    _, planned = _plan(tiny_model, 3)
    assert sorted(ids) == sorted(r["id"] for r in planned)  # none missing, none twice
    files = sorted(p.name for p in (tmp_path / "out/images").rglob("*") if p.is_file())
    assert files == sorted(f"{i}.png" for i in ids)  # no temp files left behind
    # the killed + resumed run (batches of 2) stored exactly the images of one uninterrupted run of 6
    whole = GenerateConfig(manifest=manifest, out_dir=tmp_path / "whole", batch_size=6,
                           generator=gen_cfg(tiny_model))
    run_generate(whole)
    sha = {r["id"]: r["sha256"] for r in read_manifest(tmp_path / "whole/manifest.jsonl")}
    assert {r["id"]: r["sha256"] for r in rows} == sha


def test_nan_images_are_marked_failed(tmp_path, tiny_model, manifest, monkeypatch):
    from synthmix.generation.sd import pipeline as sd_pipeline

    prepare = sd_pipeline.prepare_pipeline

    def poisoned(pipe, *a, **kw):
        pipe = prepare(pipe, *a, **kw)
        pipe.vae.decoder.register_forward_hook(lambda m, i, o: o * float("nan"))  # as an fp16 overflow
        return pipe

    monkeypatch.setattr(sd_pipeline, "prepare_pipeline", poisoned)
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", batch_size=6,
                         generator=gen_cfg(tiny_model, images_per_class=1))
    assert run_generate(cfg) == {"planned": 2, "skipped": 0, "ok": 0, "failed": 2}
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    assert {r["status"] for r in rows} == {"failed"} and all(r["path"] is None for r in rows)
    assert "NaN" in rows[0]["scores"]["failure"]
    assert not list((tmp_path / "out/images").rglob("*.png"))


def test_scheduler_by_name(tiny_model, pipe):
    from synthmix.generation.sd.pipeline import set_scheduler

    before = pipe.scheduler
    try:
        set_scheduler(pipe, "dpm++_karras")
        assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
        assert pipe.scheduler.config.use_karras_sigmas
        with pytest.raises(ConfigError, match="unknown scheduler 'fast'"):
            set_scheduler(pipe, "fast")
    finally:
        pipe.scheduler = before


def test_safety_checker_is_disabled_and_no_class_is_hard_coded(pipe):
    assert getattr(pipe, "safety_checker", None) is None
    assert type(pipe).__name__ == "StableDiffusionPipeline"  # chosen by AutoPipeline from model_index.json


@pytest.mark.parametrize("model", ["/nonexistent/model", "nobody/not-a-cached-model", "not a model"])
def test_missing_model_is_a_clear_error(tmp_path, manifest, model):
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", generator=gen_cfg(model))
    with pytest.raises(ConfigError, match="generator.model"):
        run_generate(cfg)


def test_uncached_hub_id_says_how_to_download():
    from synthmix.generation.sd.pipeline import resolve_model

    with pytest.raises(ConfigError, match="huggingface-cli download nobody/not-cached"):
        resolve_model("nobody/not-cached")


def test_a_shipped_safety_checker_is_not_used(tmp_path):
    import json

    from synthmix.generation.sd.config import Text2ImgConfig
    from synthmix.generation.sd.pipeline import load_pipeline
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path / "with-checker", safety_checker=True)
    assert json.loads((folder / "model_index.json").read_text())["safety_checker"][1] == \
        "StableDiffusionSafetyChecker"
    pipe = load_pipeline(Text2ImgConfig(model=str(folder)), "text2img", "cpu")
    assert pipe.safety_checker is None


def test_hub_id_resolves_from_the_local_cache_only(tmp_path, tiny_model, monkeypatch):
    import shutil

    import huggingface_hub.constants as hf_constants

    from synthmix.generation.sd.pipeline import resolve_model

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-sd"
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    folder, revision = resolve_model("someone/tiny-sd")
    assert folder == repo / "snapshots" / commit and revision == commit


@pytest.mark.slow
def test_benchmark_runs_tiny():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "generation.py"
    spec = importlib.util.spec_from_file_location("bench_generation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--tiny", "--steps", "2", "--batch", "2", "--images", "4", "--naive-images", "2"])
    assert res["tiny"] and res["naive_img_s"] > 0 and res["synthmix_img_s"] > 0
    assert 0 < res["unet_share_of_wall"] and res["unet_gflop_per_image_step"] > 0


def test_call_kwargs_keeps_only_what_the_pipeline_takes(caplog):
    from synthmix.generation.sd.pipeline import call_kwargs

    class FluxLike:
        def __call__(self, prompt, guidance_scale=3.5, generator=None):
            return None

    got = call_kwargs(FluxLike(), prompt=["a"], negative_prompt=["b"], guidance_scale=2.0, height=None)
    assert got == {"prompt": ["a"], "guidance_scale": 2.0}
    assert "negative_prompt" in caplog.text


def test_a_study_never_generates_its_near_ood_class(tmp_path, tiny_model):
    """The study path with the tiny pipeline and NO classes list: the dataset's `mixed` folder is the
    near-OOD set, so text2img plans apple/banana/orange only (it used to plan "a photo of a mixed")."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
    from study_helpers import study_dict, tiny_dataset

    from synthmix.data.manifest import read_manifest
    from synthmix.experiments.executor import execute, stage_dir
    from synthmix.experiments.load import parse_study
    from synthmix.experiments.runner import prepare

    data = tiny_dataset(tmp_path / "data", per_class=2, test_per_class=1)
    d = study_dict(data, seeds=[0], controls={"enabled": False})
    d["generators"] = {"sd": {"type": "text2img", "generate": {
        k: v for k, v in gen_cfg(tiny_model, images_per_class=1).items() if k != "type"}}}
    d["setups"].append({"name": "syn", "generator": "sd", "mix": {"kind": "per_real", "k": 1}})
    cfg, plan, run = prepare(parse_study(d), tmp_path / "run")
    gen = plan.shared["generate:sd"]
    assert execute(run, [gen])[gen.key] == "ran"
    rows = read_manifest(stage_dir(run, gen.key) / "manifest.jsonl")
    assert rows and {r["label"] for r in rows} == {"apple", "banana", "orange"}
    assert not any("mixed" in (r.get("prompt") or "") for r in rows)
