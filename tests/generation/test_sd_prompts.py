"""Prompt diversity: templates x context lists, deterministic per seed; local captioner errors;
loud failures for class tokens (textual-inversion files, tokens absent from prompts or tokenizer)."""

from __future__ import annotations

import os

import pytest

from synthmix.core.config import parse_config
from synthmix.core.errors import ConfigError
from synthmix.generation.sd.config import PromptConfig, Text2ImgConfig

assert os.environ.get("HF_HUB_OFFLINE") == "1"

CONTEXTS = {"background": ["on a table", "in a forest", "on a beach"], "weather": ["sunny", "rainy", "snowy"],
            "style": ["photo", "painting"]}


def _prompts(**over):
    return parse_config(PromptConfig, {"templates": ["a {style} of a {name} {background}, {weather}",
                                                     "a close-up {style} of a {name}"],
                                       "contexts": CONTEXTS, **over})


def test_contexts_are_drawn_deterministically_per_seed():
    from synthmix.generation.sd.prompts import prompt_for

    p = _prompts()
    a = [prompt_for(p, "apple", i, seed=0) for i in range(40)]
    assert a == [prompt_for(p, "apple", i, seed=0) for i in range(40)]          # same seed, same prompts
    assert a != [prompt_for(p, "apple", i, seed=1) for i in range(40)]          # another seed, others
    assert a[5] == prompt_for(p, "apple", 5, seed=0)                             # order of work is irrelevant
    first = a[0::2]  # template 0
    for ctx, values in CONTEXTS.items():
        seen = {v for v in values if any(v in x for x in first)}
        assert seen == set(values), ctx   # 20 draws cover every value of 2-3
    assert all(x.startswith(("a photo of a apple ", "a painting of a apple ")) for x in first)
    assert a[1] in ("a close-up photo of a apple", "a close-up painting of a apple")


def test_without_contexts_prompts_are_unchanged():
    from synthmix.generation.sd.prompts import class_prompt, prompt_for

    p = parse_config(PromptConfig, {"templates": ["a photo of a {name}", "a {name} on a plate"],
                                    "names": {"granny_smith": "green apple"}})
    for i in range(4):
        assert prompt_for(p, "granny_smith", i, seed=i) == class_prompt("granny_smith", i, p.templates, p.names)


@pytest.mark.parametrize(("data", "needle"), [
    ({"templates": ["a {name} {place}"]}, "neither {name}/{token} nor keys of prompts.contexts"),
    ({"templates": ["a {name} {caption}"]}, "{caption} needs prompts.captions"),
    ({"templates": ["a photo"]}, "must contain {name}"),
    ({"templates": ["a {name} {background}"], "contexts": {"background": []}}, "at least one value"),
    ({"contexts": {"name": ["x"]}}, "reserved"),
])
def test_prompt_config_errors(data, needle):
    with pytest.raises(ConfigError) as err:
        parse_config(PromptConfig, data, source="prompts")
    assert needle in str(err.value)


def test_text2img_rows_record_context_prompts(tmp_path):
    from synthmix.generation.sd.text2img import plan_text2img

    cfg = parse_config(Text2ImgConfig, {"model": "m", "images_per_class": 6, "seed": 3,
                                        "prompts": {"templates": ["a photo of a {name} {background}"],
                                                    "contexts": {"background": CONTEXTS["background"]}}})
    rows = plan_text2img(cfg, ["apple", "banana"], None)
    assert len({r["prompt"] for r in rows}) > 2
    assert all(r["prompt"].startswith(f"a photo of a {r['label']} ") for r in rows)
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in plan_text2img(cfg, ["apple", "banana"], None)]
    with pytest.raises(ConfigError, match="only for adapted generators"):
        parse_config(Text2ImgConfig, {"model": "m", "prompts": {"templates": ["a {token}"]}}, source="generator")


def test_captioner_not_configured_or_missing(tmp_path):
    from synthmix.generation.sd.config import CaptionConfig
    from synthmix.generation.sd.prompts import caption_images, prompt_for

    p = _prompts(templates=["a photo of a {name}, {caption}"], captions={"model": str(tmp_path / "blip")})
    with pytest.raises(ConfigError, match="no values"):   # captions configured but none made for this class
        prompt_for(p, "apple", 0, seed=0)
    assert prompt_for(p, "apple", 0, seed=0, extra={"caption": ["a red fruit"]}) == "a photo of a apple, a red fruit"
    with pytest.raises(ConfigError, match="not a folder"):
        caption_images(CaptionConfig(model=str(tmp_path / "blip")), [])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        caption_images(CaptionConfig(model=str(tmp_path / "empty")), [])


