"""Stable Diffusion generation speed: a naive batch-1 fp16 loop vs synthmix's batched settings.

Builds the SD-1.5 architecture from configs/sd15/ with random weights (throughput does not depend on
weight values) and reports, measured side by side in one run:

* img/s of the naive loop (plain diffusers defaults, fp16, one image per call) and of synthmix's
  Text2ImgGenerator (batched, bf16, channels-last, SDPA, optional torch.compile) -> ratio;
* UNet FLOP/s (FLOPs counted by torch's FlopCounterMode on one UNet call) as a fraction of a
  bf16 matmul peak measured on the same device;
* the share of the batched run's wall time spent in the UNet (the same UNet calls timed alone);
* LoRA (``--lora``, on by default): img/s of the same batched generation without adapter, with a
  rank-``--lora-rank`` adapter active as synthmix's ``lora`` / ``diffmix`` generators run it (peft
  layers, unmerged), and with the adapter merged into the weights (ratios side by side, and the
  largest pixel difference merged vs unmerged), plus seconds per LoRA training step at the run's
  resolution (``synthmix.generation.sd.lora.train_adapter``, batch ``--lora-train-batch``).

Without CUDA (or with --tiny) it runs synthmix's tiny random-weight pipeline at 32 px in fp32 (fp16/bf16
matmuls on this CPU are emulated and slow) and says so: those numbers show the harness works and what
batching does on a CPU, not SD-1.5 GPU throughput.

    python benchmarks/generation.py                 # GPU: SD-1.5 at 512 px, 50 steps
    python benchmarks/generation.py --tiny          # CPU-sized run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype, n: int, iters: int) -> float:
    """Dense matmul FLOP/s (2 n^3 per product) of ``dtype`` on ``device``."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t)


def build_pipeline(tiny: bool, device: str):
    """StableDiffusionPipeline of random weights: SD-1.5 (configs/sd15) or synthmix's tiny one."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from synthmix.generation.sd.tiny import tiny_components

    if tiny:
        parts = tiny_components(seed=0)
    else:
        cfgdir = REPO / "configs" / "sd15"
        load = lambda name: json.loads((cfgdir / name).read_text())  # noqa: E731
        parts = tiny_components(seed=0)  # for its tokenizer (prompts are padded to 77 tokens either way)
        with torch.device(device):  # initialise on the GPU: much faster than on the CPU
            parts["unet"] = UNet2DConditionModel.from_config(load("unet.json"))
            parts["vae"] = AutoencoderKL.from_config(load("vae.json"))
            parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**{
                k: v for k, v in load("text_encoder.json").items() if k not in ("architectures",)}))
        parts["scheduler"] = PNDMScheduler.from_config(load("scheduler.json"))
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def unet_flops(pipe, batch: int, size: int, device: str) -> float:
    """FLOPs of one UNet call on ``batch`` latents (batch 2 = one image with classifier-free guidance)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    h = size // pipe.vae_scale_factor
    x = torch.randn(batch, unet.config.in_channels, h, h, device=device, dtype=unet.dtype)
    ctx = torch.randn(batch, 77, unet.config.cross_attention_dim, device=device, dtype=unet.dtype)
    # count with diffusers' classic (bmm + softmax) attention: FlopCounterMode does not count every
    # fused SDPA kernel (e.g. the CPU flash kernel), and the FLOPs are the same either way
    saved = unet.attn_processors
    unet.set_default_attn_processor()
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            unet(x, 500, ctx)
    finally:
        unet.set_attn_processor(saved)
    return float(fc.get_total_flops())


def time_unet_alone(pipe, batch: int, size: int, calls: int, device: str) -> float:
    """Seconds for ``calls`` UNet calls on ``batch`` latents (the pipeline's shapes and settings)."""
    import torch

    unet = pipe.unet
    h = size // pipe.vae_scale_factor
    x = torch.randn(batch, unet.config.in_channels, h, h, device=device, dtype=unet.dtype)
    ctx = torch.randn(batch, 77, unet.config.cross_attention_dim, device=device, dtype=unet.dtype)
    with torch.inference_mode():
        unet(x, 500, ctx)
        sync(device)
        t = time.perf_counter()
        for i in range(calls):
            unet(x, 999 - i, ctx)
        sync(device)
    return time.perf_counter() - t


