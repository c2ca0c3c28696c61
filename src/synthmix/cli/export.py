"""``synthmix export RUN_OR_MANIFEST --out DIR``: the curated set as a Hugging Face ImageFolder."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command("export")
def export_cmd(
    source: Path = typer.Argument(..., help="A training run directory (exports exactly the rows it trained "
                                  "on + the real val/test images) or a manifest (real rows + in_dist rows)."),
    out: Path = typer.Option(..., "--out", help="New folder for the export (a previous export is replaced)."),
    role: list[str] = typer.Option(None, "--role", help="Synthetic role to export from a manifest (repeat; "
                                   "default in_dist; 'unsorted' for an uncurated manifest)."),
    near_ood: bool = typer.Option(False, "--near-ood", help="Also write near_ood images to near_ood/<class>/."),
) -> None:
    """Export real + curated synthetic images as an ImageFolder that Hugging Face datasets loads.

    Writes DIR/<split>/<label>/<file>, a metadata.jsonl per split (file_name, label, role,
    provenance) read by datasets.load_dataset("imagefolder", data_dir=DIR), and manifest.parquet."""
    from synthmix.diagnostics.export import ExportConfig, export_dataset

    cfg = ExportConfig(near_ood=near_ood, **({"roles": role} if role else {}))
    s = export_dataset(source, out, cfg)
    for split, c in s["counts"].items():
        typer.echo(f"{split}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    for w in s["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"exported {s['n']} images to {out} (load: datasets.load_dataset('imagefolder', data_dir='{out}'))")
