"""The contract between the source kinds and the loader, and the helpers they share.

A reader puts the source's raw rows into the DuckDB connection under `Context.relation`
(a view or a registered frame) with the source's own column names plus `__row`, the row
number a user sees: the spreadsheet row for csv/excel (header = row 1), otherwise the
1-based record number. Validation and conversion to the canonical types happen later, in
one place (validate.py), so every kind gets the same rules and messages.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from ..errors import DataError, Issue, did_you_mean


@dataclass(frozen=True)
class Context:
    con: duckdb.DuckDBPyConnection
    root: Path                    # the project directory; source paths are relative to it
    horizon: tuple[date, date]    # (period_start, period_end) for queries
    name: str                     # the source's name in sources.yaml
    relation: str                 # the name the reader must create in `con`


@dataclass(frozen=True)
class Raw:
    label: str                    # where the rows come from, as the user knows it (the path as written)
    fingerprint: str | None       # sha256 of the file bytes; None: the loader hashes the rows it loaded
    header_row: int | None = None  # the header's row, for missing-column issues


def blocking(message: str, label: str, line: int | None = None) -> DataError:
    return DataError([Issue(message, file=label, line=line)])


def source_file(ctx: Context, path_as_written: str) -> Path:
    """The source's file under the project directory, or a blocking error that names near misses."""
    path = ctx.root / path_as_written
    if path.is_file():
        return path
    siblings = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
    raise blocking(f"file not found (looked for {path}){did_you_mean(path.name, siblings)}", path_as_written)


def first_line(error: BaseException) -> str:
    """The first line of an engine's error, without the context lines and hints that follow it."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
