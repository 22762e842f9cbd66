"""Row-level validation: every rule, its exact message, and what reject_rows and fail do with it."""
from __future__ import annotations

import csv
from datetime import date, datetime

import pytest
from source_helpers import HORIZON, csv_source, load, load_error, write

from reporter.config.models import Sources
from reporter.errors import DataError
from reporter.sources import load_sources, write_quality_report

HEADER = "account_id,date,amount,order_id\n"


def rejected(result) -> list[str]:
    return [str(r.issue()) for r in result.rejected]


def test_decimal_comma_and_thousands_dot(root):
    write(root, "o.csv", "account_id;date;amount;cost\nA1;2025-01-01;1.234,56;7,5\nA1;2025-01-02;12;0,25\n"
                         "A1;2025-01-03;1.23,4;1\n")
    result = load(root, o=csv_source("o.csv", delimiter=";", decimal=",", thousands=".", on_error="reject_rows"))
    assert result.con.execute("SELECT amount, cost FROM orders ORDER BY date").fetchall() == [(1234.56, 7.5), (12.0, 0.25)]
    assert rejected(result) == ['o.csv:4: column "amount": expected a number like 1.234,56, got "1.23,4"']


def test_numbers_reject_what_a_bare_cast_would_take(root):
    write(root, "o.csv", HEADER + "A1,2025-01-01,nan,O1\nA1,2025-01-01,1e3,O2\nA1,2025-01-01,\"1,000\",O3\n")
    result = load(root, o=csv_source("o.csv", on_error="reject_rows"))
    assert result.con.execute("SELECT amount FROM orders").fetchall() == [(1000.0,)]
    assert rejected(result) == ['o.csv:2: column "amount": expected a number like 1234.56, got "nan"',
                                'o.csv:4: column "amount": expected a number like 1234.56, got "1,000"']


def test_explicit_day_first_format_is_strict_and_iso_is_the_default(root):
    write(root, "dmy.csv", "account_id,order_date,amount\nA1,03/02/2025,1\nA1,31/02/2026,1\nA1,2025-02-03,1\n"
                           "A1,03/02/25,1\n")
    write(root, "iso.csv", "account_id,date,amount\nA2,2025-02-04,1\nA2,04/02/2025,1\n")
    result = load(root, dmy=csv_source("dmy.csv", columns={"date": "order_date"}, dates={"date": "%d/%m/%Y"},
                                       on_error="reject_rows"),
                  iso=csv_source("iso.csv", on_error="reject_rows"))
    assert result.con.execute("SELECT account_id, date FROM orders ORDER BY 1").fetchall() == [
        ("A1", date(2025, 2, 3)), ("A2", date(2025, 2, 4))]
    assert rejected(result) == [
        'dmy.csv:3: column "order_date": expected a date in the form %d/%m/%Y, got "31/02/2026"',
        'dmy.csv:4: column "order_date": expected a date in the form %d/%m/%Y, got "2025-02-03"',
        'dmy.csv:5: column "order_date": expected a date in the form %d/%m/%Y, got "03/02/25"',
        'iso.csv:3: column "date": expected a date in the form %Y-%m-%d, got "04/02/2025"',
    ]


def test_iso_timestamps_and_booleans(root):
    write(root, "t.csv", "account_id,opened_at,is_complaint,reopened\nA1,2025-01-01 08:05,YES,n\n"
                         "A1,2025-01-01T08:05:09,0,True\nA1,2025-01-02,是,否\nA1,01/02/2025 08:00,maybe,\n")
    result = load(root, t={"kind": "csv", "entity": "tickets", "path": "t.csv", "on_error": "reject_rows"})
    assert result.con.execute("SELECT opened_at, is_complaint, reopened FROM tickets").fetchall() == [
        (datetime(2025, 1, 1, 8, 5), True, False), (datetime(2025, 1, 1, 8, 5, 9), False, True),
        (datetime(2025, 1, 2), True, False)]
    assert rejected(result) == [
        't.csv:5: column "opened_at": expected a timestamp in the form %Y-%m-%d %H:%M[:%S], got "01/02/2025 08:00"',
        't.csv:5: column "is_complaint": expected true/false, yes/no, y/n, 1/0 or 是/否, got "maybe"',
    ]


def test_required_choices_negative_unknown_account_and_duplicates(root):
    write(root, "s.csv", "account_id,date,kind,score\nA1,2025-01-01,NPS,9\n,2025-01-01,nps,9\nA1,2025-01-01,promoter,9\n"
                         "A1,2025-01-01,csat,-1\nA7,2025-01-01,csat,4\n")
    write(root, "o.csv", HEADER + "A1,2025-01-01,5,O1\nA1,2025-01-02,6,O2\nA1,2025-01-03,7,O1\nA1,2025-01-04,8,\n"
                                  "A1,2025-01-05,9,\n")
    result = load(root, s={"kind": "csv", "entity": "surveys", "path": "s.csv", "on_error": "reject_rows"},
                  o=csv_source("o.csv", on_error="reject_rows"))
    assert result.con.execute("SELECT kind FROM surveys").fetchall() == [("nps",)]
    assert result.counts["orders"] == 4  # an empty order_id is no key: never a duplicate
    assert rejected(result) == [
        's.csv:3: column "account_id": expected a value (account_id is required), got an empty cell',
        's.csv:4: column "kind": expected one of nps, csat, ces, got "promoter"',
        's.csv:5: column "score": expected a number ≥ 0 (list score under allow_negative: if negatives are valid), got "-1.0"',
        's.csv:6: column "account_id": expected an account_id listed in accounts, got "A7"',
        'o.csv:4: column "order_id": expected a unique value (first seen on row 2), got "O1"',
    ]
    assert [s[4] for s in result.summary_rows()] == [0, 4, 1]


