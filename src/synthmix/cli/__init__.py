"""Command-line interface: typer commands, each a thin typed function over a stage."""
