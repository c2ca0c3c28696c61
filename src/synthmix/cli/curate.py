"""``synthmix curate MANIFEST --model RUN_DIR [--out DIR] [--config CURATION.yaml]``."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command("curate")
def curate_cmd(
    manifest: Path = typer.Argument(..., help="Manifest with real train/val rows and synthetic rows."),
    model: Path = typer.Option(..., "--model", help="A finished run directory (synthmix train, or a "
                               "contrastive run) whose classifier scores the images."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: <manifest dir>/curated)."),
    config: Path = typer.Option(None, "--config", help="CurationConfig YAML (thresholds, pixel checks)."),
) -> None:
    """Sort synthetic images into in_dist / near_ood / reject by thresholds calibrated on real
    validation images. Writes a curated manifest, per-role grids and a list of rejected files
    (nothing is deleted)."""
    from synthmix.core.config import load_config
    from synthmix.curation.run import CurationConfig, curate_manifest

    cfg = load_config(CurationConfig, config) if config else CurationConfig()
    out = out or manifest.parent / "curated"
    s = curate_manifest(manifest, model, out, cfg)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s["counts"].items())) or "no synthetic rows"
    typer.echo(f"{s['n_synthetic']} synthetic rows -> {counts}")
    typer.echo(f"curated manifest: {Path(out) / s['manifest']}")
