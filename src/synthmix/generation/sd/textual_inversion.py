"""Textual inversion (DA-Fusion step a): learn one new token embedding per class.

Our own loop, after diffusers' ``examples/textual_inversion``: the pipeline's UNet, VAE and
text encoder stay frozen; a single vector ``e`` of shape [D] (the text encoder's width) is
learned per class, so that ``unet(noisy latents, t, text_encoder("a photo of a <token>"))``
predicts the noise of that class's real train images.

Differences from the example, on purpose:

* the vector is a separate parameter substituted into the token-embedding output by a
  forward hook, so the text encoder's weights are never written (no "restore the other rows"
  step; only the new token rows change when the result is installed);
* the VAE encodes each training image (and its mirror image) once; steps sample latents from
  the cached mean/std, instead of running the VAE encoder every step;
* the random draws of step ``k`` come from ``derive_seed(seed, token, k)``, so a run resumed
  from a checkpoint continues exactly as an uninterrupted one would.

Files per class (under ``<out_dir>/textual_inversion/``): ``<name>.safetensors`` — the result,
``{token: [1, D]}`` (the diffusers ``load_textual_inversion`` format) — and, while training,
``<name>.state.safetensors`` (vector + Adam moments + step), both written atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmix.core.errors import ConfigError, TrainingError
from synthmix.core.hashing import config_hash
from synthmix.core.io import atomic_path
from synthmix.core.seeding import derive_seed, torch_generator

log = logging.getLogger(__name__)


@dataclass
class TIResult:
    """One class's learned token: ``embedding`` [D] (float32, CPU) and the losses of the steps run now."""

    token: str
    embedding: Any
    path: Path
    losses: list[float] = field(default_factory=list)
    start_step: int = 0


def ti_filename(token: str, suffix: str = ".safetensors") -> str:
    """File name of a token's embedding: ``<apple>`` -> ``apple.safetensors`` (no <> on any OS)."""
    return token.strip("<>") + suffix


def check_supported(pipe) -> None:
    """Textual inversion here needs one CLIP-style text encoder + tokenizer and a UNet (SD 1.x / 2.x)."""
    missing = [n for n in ("unet", "vae", "text_encoder", "tokenizer") if getattr(pipe, n, None) is None]
    if missing or getattr(pipe, "text_encoder_2", None) is not None:
        raise ConfigError(
            f"generator.textual_inversion: {type(pipe).__name__} is not supported (needs exactly one text "
            f"encoder and a UNet, as in SD 1.x / 2.x{'; missing ' + ', '.join(missing) if missing else ''}). "
            "Set textual_inversion.enabled: false to run img2img with class-name prompts instead.")


