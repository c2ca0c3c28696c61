"""``synthmix inspect MANIFEST --run CLASSIFIER_RUN [--out DIR]``: diagnostics of synthetic images."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command("inspect")
def inspect_cmd(
    manifest: Path = typer.Argument(..., help="A manifest with synthetic rows (generated or curated); real "
                                    "rows come from it or from the run's own manifest."),
    run: Path = typer.Option(..., "--run", help="A finished REAL-trained classifier run (synthmix train): "
                             "its features are the default feature space, its predictions the label check."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: <manifest dir>/diagnostics)."),
    config: Path = typer.Option(None, "--config", help="InspectConfig YAML (roles, k, copy thresholds, "
                                "feature space)."),
    features: str = typer.Option(None, "--features", help="classifier | inception | hf (overrides the config)."),
    weights: Path = typer.Option(None, "--weights", help="Local weights for --features inception (a .pth "
                                 "file) or hf (a save_pretrained folder). Nothing is downloaded."),
    cas_run: list[Path] = typer.Option([], "--cas-run", help="A finished synthetic-only run (repeat per "
                                       "seed): its real-test accuracy is the CAS."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as markdown instead."),
) -> None:
    """Diagnostics of synthetic images: fidelity, coverage, diversity, labels, memorisation.

    Per role and class, synthetic vs real train images: precision, recall, density, coverage, FID,
    KID, diversity, label agreement, nearest real train / test image (copy test), with real
    validation images as a reference. Writes diagnostics.json and PNG grids."""
    from synthmix.core.config import load_config, parse_config
    from synthmix.diagnostics.inspect import InspectConfig, inspect_manifest, markdown_table

    cfg = load_config(InspectConfig, config) if config else InspectConfig()
    if features or weights:
        fs = {**cfg.features.model_dump(), **{k: v for k, v in (("kind", features), ("weights", weights)) if v}}
        cfg = parse_config(InspectConfig, {**cfg.model_dump(), "features": fs}, source="--features / --weights")
    out = out or manifest.parent / "diagnostics"
    diag = inspect_manifest(manifest, run, out, cfg, cas_runs=cas_run)
    if markdown:
        typer.echo(markdown_table(diag))
    else:
        import sys

        from rich.console import Console

        # off a terminal rich assumes 80 columns and would cut every number short
        Console(width=None if sys.stdout.isatty() else 150).print(rich_table(diag))
    for w in diag["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"diagnostics: {out / 'diagnostics.json'}")


def rich_table(diag):
    """The per-set, per-class table (feature space in the title)."""
    from rich.table import Table

    from synthmix.diagnostics.inspect import columns

    ct = diag["copy_test"]
    t = Table(title=f"Synthetic images vs real train images — feature space: {diag['feature_space']['name']}",
              caption=f"{diag['feature_space']['note']} Copy test: feature cosine ≥ {ct['cosine_threshold']:.3f} "
                      f"({ct['cosine_threshold_source']}) or pixel difference ≤ {ct['pixel_threshold']} at "
                      f"{ct['pixel_size']} px. 'real_val' = real validation images through the same test.")
    short = {"precision": "prec.", "coverage": "cover.", "diversity_ratio": "divers.", "agreement": "agree",
             "memorised_train": "copy(train)", "leak_test": "copy(test)", "density": "dens.",
             "clip_score": "CLIP"}
    metrics = columns(diag)
    for c in ("set", "class", "n", *metrics):
        t.add_column(short.get(c, c), justify="left" if c in ("set", "class") else "right", no_wrap=True)
    sets = list(diag["groups"].items()) + [(f"{g} (ref.)", d) for g, d in diag.get("reference", {}).items()]
    for g, d in sets:
        for i, (cls, m) in enumerate([("all", d["overall"]), *d["per_class"].items()]):
            t.add_row(g if i == 0 else "", cls, *(_fmt(m.get(c)) for c in ("n", *metrics)),
                      end_section=i == len(d["per_class"]))
    return t


def _fmt(v) -> str:
    if v is None:
        return "–"
    return str(v) if isinstance(v, int) else f"{v:.3f}"
