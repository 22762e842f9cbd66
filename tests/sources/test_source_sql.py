"""sql sources against a real PostgreSQL (127.0.0.1:5432, user postgres, database test)."""
from __future__ import annotations

import os
import uuid
from datetime import date

import pytest
from source_helpers import HORIZON, load, load_error
from sqlalchemy import create_engine, exc, text

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_table():
    """A uniquely named orders table with rows around the horizon (2025), dropped afterwards."""
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 5})
    try:
        engine.connect().close()
    except exc.OperationalError as e:
        engine.dispose()
        if "CI" not in os.environ:
            pytest.skip("no PostgreSQL answers at 127.0.0.1:5432 and CI is unset (under CI this test fails instead)")
        pytest.fail(f"CI is set, but no PostgreSQL answers at 127.0.0.1:5432: {e.orig}")
    table = f"orders_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (customer text, order_date date, net numeric(12, 2), no text)"))
        conn.execute(text(f"INSERT INTO {table} VALUES ('A1', '2024-12-31', 1.00, 'O0'), ('A1', '2025-01-01', 10.50, 'O1'), "
                          "('A2', '2025-12-31', 20.25, 'O2'), ('A2', '2026-01-01', 30.00, 'O3')"))
    try:
        yield table
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()


def sql_source(query: str, url: str = PG_URL) -> dict:
    return {"kind": "sql", "entity": "orders", "url": url, "query": query}


def test_only_rows_inside_the_horizon_arrive(root, pg_table):
    query = (f"SELECT customer AS account_id, order_date AS date, net AS amount, no AS order_id FROM {pg_table} "
             "WHERE order_date >= :period_start AND order_date < :period_end")
    result = load(root, crm=sql_source(query))
    assert HORIZON == (date(2025, 1, 1), date(2026, 1, 1))
    assert result.con.execute("SELECT account_id, date, amount, order_id FROM orders ORDER BY order_id").fetchall() == [
        ("A1", date(2025, 1, 1), 10.5, "O1"), ("A2", date(2025, 12, 31), 20.25, "O2")]
    assert result.summary_rows()[-1] == ("crm", "orders", "crm (sql)", 2, 0)
    # The fingerprint hashes the rows as loaded, so the same rows in another order hash the same.
    again = load(root, crm=sql_source(query + " ORDER BY order_id DESC"))
    assert again.fingerprints["crm"] == result.fingerprints["crm"]


def test_only_the_parameters_the_query_uses_are_bound(root, pg_table):
    query = f"SELECT customer AS account_id, order_date AS date, net AS amount FROM {pg_table} WHERE order_date < :period_end"
    assert load(root, crm=sql_source(query)).counts["orders"] == 3


def test_query_errors_and_unknown_parameters(root, pg_table):
    assert load_error(root, a=sql_source("SELECT * FROM no_such_table_here"),
                      b=sql_source(f"SELECT * FROM {pg_table} WHERE order_date < :cutoff")) == [
        'a (sql): the query failed: relation "no_such_table_here" does not exist',
        "b (sql): the query uses :cutoff; only :period_start and :period_end are given a value",
    ]


def test_connection_errors_never_show_the_password(root):
    issues = load_error(root, crm=sql_source("SELECT 1", url="postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/test"))
    assert len(issues) == 1 and issues[0].startswith("crm (sql): cannot connect to the database: ")
    assert "s3cret-pw" not in issues[0]
    assert load_error(root, crm=sql_source("SELECT 1", url="postgresql+nodriver://u:s3cret-pw@h/db")) == [
        'crm (sql): url: SQLAlchemy has no dialect "postgresql+nodriver"']
    assert load_error(root, crm=sql_source("SELECT 1", url="::not a url s3cret-pw")) == [
        "crm (sql): url: not a valid SQLAlchemy URL (not shown, it may hold a password)"]