def install_tokens(tokenizer, text_encoder, embeddings: dict[str, Any]) -> list[int]:
    """Add ``tokens`` to the tokenizer (if new) and set their embedding rows; returns their ids.

    ``embeddings``: token -> tensor [D] or [1, D]. Rows of existing tokens are not touched.
    """
    import torch

    new = [t for t in embeddings if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(new)
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    table = text_encoder.get_input_embeddings().weight
    ids = []
    with torch.no_grad():
        for token, emb in embeddings.items():
            (tid,) = tokenizer.convert_tokens_to_ids([token])
            table[tid] = emb.reshape(-1).to(table.device, table.dtype)
            ids.append(tid)
    return ids


def initial_embedding(tokenizer, text_encoder, words: str):
    """Mean embedding [D] of the tokens of ``words`` (e.g. the class name) as the starting point."""
    import torch

    ids = tokenizer(words, add_special_tokens=False).input_ids
    if not ids:
        raise ConfigError(f"generator.textual_inversion.initializer: {words!r} gives no tokens")
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        return table[torch.tensor(ids, device=table.device)].float().mean(0).cpu()


def token_list(token: str, n: int) -> list[str]:
    """The tokens of a class learned with ``n`` vectors: ``<apple>``, ``<apple>_1``, ... (diffusers'
    multi-vector naming: its pipelines expand ``<apple>`` in a prompt to all of them)."""
    return [token] + [f"{token}_{i}" for i in range(1, n)]


def num_vectors(cfg, tokenizer, init_words: str) -> int:
    """Vectors per class token: ``cfg.vectors``, or with ``"pieces"`` one per word piece of the
    initializer words (DA-Fusion: ``<piece>`` per BPE piece of the class name)."""
    if cfg.vectors == "pieces":
        return max(1, len(tokenizer(init_words, add_special_tokens=False).input_ids))
    return int(cfg.vectors)


def initial_vectors(tokenizer, text_encoder, words: str, n: int):
    """[n, D] starting vectors: the embedding of each word piece of ``words`` when it has exactly
    ``n`` pieces (DA-Fusion), else ``n`` copies of their mean."""
    import torch

    ids = tokenizer(words, add_special_tokens=False).input_ids
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        if len(ids) == n:
            return table[torch.tensor(ids, device=table.device)].float().cpu().clone()
    return initial_embedding(tokenizer, text_encoder, words).expand(n, -1).clone()


def _install_file_rows(pipe, token: str, rows, path: Path, step: int) -> TIResult:
    """Install a token file's ``[n, D]`` rows as ``token_list(token, n)``; returns its TIResult."""
    rows = rows.reshape(-1, rows.shape[-1])
    n = rows.shape[0]
    install_tokens(pipe.tokenizer, pipe.text_encoder, dict(zip(token_list(token, n), rows, strict=True)))
    return TIResult(token, (rows.reshape(-1) if n == 1 else rows).float(), path, [], step)


def fingerprint(model: str, revision: str | None, cfg, token: str, init_words: str,
                image_ids: Sequence[str]) -> str:
    """What a learned embedding depends on; a checkpoint with another fingerprint is not reused."""
    from synthmix.generation.sd.config import content_dump

    data = content_dump(cfg, exclude={"checkpoint_every", "enabled", "recipe"})
    return config_hash({"model": model, "revision": revision, "ti": data, "token": token,
                        "init": init_words, "images": sorted(image_ids)}, n=16)


def encode_images(pipe, images, resolution: int, flip: bool, device: str):
    """VAE latent mean/std [N(x2 with flips), C, h, w] of PIL images, computed once (see the training loops)."""
    return _encode_images(pipe, images, resolution, flip, device)


def check_token_files(folder: str | Path, tokens: Sequence[str]) -> None:
    """Loud failure before anything is made: every token needs ``<folder>/<name>.safetensors``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"generator.textual_inversion.load_from: {folder} is not a folder")
    missing = [ti_filename(t) for t in tokens if not (folder / ti_filename(t)).is_file()]
    if missing:
        raise ConfigError(f"generator.textual_inversion.load_from: {folder} lacks {missing} "
                          f"(one <class>.safetensors per class token {list(tokens)}); a missing embedding would "
                          "leave the token as meaningless characters in the prompt")


def load_token(pipe, token: str, folder: str | Path, vectors: int | str | None = None) -> TIResult:
    """Install the finished embedding of ``token`` from ``<folder>/<name>.safetensors`` (``{token: [n, D]}``;
    ``n > 1`` rows become ``<token>``, ``<token>_1``, ...; ``vectors`` (an int) must then equal ``n``).

    The file must hold exactly this token with the text encoder's width: a file for another token or
    model fails with a :class:`ConfigError` naming it (diffusers would load a mismatched file silently
    or not at all)."""
    from safetensors import safe_open

    path = Path(folder).expanduser() / ti_filename(token)
    check_token_files(folder, [token])
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        if keys != [token]:
            raise ConfigError(f"{path}: holds {keys}, expected exactly the token {token!r}")
        emb = f.get_tensor(token)
        step = int((f.metadata() or {}).get("step", 0))
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    if emb.shape[-1] != width:
        raise ConfigError(f"{path}: embedding of width {emb.shape[-1]}, but the text encoder of this "
                          f"model has width {width}: the token was learned for another base model")
    n = emb.reshape(-1, width).shape[0]
    if vectors not in (None, "pieces") and int(vectors) != n:
        raise ConfigError(f"{path}: {n} vector(s) for {token}, but textual_inversion.vectors is {vectors}")
    return _install_file_rows(pipe, token, emb, path, step)


def check_tokens_known(tokenizer, prompts: Sequence[str], tokens: Sequence[str]) -> None:
    """Loud failure: a class token used by a prompt must be one token of the tokenizer (installed);
    otherwise CLIP splits ``<apple>`` into characters and the learned embedding is silently unused."""
    vocab = tokenizer.get_vocab()
    absent = sorted({t for t in tokens if t not in vocab and any(t in p for p in prompts)})
    if absent:
        raise ConfigError(f"generator: the prompts use the tokens {absent}, which the tokenizer does not know "
                          "(no embedding installed); the pipeline would ignore them silently")


def _encode_images(pipe, images, resolution: int, flip: bool, device: str):
    """VAE latent mean/std [N(x2 with flips), C, h, w] of the training images, computed once."""
    import numpy as np
    import torch

    arrays = []
    for img in images:
        sq = img.convert("RGB").resize((resolution, resolution), resample=3)  # bicubic, like DA-Fusion
        arrays.append(np.asarray(sq))
        if flip:
            arrays.append(np.asarray(sq)[:, ::-1])
    x = torch.from_numpy(np.stack(arrays).copy()).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    vae = pipe.vae
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(x), 8):
            dist = vae.encode(x[i:i + 8].to(device, vae.dtype)).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
    return torch.cat(means), torch.cat(stds)


def save_state(path: Path, tensors: dict[str, Any], step: int, fp: str, **metadata: str) -> None:
    """Atomically write a training checkpoint: ``tensors`` + ``step`` + ``fingerprint`` (+ metadata)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step), "fingerprint": fp, **metadata})