def test_token_checks():
    from synthmix.generation.sd.prompts import require_token
    from synthmix.generation.sd.textual_inversion import check_tokens_known, install_tokens
    from synthmix.generation.sd.tiny import tiny_components

    with pytest.raises(ConfigError, match="does not contain the class token"):
        require_token("a photo of an apple", "<apple>", "generator.prompts.templates")
    require_token("a photo of a <apple>", "<apple>", "x")
    comps = tiny_components()
    tok, te = comps["tokenizer"], comps["text_encoder"]
    with pytest.raises(ConfigError, match="does not know"):
        check_tokens_known(tok, ["a photo of a <apple>"], ["<apple>"])
    install_tokens(tok, te, {"<apple>": te.get_input_embeddings().weight[0].detach().clone()})
    check_tokens_known(tok, ["a photo of a <apple>"], ["<apple>"])


def test_textual_inversion_files_missing_or_mismatched(tmp_path):
    import torch
    from safetensors.torch import save_file

    from synthmix.generation.sd.textual_inversion import check_token_files, load_token
    from synthmix.generation.sd.tiny import tiny_components

    with pytest.raises(ConfigError, match="not a folder"):
        check_token_files(tmp_path / "nope", ["<apple>"])
    (tmp_path / "tok").mkdir()
    save_file({"<apple>": torch.zeros(1, 32)}, str(tmp_path / "tok/apple.safetensors"))
    with pytest.raises(ConfigError, match=r"lacks \['banana.safetensors'\]"):
        check_token_files(tmp_path / "tok", ["<apple>", "<banana>"])

    class Pipe:  # the parts load_token touches
        pass

    pipe = Pipe()
    c = tiny_components()
    pipe.tokenizer, pipe.text_encoder = c["tokenizer"], c["text_encoder"]
    res = load_token(pipe, "<apple>", tmp_path / "tok")
    assert res.embedding.shape == (32,) and "<apple>" in pipe.tokenizer.get_vocab()
    save_file({"<banana>": torch.zeros(1, 768)}, str(tmp_path / "tok/banana.safetensors"))
    with pytest.raises(ConfigError, match="another base model"):
        load_token(pipe, "<banana>", tmp_path / "tok")
    save_file({"<pear>": torch.zeros(1, 32)}, str(tmp_path / "tok/orange.safetensors"))
    with pytest.raises(ConfigError, match="expected exactly the token"):
        load_token(pipe, "<orange>", tmp_path / "tok")


def test_dafusion_missing_token_file_fails_before_any_image(tmp_path):
    from sd_helpers import real_manifest

    from synthmix.generation.jobs import GenerateConfig, run_generate
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    model = build_tiny_pipeline(tmp_path / "tiny-sd")
    manifest = real_manifest(tmp_path / "data", {"apple": 1, "banana": 1})
    (tmp_path / "tok").mkdir()
    cfg = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", generator={
        "type": "dafusion", "model": str(model), "steps": 10, "strengths": [0.5], "width": 32, "height": 32,
        "textual_inversion": {"load_from": str(tmp_path / "tok")}})
    with pytest.raises(ConfigError, match=r"lacks \['apple.safetensors', 'banana.safetensors'\]"):
        run_generate(cfg)
    assert not (tmp_path / "out/manifest.jsonl").exists() and not list(tmp_path.glob("out/**/*.png"))
    # token files present: they are installed instead of training; a file of another width fails in
    # prepare(), before the first image
    import torch
    from safetensors.torch import save_file

    from synthmix.data.manifest import read_manifest

    for c in ("apple", "banana"):
        save_file({f"<{c}>": torch.randn(1, 32, generator=torch.Generator().manual_seed(0))},
                  str(tmp_path / f"tok/{c}.safetensors"))
    assert run_generate(cfg)["ok"] == 2
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    assert all(r["prompt"] == f"a photo of a <{r['label']}>" and r["recipe"]["kind"] == "textual_inversion"
               for r in rows)
    save_file({"<banana>": torch.zeros(1, 16)}, str(tmp_path / "tok/banana.safetensors"))
    bad = cfg.model_copy(update={"out_dir": tmp_path / "out2"})
    with pytest.raises(ConfigError, match="another base model"):
        run_generate(bad)
    m2 = tmp_path / "out2/manifest.jsonl"  # the job may have opened it, but no row and no image exist
    assert (not m2.exists() or m2.stat().st_size == 0) and not list(tmp_path.glob("out2/**/*.png"))


