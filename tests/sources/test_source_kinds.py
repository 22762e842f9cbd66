"""Each source kind loads into the canonical, typed entity tables."""
from __future__ import annotations

import hashlib
from datetime import date, datetime

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from source_helpers import csv_source, load, load_error, write

from reporter.config.entities import ENTITIES

ORDERS_CSV = "account_id,date,amount,order_id,internal_note\nA1,2025-03-01,100.5,O1,x\nA2,2025-03-02,20,O2,y\n"


def test_csv_gives_every_entity_a_typed_table_and_drops_extra_columns(root, tmp_path, monkeypatch):
    write(root, "data/orders.csv", ORDERS_CSV)
    monkeypatch.chdir(tmp_path.parent)  # paths are relative to the project, never the cwd
    result = load(root, orders=csv_source("data/orders.csv"))
    con = result.con
    for entity in ENTITIES.values():
        assert [r[0] for r in con.execute(f"DESCRIBE {entity.name}").fetchall()] == entity.field_names
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'tickets'").fetchall())
    assert (types["opened_at"], types["is_complaint"], types["sla_hours"]) == ("TIMESTAMP", "BOOLEAN", "DOUBLE")
    assert con.execute("SELECT * FROM orders ORDER BY order_id").fetchall() == [
        ("A1", date(2025, 3, 1), 100.5, None, None, None, "O1"),
        ("A2", date(2025, 3, 2), 20.0, None, None, None, "O2"),
    ]
    assert result.counts == {"accounts": 2, "orders": 2} | {e: 0 for e in ENTITIES if e not in ("accounts", "orders")}
    assert result.sources_by_entity["orders"] == ["orders"] and result.sources_by_entity["costs"] == []
    assert result.summary_rows() == [("accounts", "accounts", "data/accounts.csv", 2, 0),
                                     ("orders", "orders", "data/orders.csv", 2, 0)]


def test_gbk_csv_with_chinese_headers_mapped_via_columns(root):
    text = "客户编号,创建时间,是否投诉,满意度\nA1,2025-03-01 09:30,是,4\nA2,2025-03-02 10:00:15,否,\n"
    write(root, "data/tickets.csv", text, encoding="gbk")
    result = load(root, tickets={
        "kind": "csv", "entity": "tickets", "path": "data/tickets.csv", "encoding": "gbk",
        "columns": {"account_id": "客户编号", "opened_at": "创建时间", "is_complaint": "是否投诉", "satisfaction": "满意度"},
    })
    assert result.con.execute("SELECT account_id, opened_at, is_complaint, satisfaction FROM tickets").fetchall() == [
        ("A1", datetime(2025, 3, 1, 9, 30), True, 4.0),
        ("A2", datetime(2025, 3, 2, 10, 0, 15), False, None),
    ]


def test_utf8_byte_order_mark_is_not_part_of_the_first_header(root):
    write(root, "data/orders.csv", "\ufeff" + ORDERS_CSV)
    assert load(root, orders=csv_source("data/orders.csv")).counts["orders"] == 2


def test_excel_sheet_with_real_date_cells_and_numbers(root):
    book = openpyxl.Workbook()
    book.active.title = "Cover"
    sheet = book.create_sheet("Surveys")
    sheet.append(["account_id", "date", "kind", "score", "comment"])
    sheet.append(["A1", datetime(2025, 4, 1), "NPS", 9, "great"])
    sheet.append([])  # a blank row keeps the row numbers below it
    sheet.append(["A2", "2025-04-03", "csat", 4.5, None])
    sheet.append(["A2", "04/05/2025", "csat", 5, None])
    book.save(root / "surveys.xlsx")
    result = load(root, surveys={"kind": "excel", "entity": "surveys", "path": "surveys.xlsx", "sheet": "Surveys",
                                 "on_error": "reject_rows"})
    assert result.con.execute("SELECT * FROM surveys ORDER BY date").fetchall() == [
        ("A1", date(2025, 4, 1), "nps", 9.0, None, "great"),
        ("A2", date(2025, 4, 3), "csat", 4.5, None, None),
    ]
    assert [r.issue().__str__() for r in result.rejected] == [
        'surveys.xlsx:5: column "date": expected a date in the form %Y-%m-%d, got "04/05/2025"']


