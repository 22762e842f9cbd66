"""Errors a user can act on: every problem has a place (file, line, column, key path) and a fix."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    path: str | None = None
    level: str = "error"

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.col) if p is not None)
        parts = [p for p in (where, self.path, self.message) if p]
        return ": ".join(parts)


class ReporterError(Exception):
    """Base of every error the CLI reports without a traceback (exit code 2)."""

    exit_code = 2

    def __init__(self, issues: list[Issue] | str):
        self.issues = [Issue(issues)] if isinstance(issues, str) else list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ConfigError(ReporterError):
    pass


class DataError(ReporterError):
    pass


class RenderError(ReporterError):
    pass


class DeliveryError(ReporterError):
    pass


def did_you_mean(word: str, candidates) -> str:
    """A ' did you mean "x"?' suffix for a misspelt key or name, or ''."""
    import difflib

    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f'; did you mean "{match[0]}"?' if match else ""


class RunInterrupted(Exception):
    """A run stopped on purpose between two steps (a signal, a lost claim): the ledger records the
    run as partial, and the next run completes the period."""
