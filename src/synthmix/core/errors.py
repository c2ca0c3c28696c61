"""Exception types. Every message names the file or field and the problem."""

from __future__ import annotations

from pathlib import Path


class SynthmixError(Exception):
    """Base class: an error a user can act on; the CLI prints it without a traceback."""


class DataError(SynthmixError):
    """A file of the user's data cannot be used. Always names the file."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(SynthmixError):
    """A config is invalid. Names the file (when known) and the field."""


class LeakageError(DataError):
    """The same image is in two splits."""

    def __init__(self, first: str | Path, second: str | Path, detail: str = ""):
        self.other = str(second)
        msg = f"the same image is also at {second}" + (f" ({detail})" if detail else "")
        super().__init__(first, msg)


class TrainingError(SynthmixError):
    """Training cannot go on (e.g. NaN loss)."""


class CurationError(SynthmixError):
    """Curation left nothing usable: too many rejects, or a role a later setup needs is empty."""
