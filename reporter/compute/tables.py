"""Small questions about the loaded DuckDB tables, shared by the compute modules."""
from __future__ import annotations


def table_columns(con, table: str) -> set[str]:
    """Column names of a loaded table (a missing one switches off the checks that need it)."""
    rows = con.execute(
        "select column_name from information_schema.columns where table_name = ? and table_schema = current_schema()",
        [table],
    ).fetchall()
    return {r[0] for r in rows}
