"""A tiny random-weight Stable Diffusion pipeline, built offline and saved as a local model folder.

Tests (and the CPU benchmark) load it through exactly the production path
(:func:`synthmix.generation.sd.pipeline.load_pipeline`), like a user's downloaded model.
Sizes: 32 px images, VAE factor 4 -> 8x8 latents, CLIP text encoder of width 32 with a
byte-level BPE vocabulary of ~520 tokens written here (no download).
"""

from __future__ import annotations

from pathlib import Path

TINY_SIZE = 32  # image side in pixels


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable-unicode table of byte-level BPE (as in GPT-2 / CLIP)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


# A few merges so common prompt words are single tokens (the rest fall back to characters).
_WORDS = ("a", "photo", "of", "the", "an", "image", "picture", "apple", "banana", "orange",
          "fruit", "blurry", "low", "quality")


def write_tiny_tokenizer(folder: str | Path) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` of a small CLIP BPE tokenizer into ``folder``."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab: list[str] = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in _WORDS:
        # merge left to right: w o r d</w>  ->  wo r d</w> -> wor d</w> -> word</w>
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            m = f"{pieces[0]} {pieces[1]}"
            if m not in merges:
                merges.append(m)
            if merged not in vocab:
                vocab.append(merged)
            pieces = [merged] + pieces[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def tiny_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict:
    """Random-weight UNet / VAE / CLIP text encoder / tokenizer / DDIM scheduler (seeded)."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)  # weight init only; generation uses its own generators
    unet = UNet2DConditionModel(
        sample_size=TINY_SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(8, 16, 16), sample_size=TINY_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tokenizer_dir) if tokenizer_dir else write_tiny_tokenizer(tmp)
        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}


def tiny_safety_checker():
    """A random-weight ``StableDiffusionSafetyChecker`` + image processor (as hub SD 1.x folders ship)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    cfg = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 2},
                     vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                     projection_dim=16)
    return StableDiffusionSafetyChecker(cfg), CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


def build_tiny_pipeline(folder: str | Path, seed: int = 0, safety_checker: bool = False) -> Path:
    """Save a tiny Stable Diffusion 1.x-style pipeline to ``folder`` (a local model folder).

    ``safety_checker``: include a (random) safety checker, as hub SD 1.x folders do.
    """
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    checker, extractor = tiny_safety_checker() if safety_checker else (None, None)
    pipe = StableDiffusionPipeline(**tiny_components(seed), safety_checker=checker, feature_extractor=extractor,
                                   requires_safety_checker=safety_checker)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_captioner(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random-weight BLIP captioning model + processor (15-word BERT vocabulary) to ``folder``,
    offline: tests run the ``prompts.captions`` path with it (its captions are random word strings)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "red", "fruit", "on",
             "table", "green", "round"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": TINY_SIZE, "width": TINY_SIZE}), tok)
    torch.manual_seed(seed)
    cfg = BlipConfig(
        text_config={"vocab_size": len(words), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 32, "bos_token_id": 5, "pad_token_id": 0,
                     "sep_token_id": 3, "eos_token_id": 3, "encoder_hidden_size": 32},
        vision_config={"hidden_size": 32, "image_size": TINY_SIZE, "patch_size": 8, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 64}, projection_dim=32)
    BlipForConditionalGeneration(cfg).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
