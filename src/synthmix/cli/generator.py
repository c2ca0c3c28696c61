"""``synthmix generator ...``: train, sample from, inspect and measure the embedded generator."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app

gen_app = typer.Typer(help="The embedded diffusion generator: train, sample, grid, fidelity.",
                      no_args_is_help=True)
app.add_typer(gen_app, name="generator")


def _floats(text: str) -> list[float]:
    from synthmix.core.errors import ConfigError

    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--strengths: expected comma-separated numbers, got {text!r}") from None


@gen_app.command("train")
def train(config: Path = typer.Argument(..., help="YAML TrainConfig (manifest, out_dir, steps, ...)"),
          steps: int = typer.Option(None, help="override the step budget"),
          max_minutes: float = typer.Option(None, help="override the wall-clock budget"),
          out_dir: str = typer.Option(None, help="override out_dir"),
          manifest: str = typer.Option(None, help="override manifest")) -> None:
    """Train (or resume) the generator on the manifest's real train images; prints the checkpoint."""
    from synthmix.core.config import load_yaml, parse_config
    from synthmix.generation.embedded.config import TrainConfig
    from synthmix.generation.embedded.train import train_generator

    data = load_yaml(config) or {}
    for k, v in (("steps", steps), ("max_minutes", max_minutes), ("out_dir", out_dir),
                 ("manifest", manifest)):
        if v is not None:
            data[k] = v
    cfg = parse_config(TrainConfig, data, source=str(config))
    typer.echo(str(train_generator(cfg)))


@gen_app.command("sample")
def sample(checkpoint: Path = typer.Argument(..., help="checkpoint.pt from `generator train`"),
           out_dir: Path = typer.Option(..., help="writes manifest.jsonl + images/ here"),
           per_class: int = typer.Option(16), guidance: float = typer.Option(2.0),
           steps: int = typer.Option(25), sampler: str = typer.Option("ddim"),
           seed: int = typer.Option(0), batch_size: int = typer.Option(32),
           device: str = typer.Option("auto")) -> None:
    """Class-conditional samples (resumable: a re-run skips images already written)."""
    from synthmix.core.device import pick_device
    from synthmix.generation.embedded.backend import EmbeddedGenerator, plan_rows
    from synthmix.generation.embedded.checkpoint import load_generator
    from synthmix.generation.embedded.config import EmbeddedGenerateConfig
    from synthmix.generation.protocol import run_generation
    from synthmix.generation.writer import ImageWriter

    cfg = EmbeddedGenerateConfig(checkpoint=str(checkpoint), per_class=per_class, guidance=guidance,
                                 steps=steps, sampler=sampler, seed=seed, batch_size=batch_size)
    loaded = load_generator(checkpoint, device=pick_device(device))
    counts = run_generation(EmbeddedGenerator(loaded, sampler), plan_rows(cfg, loaded),
                            ImageWriter(out_dir / "manifest.jsonl", out_dir / "images"), batch_size)
    typer.echo(counts)


@gen_app.command("grid")
def grid(checkpoint: Path = typer.Argument(...),
         manifest: Path = typer.Option(..., help="manifest with the real train images (parents)"),
         out: Path = typer.Option(Path("generator-grid.png"), help="PNG to write"),
         n: int = typer.Option(8, help="images per row"),
         strengths: str = typer.Option("0.3,0.5,0.7,0.9", help="img2img strengths, one row each"),
         interp_weight: float = typer.Option(0.5, help="weight of the other class in the interp row"),
         guidance: float = typer.Option(2.0), steps: int = typer.Option(25),
         sampler: str = typer.Option("ddim"), seed: int = typer.Option(0)) -> None:
    """Per class: real images, samples, img2img of those real images per strength, interp."""
    from synthmix.generation.embedded.report import comparison_grid

    path = comparison_grid(checkpoint, manifest, out, n=n, strengths=_floats(strengths),
                           interp_weight=interp_weight, guidance=guidance, steps=steps, sampler=sampler,
                           seed=seed)
    typer.echo(str(path))


@gen_app.command("fidelity")
def fidelity(checkpoint: Path = typer.Argument(...),
             manifest: Path = typer.Option(..., help="manifest with real train and test rows"),
             out: Path = typer.Option(None, help="write the report as JSON here"),
             per_class: int = typer.Option(100, help="samples per class"),
             strengths: str = typer.Option("0.2,0.4,0.5,0.6,0.7,0.8,0.9,1.0"),
             guidance: float = typer.Option(2.0), steps: int = typer.Option(25),
             sampler: str = typer.Option("ddim"), seed: int = typer.Option(0)) -> None:
    """Class fidelity, synthetic-only real-test accuracy and the img2img strength sweep."""
    from synthmix.core.io import atomic_write_json
    from synthmix.generation.embedded.fidelity import measure_fidelity, pick_strengths
    from synthmix.generation.embedded.report import print_report

    rep = measure_fidelity(str(checkpoint), str(manifest), per_class=per_class,
                           strengths=_floats(strengths), guidance=guidance, steps=steps, sampler=sampler,
                           seed=seed)
    rep["chosen_strengths"] = pick_strengths(rep["strength_sweep"])
    if out:
        atomic_write_json(out, rep)
    print_report(rep)
