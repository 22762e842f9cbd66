"""What loading produced: the database, counts, rejected rows and fingerprints; the quality report."""
from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import duckdb

from ..errors import Issue


@dataclass(frozen=True)
class RejectedRow:
    source: str    # name in sources.yaml
    file: str      # path as written in sources.yaml, or "<name> (sql)"
    row: int       # spreadsheet row (header = 1), or 1-based record number
    column: str    # the source's own column name
    value: str     # the raw value, "" for an empty cell
    problem: str   # what was expected, e.g. "expected a date in the form %d/%m/%Y"

    @property
    def message(self) -> str:
        got = f'"{self.value}"' if self.value != "" else "an empty cell"
        return f'column "{self.column}": {self.problem}, got {got}'

    def issue(self, level: str = "error") -> Issue:
        return Issue(self.message, file=self.file, line=self.row, level=level)


@dataclass(frozen=True)
class SourceSummary:
    source: str
    entity: str
    file: str
    loaded: int
    rejected: int  # rows, not problems: one row can have several


@dataclass
class LoadResult:
    con: duckdb.DuckDBPyConnection    # one table per entity; external access switched off
    counts: dict[str, int]             # entity -> rows loaded
    rejected: list[RejectedRow]
    fingerprints: dict[str, str]       # source name -> sha256 of what was loaded
    data_sha256: str                   # over the sorted (source, fingerprint) pairs
    sources_by_entity: dict[str, list[str]]
    summaries: list[SourceSummary]

    def summary_rows(self) -> list[tuple[str, str, str, int, int]]:
        """(source, entity, file, loaded, rejected) per source, in load order."""
        return [astuple(s) for s in self.summaries]


REPORT_COLUMNS = tuple(f.name for f in fields(RejectedRow))


def write_quality_report(result: LoadResult, path: Path) -> None:
    """CSV of every rejected row; written to a temp file and renamed, so a reader never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # utf-8-sig: Excel, where people open this, shows Chinese values only with the BOM.
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(REPORT_COLUMNS)
            writer.writerows(astuple(r) for r in result.rejected)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