def lora_bench(tiny: bool, device: str, dtype, size: int, steps: int, batch: int, n_images: int, rank: int,
               train_steps: int, train_batch: int) -> dict:
    """Batched text2img without / with an unmerged / with a merged LoRA adapter, and LoRA training speed."""
    import tempfile

    import numpy as np
    import torch
    from PIL import Image

    from synthmix.core.config import parse_config
    from synthmix.generation.sd.config import SpeedConfig, Text2ImgConfig
    from synthmix.generation.sd.lora import LoRAConfig, _inject, _tuner_layers, activate, train_adapter
    from synthmix.generation.sd.pipeline import prepare_pipeline
    from synthmix.generation.sd.text2img import Text2ImgGenerator, plan_text2img

    pipe = build_pipeline(tiny, device)
    pipe.to(device, dtype)
    speed = SpeedConfig(channels_last=True, attention="sdpa", compile=False)
    prepare_pipeline(pipe, speed, device)
    cfg = Text2ImgConfig(model="benchmark", steps=steps, guidance=7.5, width=size, height=size,
                         images_per_class=(n_images + batch + 2) // 3 + 1, speed=speed)
    rows = plan_text2img(cfg, ["apple", "banana", "orange"], None)
    gen = Text2ImgGenerator(cfg, device, pipe=pipe, max_batch=batch)
    timed_rows = rows[batch:batch + n_images]

    def run() -> tuple[float, list]:
        gen.render(rows[:batch])  # warm-up
        sync(device)
        t = time.perf_counter()
        out = []
        for i in range(0, len(timed_rows), batch):
            out += gen.render(timed_rows[i:i + batch])
        sync(device)
        return len(timed_rows) / (time.perf_counter() - t), out

    base_ips, _ = run()
    spec = {"rank": rank, "alpha": float(rank), "unet_modules": ["to_k", "to_q", "to_v", "to_out.0"],
            "text_modules": [], "text_encoder": False}
    params = _inject(pipe, "bench", spec, seed=0)
    with torch.no_grad():  # a non-identity adapter (lora_B starts at zero)
        for n, p in params.items():
            if "lora_B" in n:
                p.normal_(0.0, 1e-2, generator=torch.Generator(device=p.device).manual_seed(1))
    activate(pipe, "bench")
    unmerged_ips, unmerged_imgs = run()
    for layer in _tuner_layers(pipe.unet):
        layer.merge(adapter_names=["bench"])
    merged_ips, merged_imgs = run()
    diff = max(float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max())
               for a, b in zip(unmerged_imgs, merged_imgs, strict=True))

    # training: a fresh pipeline in the run's dtype on random images (speed does not depend on content)
    tpipe = build_pipeline(tiny, device)
    tpipe.to(device, dtype)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(4)]
    lcfg = parse_config(LoRAConfig, {"rank": rank, "steps": train_steps, "batch_size": train_batch,
                                     "resolution": size, "checkpoint_every": 10**9})
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = train_adapter(tpipe, "c_bench", {"bench": imgs}, {"bench": "<bench>"}, {"bench": "bench"}, lcfg,
                            tmp, device, "bench", "benchmark")
        sync(device)
        train_s = time.perf_counter() - t
    out = {"lora_rank": rank, "base_img_s": base_ips, "lora_unmerged_img_s": unmerged_ips,
           "lora_merged_img_s": merged_ips, "lora_unmerged_over_base": unmerged_ips / base_ips,
           "lora_merged_over_unmerged": merged_ips / unmerged_ips, "lora_merge_max_pixel_diff": diff,
           "lora_train_steps": len(res.losses), "lora_train_batch": train_batch,
           "lora_train_s_per_step": train_s / max(1, len(res.losses))}
    print(f"LoRA rank {rank} (no compile, same batch)  : base {base_ips:.3f} img/s, unmerged adapter "
          f"{unmerged_ips:.3f} img/s ({out['lora_unmerged_over_base']:.2f}x base), merged {merged_ips:.3f} img/s "
          f"({out['lora_merged_over_unmerged']:.2f}x unmerged); max |merged - unmerged| pixel {diff:.2e}")
    print(f"LoRA training              : {out['lora_train_s_per_step']:.3f} s/step at {size} px, batch {train_batch} "
          f"({len(res.losses)} steps incl. VAE encoding of 4 images and the adapter write)")
    return out


