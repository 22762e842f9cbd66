"""Small questions about the loaded DuckDB tables, shared by the compute modules."""
from __future__ import annotations

from ..sources.load import UNIQUE_KEY_COMMENT


def table_columns(con, table: str) -> set[str]:
    """Column names of a loaded table (a missing one switches off the checks that need it)."""
    rows = con.execute(
        "select column_name from information_schema.columns where table_name = ? and table_schema = current_schema()",
        [table],
    ).fetchall()
    return {r[0] for r in rows}


def unique_columns(con, table: str) -> set[str]:
    """Columns the loader marked as a key it kept unique (see sources.load.UNIQUE_KEY_COMMENT); none for a
    table made otherwise (say, by a test), where a caller relying on uniqueness must check the rows."""
    rows = con.execute(
        "select column_name from information_schema.columns where table_name = ? and table_schema = current_schema() "
        "and column_comment = ?",
        [table, UNIQUE_KEY_COMMENT],
    ).fetchall()
    return {r[0] for r in rows}
