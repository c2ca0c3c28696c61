"""The ``synthmix`` command. Sub-commands live in sibling modules; heavy imports stay inside them."""

from __future__ import annotations

import sys

import typer

from synthmix import __version__

app = typer.Typer(
    name="synthmix",
    help="Does diffusion-made data help my classifier, how much of it, and in what role?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"synthmix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Stages: data, generator, generate, curate, train, evaluate, run, status, report, demo, audit,
    inspect, export."""


def _register() -> None:
    # Each module adds its commands to ``app``; a module that does not exist yet is skipped.
    import importlib

    for name in ("data", "train", "generator", "generate", "curate", "experiments", "audit", "inspect",
                 "export"):
        try:
            importlib.import_module(f"synthmix.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"synthmix.cli.{name}":
                raise


# A full, over-quota or read-only disk is the user's to fix, not a bug: no traceback.
_DISK_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS"}


def main() -> None:
    import errno

    from synthmix.core.errors import SynthmixError

    _register()
    try:
        app()
    except SynthmixError as err:
        _error(str(err))
    except OSError as err:
        if errno.errorcode.get(err.errno or -1) not in _DISK_ERRNOS:
            raise
        where = f"{err.filename}: " if err.filename else ""
        _error(f"{where}{err.strerror or err} (finished outputs are kept; free space and re-run "
               "the same command to continue)")


def _error(message: str) -> None:
    from rich.markup import escape

    from synthmix.core.log import console

    # soft_wrap: never break a long path across lines (rich wraps at 80 columns off a tty)
    console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)