def count_only(device: str) -> dict:
    """Parameters of the SD-1.5 components and UNet FLOPs at 512 px (checks configs/sd15)."""
    pipe = build_pipeline(False, device)
    res = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e6
           for name in ("unet", "vae", "text_encoder")}
    res["unet_gflop_per_call_512px"] = unet_flops(pipe, 1, 512, device) / 1e9
    print(f"SD-1.5 architecture (configs/sd15), random weights, on {device}: parameters "
          f"UNet {res['unet']:.1f} M, VAE {res['vae']:.1f} M, text encoder {res['text_encoder']:.1f} M; "
          f"UNet {res['unet_gflop_per_call_512px']:.1f} GFLOP per call at 512 px (64x64 latents, batch 1)")
    return res


def main(argv=None) -> dict:
    import torch
    from diffusers.utils import logging as dlogging

    from synthmix.generation.sd.config import SpeedConfig, Text2ImgConfig
    from synthmix.generation.sd.pipeline import prepare_pipeline
    from synthmix.generation.sd.text2img import Text2ImgGenerator, plan_text2img

    dlogging.set_verbosity_error()  # dtype-cast notices of the random-weight models
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny pipeline at 32 px (automatic without CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (GPU 50, tiny 4)")
    ap.add_argument("--batch", type=int, default=None, help="synthmix batch size (GPU 16, tiny 8)")
    ap.add_argument("--images", type=int, default=None, help="images timed in the batched run (GPU 64, tiny 16)")
    ap.add_argument("--naive-images", type=int, default=None, help="images timed in the naive loop (GPU 4, tiny 4)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile the UNet in the synthmix run (default: on with CUDA)")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode (max-autotune-no-cudagraphs: faster, minutes to tune)")
    ap.add_argument("--count-only", action="store_true",
                    help="build the SD-1.5 architecture (any device), print parameters and UNet FLOPs, stop")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True,
                    help="also time generation with a LoRA adapter (unmerged / merged) and LoRA training")
    ap.add_argument("--lora-rank", type=int, default=16, help="LoRA rank (DataDream: 16)")
    ap.add_argument("--lora-train-steps", type=int, default=None, help="timed LoRA training steps (GPU 20, tiny 3)")
    ap.add_argument("--lora-train-batch", type=int, default=None, help="LoRA training batch (GPU 8, tiny 2)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = "cuda" if cuda else "cpu"
    if a.count_only:
        return count_only(device)
    tiny = a.tiny or not cuda
    size = 32 if tiny else 512
    steps = a.steps or (4 if tiny else 50)
    batch = a.batch or (8 if tiny else 16)
    n_best = a.images or (16 if tiny else 64)
    n_naive = a.naive_images or 4
    compile_ = cuda if a.compile is None else a.compile
    naive_dtype = torch.float16 if cuda else torch.float32
    best_dtype = torch.bfloat16 if cuda else torch.float32
    guidance = 7.5
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU'} ({torch.get_num_threads()} threads); "
          f"model: {'tiny random-weight SD (32 px, synthmix.generation.sd.tiny)' if tiny else 'SD-1.5 architecture, random weights (configs/sd15)'}; "
          f"{size} px, {steps} steps, guidance {guidance}")
    if tiny:
        print("NOTE: tiny CPU run: these are not SD-1.5 GPU numbers (no GPU here); fp32 on CPU.")

    # peak: dense bf16 matmul (and the run's dtype on CPU)
    n, iters = (8192, 50) if cuda else (1024, 10)
    peak_bf16 = matmul_peak(device, torch.bfloat16, n, iters)
    peak_run = peak_bf16 if best_dtype == torch.bfloat16 else matmul_peak(device, best_dtype, n, iters)

    pipe = build_pipeline(tiny, device)
    prompts = ["a photo of a apple", "a photo of a banana", "a photo of a orange"]

    # 1) naive: plain diffusers defaults, fp16, one image per call
    pipe.to(device, naive_dtype)
    flops_per_image_step = unet_flops(pipe, 2 if guidance > 1 else 1, size, device)
    call = dict(num_inference_steps=steps, guidance_scale=guidance, height=size, width=size, output_type="np")
    pipe(prompts[0], generator=torch.Generator().manual_seed(0), **call)  # warm-up
    sync(device)
    t = time.perf_counter()
    for i in range(n_naive):
        pipe(prompts[i % 3], generator=torch.Generator().manual_seed(i), **call)
    sync(device)
    naive_s = time.perf_counter() - t

    # 2) synthmix: Text2ImgGenerator with its speed settings, batched, one generator per image
    pipe.to(device, best_dtype)
    speed = SpeedConfig(channels_last=True, attention="sdpa", compile=compile_, compile_mode=a.compile_mode)
    prepare_pipeline(pipe, speed, device)
    cfg = Text2ImgConfig(model="benchmark", steps=steps, guidance=guidance, width=size, height=size,
                         images_per_class=(n_best + batch + 2) // 3 + 1, speed=speed)
    rows = plan_text2img(cfg, ["apple", "banana", "orange"], None)
    gen = Text2ImgGenerator(cfg, device, pipe=pipe, max_batch=batch)
    t = time.perf_counter()
    gen.render(rows[:batch])  # warm-up (and compilation)
    sync(device)
    warmup_s = time.perf_counter() - t
    timed = rows[batch:batch + n_best]
    t = time.perf_counter()
    for i in range(0, len(timed), batch):
        gen.render(timed[i:i + batch])
    sync(device)
    best_s = time.perf_counter() - t

    # 3) the same UNet calls alone: share of wall time, FLOP/s
    cfg_batch = 2 if guidance > 1 else 1
    calls = steps * (len(timed) // batch)
    unet_s = time_unet_alone(pipe, cfg_batch * batch, size, calls, device)
    unet_flops_total = flops_per_image_step * steps * batch * (len(timed) // batch)
    res = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "tiny": tiny, "size": size, "steps": steps,
        "batch": batch, "compile": compile_, "naive_dtype": str(naive_dtype), "best_dtype": str(best_dtype),
        "naive_img_s": n_naive / naive_s, "synthmix_img_s": len(timed) / best_s,
        "warmup_s": warmup_s, "unet_gflop_per_image_step": flops_per_image_step / 1e9,
        "unet_tflop_s": unet_flops_total / unet_s / 1e12, "peak_bf16_tflop_s": peak_bf16 / 1e12,
        "peak_run_dtype_tflop_s": peak_run / 1e12,
        "unet_share_of_wall": unet_s * (len(timed) / (batch * (len(timed) // batch))) / best_s,
    }
    res["speedup"] = res["synthmix_img_s"] / res["naive_img_s"]
    res["unet_fraction_of_bf16_peak"] = res["unet_tflop_s"] / res["peak_bf16_tflop_s"]
    res["unet_fraction_of_run_dtype_peak"] = res["unet_tflop_s"] / res["peak_run_dtype_tflop_s"]
    print(f"naive batch-1 {str(naive_dtype).split('.')[-1]} loop : {res['naive_img_s']:.3f} img/s ({n_naive} images)")
    print(f"synthmix batch {batch} {str(best_dtype).split('.')[-1]}   : {res['synthmix_img_s']:.3f} img/s "
          f"({len(timed)} images; warm-up batch {warmup_s:.1f} s)")
    print(f"speed-up                   : {res['speedup']:.2f}x")
    print(f"UNet                       : {res['unet_gflop_per_image_step']:.2f} GFLOP per image-step (CFG pair), "
          f"{1000 * res['unet_tflop_s']:.2f} GFLOP/s")
    print(f"matmul peak (measured)     : bf16 {1000 * res['peak_bf16_tflop_s']:.1f} GFLOP/s"
          + ("" if best_dtype == torch.bfloat16 else
             f", {str(best_dtype).split('.')[-1]} {1000 * res['peak_run_dtype_tflop_s']:.1f} GFLOP/s"))
    print(f"UNet / bf16 peak           : {100 * res['unet_fraction_of_bf16_peak']:.1f} %"
          + ("" if best_dtype == torch.bfloat16 else
             f"  (/ {str(best_dtype).split('.')[-1]} peak: {100 * res['unet_fraction_of_run_dtype_peak']:.1f} %)"))
    print(f"UNet share of wall time    : {100 * res['unet_share_of_wall']:.1f} %")
    if a.lora:
        del gen, pipe
        res.update(lora_bench(tiny, device, best_dtype, size, steps, batch, n_best, a.lora_rank,
                              a.lora_train_steps or (3 if tiny else 20), a.lora_train_batch or (2 if tiny else 8)))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