def test_excel_unknown_sheet_names_the_sheets(root):
    book = openpyxl.Workbook()
    book.active.title = "Surveys"
    book.save(root / "s.xlsx")
    assert load_error(root, surveys={"kind": "excel", "entity": "surveys", "path": "s.xlsx", "sheet": "Survey"}) == [
        's.xlsx: no sheet "Survey"; sheets are: Surveys; did you mean "Surveys"?']


def test_parquet_typed_columns_and_record_numbers(root):
    table = pa.table({
        "account_id": ["A1", "A2", "A9"],
        "date": pa.array([date(2025, 1, 5), date(2025, 1, 6), date(2025, 1, 7)]),
        "amount": [10.0, 20.0, 30.0],
        "order_id": ["O1", "O2", "O3"],
    })
    pq.write_table(table, root / "orders.parquet")
    result = load(root, orders={"kind": "parquet", "entity": "orders", "path": "orders.parquet", "on_error": "reject_rows"})
    assert result.counts["orders"] == 2
    assert [str(r.issue()) for r in result.rejected] == [
        'orders.parquet:3: column "account_id": expected an account_id listed in accounts, got "A9"']
    assert result.fingerprints["orders"] == hashlib.sha256((root / "orders.parquet").read_bytes()).hexdigest()


def test_duckdb_file_is_queried_read_only(root):
    with duckdb.connect(str(root / "crm.duckdb")) as db:
        db.execute("CREATE TABLE deals (acct VARCHAR, opened DATE, state VARCHAR, value DECIMAL(12, 2))")
        db.execute("INSERT INTO deals VALUES ('A1', '2025-02-01', 'won', 1200.50), ('A2', '2025-02-03', 'open', NULL)")
    before = (root / "crm.duckdb").read_bytes()
    result = load(root, deals={
        "kind": "duckdb", "entity": "opportunities", "path": "crm.duckdb",
        "query": "SELECT acct AS account_id, opened AS created_at, state AS status, value AS amount FROM deals",
    })
    assert result.con.execute("SELECT account_id, created_at, status, amount FROM opportunities ORDER BY 1").fetchall() == [
        ("A1", date(2025, 2, 1), "won", 1200.5), ("A2", date(2025, 2, 3), "open", None)]
    assert (root / "crm.duckdb").read_bytes() == before
    assert len(result.fingerprints["deals"]) == 64


def test_sources_of_one_entity_are_appended_and_keys_checked_across_them(root):
    write(root, "a.csv", "account_id,date,amount,order_id\nA1,2025-01-01,1,O1\n")
    write(root, "b.csv", "account_id,date,amount,order_id\nA2,2025-01-02,2,O2\nA2,2025-01-03,3,O1\n")
    result = load(root, shop=csv_source("a.csv"), web=csv_source("b.csv", on_error="reject_rows"))
    assert result.counts["orders"] == 2
    assert result.sources_by_entity["orders"] == ["shop", "web"]
    assert [str(r.issue()) for r in result.rejected] == [
        'b.csv:3: column "order_id": expected a unique value (already loaded from "shop"), got "O1"']


def test_fingerprints_are_file_hashes_and_data_hash_is_stable(root):
    write(root, "data/orders.csv", ORDERS_CSV)
    first = load(root, orders=csv_source("data/orders.csv"))
    again = load(root, orders=csv_source("data/orders.csv"))
    assert first.fingerprints["orders"] == hashlib.sha256(ORDERS_CSV.encode()).hexdigest()
    assert first.data_sha256 == again.data_sha256
    write(root, "data/orders.csv", ORDERS_CSV.replace("100.5", "100.6"))
    assert load(root, orders=csv_source("data/orders.csv")).data_sha256 != first.data_sha256


def test_file_not_found_suggests_a_near_name(root):
    write(root, "data/orders.csv", ORDERS_CSV)
    assert load_error(root, orders=csv_source("data/order.csv")) == [
        f'data/order.csv: file not found (looked for {root / "data/order.csv"}); did you mean "orders.csv"?']


def test_external_access_is_off_after_loading(root):
    write(root, "data/orders.csv", ORDERS_CSV)
    con = load(root, orders=csv_source("data/orders.csv")).con
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        con.execute(f"SELECT * FROM read_csv('{root / 'data/orders.csv'}')").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
