"""``synthmix train CONFIG [--seeds 0 1 2] [--out RUN_DIR]`` and ``synthmix evaluate RUN_DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="TrainRunConfig YAML (see docs/training.md)."),
    seeds: list[int] = typer.Option(None, "--seeds", help="Independent runs, one per seed "
                                    "(RUN_DIR/seed-<s>); e.g. --seeds 0 --seeds 1 or --seeds 0 1 2."),
    out: Path = typer.Option(None, "--out", help="Run directory (default: runs/<config name>)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train a classifier on a mix of real and synthetic rows; evaluate it; with --seeds, report
    mean ± 95 % CI over seeds. Re-running the command resumes where it stopped."""
    from synthmix.core.config import load_config
    from synthmix.distributed import launcher_env
    from synthmix.training.train import TrainRunConfig, train_run, train_seeds

    seeds = _seeds(seeds, ctx.args)
    cfg = load_config(TrainRunConfig, config)
    out = out or Path("runs") / config.stem
    if launcher_env() is not None:  # torchrun / accelerate launch: data-parallel training
        from synthmix.core.errors import ConfigError
        from synthmix.training.ddp import train_run_ddp

        if seeds:
            raise ConfigError("--seeds under a launcher: run one job per seed (each with --out RUN_DIR/seed-<s>)")
        res = train_run_ddp(cfg, out, progress=progress)
        if "eval" in res:  # rank 0
            _print_results(res)
            typer.echo(f"run: {out}")
        from synthmix.distributed import finish

        finish()  # close the process group and exit without gloo's teardown race
    if seeds:
        summary = train_seeds(cfg, out, seeds, progress=progress)
        _print_summary(summary)
        typer.echo(f"summary: {out / 'summary.json'}")
    else:
        res = train_run(cfg, out, progress=progress)
        _print_results(res)
        typer.echo(f"run: {out}")


@app.command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="A finished run directory (made by synthmix train)."),
    split: str = typer.Option("test", "--split", help="Manifest split to evaluate."),
    folder: Path = typer.Option(None, "--folder", help="Evaluate on this ImageFolder instead "
                                "(classes matched by name; extra classes skipped)."),
    name: str = typer.Option(None, "--name", help="Name of the output folder under RUN_DIR/eval/."),
    gradcam: bool = typer.Option(True, "--gradcam/--no-gradcam", help="Write Grad-CAM overlays."),
) -> None:
    """Evaluate a trained run: metrics, ROC/PR/confusion/calibration plots, Grad-CAM, cached features."""
    from synthmix.evaluation.evaluate import headline
    from synthmix.training.rundir import evaluate_run

    res = evaluate_run(run_dir, split=split, folder=folder, name=name, gradcam=gradcam)
    _print_results({"eval": {res["name"]: headline(res) if "accuracy" in res else None}})
    if "mapping" in res:
        m = res["mapping"]
        typer.echo(f"classes matched: {m['matched']}; skipped folders: {m['extra'] or 'none'}; "
                   f"run classes without images: {m['missing'] or 'none'}")
    typer.echo(f"written: {Path(run_dir) / 'eval' / res['name']}")


def _seeds(seeds: list[int] | None, extra: list[str]) -> list[int]:
    """``--seeds 0 1 2``: click gives the first value to the option and leaves the rest as
    extra arguments; accept those (integers only, and only after --seeds)."""
    if extra and not seeds:
        raise typer.BadParameter(f"unexpected arguments {extra}", param_hint="CONFIG")
    try:
        more = [int(a) for a in extra]
    except ValueError:
        raise typer.BadParameter(f"seeds must be integers, got {extra}", param_hint="--seeds") from None
    out = list(seeds or []) + more
    if len(set(out)) != len(out):
        raise typer.BadParameter(f"repeated seed in {out}", param_hint="--seeds")
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _print_results(res: dict) -> None:
    from rich.table import Table

    from synthmix.core.log import console
    from synthmix.evaluation.evaluate import HEADLINE

    t = Table("set", "n", *HEADLINE)
    for name, m in res.get("eval", {}).items():
        if m:
            t.add_row(name, str(m.get("n")), *(_fmt(m.get(k)) for k in HEADLINE))
    console().print(t)


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    from synthmix.core.log import console
    from synthmix.evaluation.stats import format_ci

    t = Table("set", "metric", "mean ± 95 % CI", "per seed")
    for split, metrics in summary["splits"].items():
        for k, ci in metrics.items():
            t.add_row(split, k, format_ci(ci), " ".join(f"{v:.4f}" for v in ci["values"]))
    console().print(t)
