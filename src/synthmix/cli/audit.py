"""``synthmix audit RUN_DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command()
def audit(run_dir: Path = typer.Argument(..., help="A run directory (or any folder holding manifests)."),
          no_hash: bool = typer.Option(False, "--no-hash", help="Skip re-hashing files (faster).")) -> None:
    """Check manifests against the disk: files exist with their hash, every file has a row, plan complete."""
    from rich.markup import escape

    from synthmix.audit import audit_run
    from synthmix.core.log import console

    problems, counts = audit_run(run_dir, check_hashes=not no_hash)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    for p in problems:
        mark = "[yellow]![/] warning:" if p.warning else "[red]✗[/]"
        console().print(f"{mark} {escape(str(p))}", highlight=False, markup=True, soft_wrap=True)
    n_errors = sum(not p.warning for p in problems)
    if n_errors:
        console().print(f"[bold red]{n_errors} problem(s)[/] ({summary})", soft_wrap=True)
        raise typer.Exit(1)
    console().print(f"[green]✓ audit passed[/] ({summary})", soft_wrap=True)