def _save_state(path: Path, emb, opt, step: int, fp: str) -> None:
    st = opt.state.get(opt.param_groups[0]["params"][0], {})
    tensors = {"embedding": emb}
    if st:
        tensors["exp_avg"] = st["exp_avg"]
        tensors["exp_avg_sq"] = st["exp_avg_sq"]
    save_state(path, tensors, step, fp)


def load_state(path: Path, fp: str):
    """``(step, tensors)`` of a checkpoint written by :func:`save_state`; another fingerprint is an error."""
    return _load_state(path, fp)


def _load_state(path: Path, fp: str):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("fingerprint") != fp:
            raise ConfigError(f"{path}: textual-inversion checkpoint made with other settings, images or "
                              "model; use a new out_dir or delete this file to retrain")
        return int(meta["step"]), {k: f.get_tensor(k) for k in f.keys()}


def train_token(pipe, images, token: str, init_words: str, cfg, out_dir: str | Path, device: str,
                fp: str) -> TIResult:
    """Learn (or load, or resume) the embedding of ``token`` from ``images`` (PIL RGB).

    Writes ``<out_dir>/<token>.safetensors`` when done; checkpoints every ``cfg.checkpoint_every``.
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from safetensors.torch import save_file

    check_supported(pipe)
    out_dir = Path(out_dir)
    final = out_dir / ti_filename(token)
    state_path = out_dir / ti_filename(token, ".state.safetensors")
    if final.exists():
        step, tensors = _load_state(final, fp)
        return _install_file_rows(pipe, token, tensors[token], final, step)

    tok, te, unet = pipe.tokenizer, pipe.text_encoder, pipe.unet
    n = num_vectors(cfg, tok, init_words)
    if n == 1:
        init = initial_embedding(tok, te, init_words)
        (token_id,) = install_tokens(tok, te, {token: init})
    else:  # several vectors: <token>, <token>_1, ... (diffusers' multi-vector naming)
        init = initial_vectors(tok, te, init_words, n)
        token_ids = install_tokens(tok, te, dict(zip(token_list(token, n), init, strict=True)))
    emb = torch.nn.Parameter(init.clone().to(device))
    opt = torch.optim.AdamW([emb], lr=cfg.learning_rate, weight_decay=0.0)
    start = 0
    if state_path.exists():
        start, tensors = _load_state(state_path, fp)
        with torch.no_grad():
            emb.copy_(tensors["embedding"].reshape(emb.shape).to(device))
        if "exp_avg" in tensors:
            sd = opt.state_dict()
            sd["state"] = {0: {"step": torch.tensor(float(start)),
                               "exp_avg": tensors["exp_avg"].reshape(emb.shape).to(device),
                               "exp_avg_sq": tensors["exp_avg_sq"].reshape(emb.shape).to(device)}}
            opt.load_state_dict(sd)
        log.info("%s: resuming textual inversion at step %d", token, start)

    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    n_train = noise_sched.config.num_train_timesteps
    prediction = noise_sched.config.prediction_type
    scale = pipe.vae.config.scaling_factor
    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0
    lat_mean, lat_std = _encode_images(pipe, images, cfg.resolution, cfg.flip, device)
    prompts = [t.format(token=" ".join(token_list(token, n))) for t in cfg.templates]
    ids_all = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(device)

    def substitute(_module, inputs, output):
        # the new token's rows come from the learned vector: gradients reach only ``emb``
        if n == 1:
            mask = (inputs[0] == token_id).unsqueeze(-1)
            return torch.where(mask, emb.to(output.dtype), output)
        for i, tid in enumerate(token_ids):
            output = torch.where((inputs[0] == tid).unsqueeze(-1), emb[i].to(output.dtype), output)
        return output

    hook = te.get_input_embeddings().register_forward_hook(substitute)
    for p in (*te.parameters(), *unet.parameters(), *pipe.vae.parameters()):
        p.requires_grad_(False)
    losses = []
    try:
        for step in range(start, cfg.steps):
            g = torch_generator(derive_seed(cfg.seed, token, step))
            idx = torch.randint(len(lat_mean), (cfg.batch_size,), generator=g)
            eps_lat = torch.randn(lat_mean[idx].shape, generator=g)
            latents = ((lat_mean[idx] + lat_std[idx] * eps_lat.to(device)) - shift) * scale
            noise = torch.randn(latents.shape, generator=g).to(device)
            t = torch.randint(0, n_train, (cfg.batch_size,), generator=g).to(device)
            which = torch.randint(len(prompts), (cfg.batch_size,), generator=g).to(device)
            noisy = noise_sched.add_noise(latents, noise, t)
            hidden = te(ids_all[which])[0]
            pred = unet(noisy.to(unet.dtype), t, hidden.to(unet.dtype)).sample
            target = noise if prediction == "epsilon" else noise_sched.get_velocity(latents, noise, t)
            loss = F.mse_loss(pred.float(), target.float())
            if not torch.isfinite(loss):
                raise TrainingError(f"textual inversion of {token}: loss is {loss.item()} at step {step} "
                                    "(try a lower learning_rate or dtype float32)")
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                _save_state(state_path, emb, opt, step + 1, fp)
    finally:
        hook.remove()
    learned = emb.detach().float().cpu()
    install_tokens(tok, te, dict(zip(token_list(token, n), learned.reshape(n, -1), strict=True)))
    with atomic_path(final) as tmp:
        save_file({token: learned.reshape(n, -1).contiguous()}, str(tmp),
                  metadata={"step": str(cfg.steps), "fingerprint": fp, "init": init_words, "vectors": str(n)})
    state_path.unlink(missing_ok=True)
    return TIResult(token, learned, final, losses, start)