def test_allow_negative_and_portfolio_costs_without_account(root):
    write(root, "o.csv", HEADER + "A1,2025-01-01,-5,O1\n")
    write(root, "c.csv", "date,category,amount,account_id\n2025-01-01,marketing,100,\n2025-01-01,service,20,A2\n")
    result = load(root, o=csv_source("o.csv", allow_negative=["amount"]),
                  c={"kind": "csv", "entity": "costs", "path": "c.csv"})
    assert result.counts["orders"] == 1 and result.counts["costs"] == 2


def test_missing_columns_name_what_was_found_with_a_suggestion(root):
    write(root, "m.csv", "acount_id,order_date,amt\nA1,2025-01-01,1\n")
    assert load_error(root, m=csv_source("m.csv", columns={"date": "Datum"})) == [
        'm.csv:1: missing required column "account_id"; columns found: acount_id, order_date, amt; did you mean "acount_id"?',
        'm.csv:1: missing required column "Datum" (mapped to date under columns:); columns found: acount_id, order_date, amt',
        'm.csv:1: missing required column "amount"; columns found: acount_id, order_date, amt; did you mean "amt"?',
    ]


def test_empty_file_header_only_wrong_encoding_and_bad_format_all_reported_at_once(root):
    write(root, "empty.csv", "")
    write(root, "header.csv", HEADER)
    write(root, "gbk.csv", HEADER + "A1,2025-01-01,1,订单1\n", encoding="gbk")
    write(root, "bom.csv", "\ufeff" + HEADER + "A1,2025-01-01,1,O1\n")
    write(root, "fmt.csv", HEADER + "A1,2025-01-01,1,O1\n")
    assert load_error(root, empty=csv_source("empty.csv"), header=csv_source("header.csv"), gbk=csv_source("gbk.csv"),
                      bom=csv_source("bom.csv", encoding="gbk"), fmt=csv_source("fmt.csv", dates={"date": "%Q"})) == [
        "empty.csv: the file is empty: expected a header row and data rows",
        "header.csv: no data rows below the header",
        "gbk.csv:2: cannot decode the file as utf-8 (byte 0xb6 is not valid there); it reads as Chinese GB18030 "
        "(a Chinese Excel export?): set encoding: gb18030 (or gbk)",
        "bom.csv:1: the file starts with a UTF-8 byte-order mark, so it is not gbk: set encoding: utf-8-sig",
        'fmt.csv: dates: date: "%Q" is not a valid date format: Invalid Input Error: Failed to parse format '
        "specifier %Q: Unrecognized format for strftime/strptime: %Q",
    ]


def test_on_error_fail_lists_20_problems_then_counts_the_rest(root):
    write(root, "o.csv", HEADER + "".join(f"A1,2025-01-01,x{i},O{i}\n" for i in range(25)))
    issues = load_error(root, o=csv_source("o.csv"))
    assert len(issues) == 21
    assert issues[0] == 'o.csv:2: column "amount": expected a number like 1234.56, got "x0"'
    assert issues[-1] == ("o.csv: ... and 5 more problems (25 bad rows in all); with on_error: reject_rows "
                          "the good rows load and the bad ones are reported")


def test_bad_accounts_do_not_flood_other_sources_with_unknown_accounts(root):
    write(root, "data/accounts.csv", "account_id,name\nA1,\n")
    write(root, "o.csv", HEADER + "A1,2025-01-01,1,O1\n")
    assert load_error(root, o=csv_source("o.csv")) == [
        'data/accounts.csv:2: column "name": expected a value (name is required), got an empty cell']


def test_quality_report_lists_every_rejected_row(root, tmp_path):
    write(root, "o.csv", HEADER + "A1,2025-13-01,1,O1\n客户,2025-01-01,1,O2\n")
    result = load(root, o=csv_source("o.csv", on_error="reject_rows"))
    report = tmp_path / "out" / "quality" / "rejected_rows.csv"
    write_quality_report(result, report)
    with report.open(encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f)) == [
            ["source", "file", "row", "column", "value", "problem"],
            ["o", "o.csv", "2", "date", "2025-13-01", "expected a date in the form %Y-%m-%d"],
            ["o", "o.csv", "3", "account_id", "客户", "expected an account_id listed in accounts"],
        ]
    assert [p.name for p in report.parent.iterdir()] == ["rejected_rows.csv"]  # no temp file left behind


def test_orders_without_any_accounts_source_is_blocking(root):
    write(root, "o.csv", HEADER + "A1,2025-01-01,1,O1\n")
    only_orders = Sources.model_validate({"sources": {"o": csv_source("o.csv")}}).sources
    with pytest.raises(DataError, match="no source provides accounts"):
        load_sources(only_orders, root, HORIZON)