def test_captions_from_a_local_captioner_fill_prompts_and_are_cached(tmp_path):
    import shutil

    from sd_helpers import real_manifest

    from synthmix.core.io import read_json
    from synthmix.data.manifest import read_manifest, train_rows
    from synthmix.generation.sd.backend import build_text2img
    from synthmix.generation.sd.tiny import build_tiny_captioner

    blip = build_tiny_captioner(tmp_path / "blip")
    manifest = real_manifest(tmp_path / "data", {"apple": 2, "banana": 1})
    real = train_rows(read_manifest(manifest))
    cfg = parse_config(Text2ImgConfig, {"model": "m", "images_per_class": 3, "device": "cpu",
                                        "prompts": {"templates": ["a photo of a {name}, {caption}"],
                                                    "captions": {"model": str(blip), "max_new_tokens": 4,
                                                                 "device": "cpu"}}})
    _, rows = build_text2img(cfg, real, manifest, tmp_path / "out", pipe=object())
    cache = read_json(tmp_path / "out/captions.json")
    assert sorted(cache) == sorted(r["id"] for r in real) and all(isinstance(c, str) and c for c in cache.values())
    for r in rows:
        own = {cache[x["id"]] for x in real if x["label"] == r["label"]}
        assert r["prompt"].startswith(f"a photo of a {r['label']}, ") and r["prompt"].split(", ", 1)[1] in own
    # cached: the same prompts without the model
    shutil.rmtree(blip)
    assert build_text2img(cfg, real, manifest, tmp_path / "out", pipe=object())[1] == rows


def test_textual_inversion_with_several_vectors_per_token(tmp_path):
    """DA-Fusion's recipe learns one vector per word piece of the class name: <tok>, <tok>_1, ..."""
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from sd_helpers import real_manifest

    from synthmix.data.images import load_rgb
    from synthmix.data.manifest import read_manifest, train_rows
    from synthmix.generation.jobs import GenerateConfig, run_generate
    from synthmix.generation.sd.config import DAFusionConfig, TextualInversionConfig, content_dump
    from synthmix.generation.sd.pipeline import load_pipeline
    from synthmix.generation.sd.textual_inversion import initial_vectors, num_vectors, train_token
    from synthmix.generation.sd.tiny import build_tiny_pipeline

    model = build_tiny_pipeline(tmp_path / "tiny-sd")
    manifest = real_manifest(tmp_path / "data", {"apple": 2, "banana": 1})
    cfg = parse_config(DAFusionConfig, {"model": str(model), "steps": 10, "width": 32, "height": 32, "strengths": [0.5],
                                        "textual_inversion": {"steps": 2, "batch_size": 2, "resolution": 32,
                                                              "vectors": 2}})
    pipe = load_pipeline(cfg, "img2img", "cpu")
    tok, te = pipe.tokenizer, pipe.text_encoder
    vocab, before = len(tok), te.get_input_embeddings().weight.detach().clone()
    images = [load_rgb(r["path"]) for r in train_rows(read_manifest(manifest)) if r["label"] == "apple"]
    res = train_token(pipe, images, "<apple>", "apple", cfg.textual_inversion, tmp_path / "ti", "cpu", fp="v2")
    assert res.embedding.shape == (2, 32) and len(res.losses) == 2
    assert tok.convert_tokens_to_ids(["<apple>", "<apple>_1"]) == [vocab, vocab + 1]
    table = te.get_input_embeddings().weight.detach()
    assert torch.equal(table[:vocab], before[:vocab]) and torch.equal(table[vocab:vocab + 2], res.embedding)
    assert pipe.maybe_convert_prompt("a photo of a <apple>", tok) == "a photo of a <apple> <apple>_1"
    assert load_file(str(tmp_path / "ti/apple.safetensors"))["<apple>"].shape == (2, 32)
    # "pieces": one vector per word piece of the initializer, each starting from that piece
    pieces = TextualInversionConfig(vectors="pieces")
    assert num_vectors(pieces, tok, "photo apple") == 2 and num_vectors(pieces, tok, "apple") == 1
    ids = tok("photo apple", add_special_tokens=False).input_ids
    np.testing.assert_array_equal(initial_vectors(tok, te, "photo apple", 2).numpy(), before[ids].numpy())
    # the default (1 vector) keeps the content hash of configs written before the field existed
    assert "vectors" not in content_dump(TextualInversionConfig()) and "vectors" in content_dump(pieces)
    # through the job: prompts keep "<apple>", the recipe records the vectors, images are made
    job = GenerateConfig(manifest=manifest, out_dir=tmp_path / "out", generator={
        "type": "dafusion", **{k: v for k, v in cfg.model_dump(mode="json").items() if k != "speed"}})
    assert run_generate(job)["ok"] == 3
    rows = read_manifest(tmp_path / "out/manifest.jsonl")
    assert all(r["prompt"] == f"a photo of a <{r['label']}>" and r["recipe"]["vectors"] == 2 for r in rows)
