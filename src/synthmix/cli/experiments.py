"""``synthmix run | status | report | demo``: a whole study from one YAML, resumable, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app


@app.command("run")
def run(config: Path = typer.Argument(..., help="study YAML (see configs/)"),
        out: Path = typer.Option(None, "--out", help="run directory (default: runs/<study name>)"),
        device: str = typer.Option(None, help="auto / cpu / cuda / cuda:1 (default: the study's device)"),
        threads: int = typer.Option(None, help="torch CPU threads (default: the study's, else torch's)"),
        jobs: int = typer.Option(None, help="worker processes for the cells' training / evaluation "
                                 "(default: one per thread on a CPU, 1 on a GPU)"),
        report: bool = typer.Option(True, "--report/--no-report", help="write report.html at the end")) -> None:
    """Run every missing stage of a study (resumes after a kill; failed cells do not stop the others)."""
    from synthmix.core.log import console
    from synthmix.experiments.runner import run_study

    summary = run_study(config, out, device=device, threads=threads, jobs=jobs)
    _finish(summary, out, report, console())


@app.command("status")
def status(target: Path = typer.Argument(..., help="a study YAML or a run directory"),
           out: Path = typer.Option(None, "--out", help="run directory of a study YAML (default: runs/<name>)"),
           as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Cells done / running / failed / pending (running = locked by a live process)."""
    import json

    from synthmix.experiments.status import study_status

    st = study_status(target, out)
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    from rich.table import Table

    from synthmix.core.log import console

    colours = {"done": "green", "running": "yellow", "failed": "red", "pending": "dim"}
    table = Table(title=f"{st['study']} · {st['run_dir']}")
    for col in ("cell", "state", "detail"):
        table.add_column(col)
    for c in st["cells"]:
        detail = f"{c['stage']}: {c['message']}" if c["message"] else (c["stage"] or "")
        table.add_row(c["id"], f"[{colours[c['state']]}]{c['state']}[/]", detail)
    console().print(table)
    console().print(", ".join(f"{n} {s}" for s, n in st["counts"].items()))


@app.command("check")
def check(run_dir: Path = typer.Argument(..., help="a run directory made by `synthmix run` / `synthmix demo`")) -> None:
    """Exit 1 unless the run is complete and sound: no failed/blocked/pending cell, all seeds, every
    synthetic setup trained on synthetic images, verdicts present, a report whose images all load."""
    from synthmix.experiments.check import problems

    found = problems(run_dir)
    for p in found:
        typer.echo(f"FAIL: {p}")
    typer.echo(f"{run_dir}: {'OK' if not found else f'{len(found)} problem(s)'}")
    if found:
        raise typer.Exit(1)


@app.command("report")
def report(run_dir: Path = typer.Argument(..., help="a run directory made by `synthmix run`"),
           out: Path = typer.Option(None, "--out", help="HTML file (default: RUN_DIR/report.html)"),
           markdown: bool = typer.Option(False, "--markdown",
                                         help="print the answer table as Markdown instead of writing HTML"),
           metric: list[str] = typer.Option(None, "--metric",
                                            help="with --markdown: only these columns (repeatable)")) -> None:
    """Write the self-contained HTML report from the run's saved results (trains nothing)."""
    if markdown:
        from synthmix.experiments.results import aggregate, ood_detector_markdown
        from synthmix.reporting.tables import markdown_table
        from synthmix.reporting.verdict import answer_text, caveats, verdict_markdown

        summary = aggregate(run_dir)
        typer.echo("\n\n".join(p for p in (answer_text(summary), verdict_markdown(summary),
                                              markdown_table(summary, metrics=metric or None),
                                              ood_detector_markdown(summary.get("ood_by_detector") or {}),
                                              "\n".join(f"- {c}" for c in caveats(summary))) if p))
        return
    from synthmix.reporting.html import build_report

    typer.echo(str(build_report(run_dir, out)))


@app.command("demo")
def demo(quick: bool = typer.Option(False, "--quick", help="tiny budgets: finishes in about a minute"),
         out: Path = typer.Option(None, "--out", help="run directory (default: runs/demo or runs/demo-quick)"),
         device: str = typer.Option(None, help="auto / cpu / cuda"),
         threads: int = typer.Option(None, help="torch CPU threads (default: the demo config's)"),
         jobs: int = typer.Option(None, help="worker processes for the cells (default: one per thread on a "
                                  "CPU)")) -> None:
    """The whole study on the bundled fruits photos with the embedded generator, offline, then the report."""
    from synthmix.core.log import console
    from synthmix.experiments.runner import run_study

    config = demo_config(quick)
    console().print(f"[bold]synthmix demo[/] ({'quick' if quick else 'full'}): {config}")
    summary = run_study(config, out or Path("runs") / config.stem, device=device, threads=threads, jobs=jobs)
    _finish(summary, out or Path("runs") / config.stem, True, console())


def demo_config(quick: bool) -> Path:
    """The packaged demo study (``synthmix/configs/demo[-quick].yaml``)."""
    from importlib.resources import files

    return Path(str(files("synthmix") / "configs" / ("demo-quick.yaml" if quick else "demo.yaml")))


def _finish(summary: dict, out: Path | None, report: bool, con) -> None:
    from synthmix.reporting.verdict import answer_text

    run = summary.get("run", {})
    con.print(f"[bold]done[/] in {run.get('seconds', 0):.0f} s: {run.get('ran', 0)} stages ran, "
              f"{run.get('skipped_done', 0)} already done, {run.get('failed', 0)} failed, "
              f"{run.get('blocked', 0)} blocked")
    con.print(answer_text(summary))
    if report:
        from synthmix.reporting.html import build_report

        run_dir = Path(summary["run_dir"])
        path = build_report(run_dir)
        con.print(f"report: [bold]{path.resolve()}[/]")
        typer.echo(str(path.resolve()))
    if run.get("failed") or run.get("blocked"):
        raise typer.Exit(1)
