"""Monthly details behind the review charts, on the valid fixture's CSVs (numbers checked by hand)."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from reporter.compute.details import account_details, portfolio_details
from reporter.compute.periods import parse_period
from reporter.config.entities import ENTITIES

DATA = Path(__file__).parents[1] / "fixtures" / "valid" / "data"
SQL_TYPES = {"string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "number": "DOUBLE",
             "integer": "BIGINT", "boolean": "BOOLEAN"}


def canonical_tables(con: duckdb.DuckDBPyConnection, data: Path | None) -> None:
    """Every canonical table with every column, typed; filled from data/<entity>.csv when given."""
    for entity in ENTITIES.values():
        columns = ", ".join(f'"{f.name}" {SQL_TYPES[f.type]}' for f in entity.fields)
        con.execute(f"CREATE TABLE {entity.name} ({columns})")
        csv = data / f"{entity.name}.csv" if data else None
        if csv is None or not csv.exists():
            continue
        present = set(csv.read_text(encoding="utf-8").splitlines()[0].split(","))
        values = ", ".join(f'CAST("{f.name}" AS {SQL_TYPES[f.type]})' if f.name in present else "NULL"
                           for f in entity.fields)
        con.execute(f"INSERT INTO {entity.name} SELECT {values} FROM read_csv('{csv}', all_varchar = true)")


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    canonical_tables(connection, DATA)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def october(con):
    return account_details(con, parse_period("2026-10"))


def by_month(rows: list[dict]) -> dict[str, dict]:
    return {r["month"]: r for r in rows}


def test_every_account_gets_twelve_months_ending_with_the_period(october):
    assert sorted(october) == ["A1", "A2", "A3"]
    for details in october.values():
        for key in ("revenue_by_month", "surveys_by_month", "service_by_month", "interactions_by_month"):
            assert [r["month"] for r in details[key]][0] == "2025-11"
            assert [r["month"] for r in details[key]][-1] == "2026-10"
            assert len(details[key]) == 12


def test_revenue_this_year_and_prior_year(october):
    a1 = by_month(october["A1"]["revenue_by_month"])
    assert a1["2026-10"] == {"month": "2026-10", "revenue": 5000.0, "prior_year_revenue": 1000.0}  # O06+O07; O01
    assert a1["2026-01"]["revenue"] == 0.0  # a sum: no orders is zero, not missing
    assert october["A1"]["revenue_12m"] == 14000.0  # 2000 + 1500 + 3000 + 2500 + 5000
    assert october["A1"]["prior_revenue_12m"] == 1000.0
    a2 = by_month(october["A2"]["revenue_by_month"])
    assert a2["2026-02"]["prior_year_revenue"] == 800.0  # O08 on 2025-02-10
    assert october["A3"]["revenue_12m"] == 500.0


def test_surveys_nps_and_csat_by_month(october):
    a1 = by_month(october["A1"]["surveys_by_month"])
    # October: NPS 7 (passive) and 3 (detractor); CSAT 4 and 3
    assert a1["2026-10"] == {"month": "2026-10", "nps": -50.0, "nps_n": 2, "csat": 0.5, "csat_n": 2}
    assert a1["2026-09"] == {"month": "2026-09", "nps": 100.0, "nps_n": 2, "csat": 1.0, "csat_n": 1}
    assert a1["2026-07"] == {"month": "2026-07", "nps": None, "nps_n": 0, "csat": None, "csat_n": 0}
    # A2's CES answers are neither NPS nor CSAT
    assert by_month(october["A2"]["surveys_by_month"])["2026-10"]["csat_n"] == 0


def test_service_medians_and_sla(october):
    a1 = by_month(october["A1"]["service_by_month"])
    # T04 (4 h to respond, unresolved) and T05 (0.5 h, resolved in 6 h); SLAs 24 and 48
    assert a1["2026-10"] == {"month": "2026-10", "tickets": 2, "complaints": 2, "first_response_hours": 2.25,
                             "resolution_hours": 6.0, "sla_hours": 36.0}
    assert a1["2026-08"]["resolution_hours"] == 36.0  # T02: 2026-08-10 09:00 -> 08-11 21:00
    a2 = by_month(october["A2"]["service_by_month"])
    assert a2["2026-09"]["sla_hours"] is None and a2["2026-09"]["tickets"] == 1  # T07 has no SLA
    assert a2["2026-05"] == {"month": "2026-05", "tickets": 0, "complaints": 0, "first_response_hours": None,
                             "resolution_hours": None, "sla_hours": None}


def test_interactions_by_channel(october):
    a1 = by_month(october["A1"]["interactions_by_month"])
    assert a1["2026-10"] == {"month": "2026-10", "meeting": 0, "call": 0, "email": 0, "visit": 1, "review": 1,
                             "total": 2}
    assert a1["2026-09"]["meeting"] == 1 and a1["2026-09"]["email"] == 1
    assert by_month(october["A2"]["interactions_by_month"])["2025-12"]["meeting"] == 1


def test_relationship_map_counts_active_contacts_only(october):
    rmap = october["A1"]["relationship_map"]
    assert rmap["departments"] == ["Finance", "IT", "Procurement"]  # Operations' only contact is inactive
    assert rmap["seniorities"] == ["staff", "manager", "director", "executive"]
    assert rmap["cells"]["IT"] == {"staff": 0, "manager": 0, "director": 0, "executive": 1}
    assert rmap["decision_makers"] == [{"name": "Mia Chen", "contact_id": "C1", "department": "IT",
                                        "seniority": "executive"}]
    assert october["A2"]["relationship_map"]["decision_makers"][0]["name"] == "王磊"


def test_opportunities_pipeline_wins_and_whitespace(october):
    a1 = october["A1"]["opportunities"]
    assert a1["open"] == [{"opportunity_id": "P4", "kind": "cross_sell", "product_line": "support",
                           "amount": 5000.0, "created_at": "2026-09-15"}]
    assert a1["open_total"] == 5000.0
    assert (a1["won_12m"], a1["won_12m_count"]) == (4500.0, 2)  # P1 1500 + P2 3000
    assert a1["whitespace"] == ["training"]  # sold to A3, never to A1 in the 12 months
    assert october["A3"]["opportunities"]["whitespace"] == ["cloud", "hardware", "services", "software"]


def test_pipeline_is_as_it_stood_at_the_period_end(con):
    august = account_details(con, parse_period("2026-08"), ["A1"])["A1"]["opportunities"]
    # P3 (lost 2026-09-30) was still open at the end of August; P4 did not exist yet
    assert [o["opportunity_id"] for o in august["open"]] == ["P3"]
    assert august["won_12m"] == 4500.0  # P2 closed on 2026-08-01, inside the window ending 2026-09-01
    july = account_details(con, parse_period("2026-07"), ["A1"])["A1"]["opportunities"]
    assert [o["opportunity_id"] for o in july["open"]] == ["P2", "P3"]  # P2 was won only in August
    assert july["won_12m"] == 1500.0


def test_requested_accounts_in_order_and_unknown_ids_get_empty_details(con):
    got = account_details(con, parse_period("2026-10"), ["A3", "A1", "ZZ"])
    assert list(got) == ["A3", "A1", "ZZ"]
    assert got["ZZ"]["revenue_12m"] == 0.0
    assert got["ZZ"]["relationship_map"]["departments"] == []
    assert account_details(con, parse_period("2026-10"), []) == {}


def test_quarter_period_uses_the_twelve_months_to_its_end(con):
    q3 = account_details(con, parse_period("2026-Q3"), ["A1"])["A1"]
    assert [r["month"] for r in q3["revenue_by_month"]][::11] == ["2025-10", "2026-09"]
    assert by_month(q3["revenue_by_month"])["2025-10"]["revenue"] == 1000.0


def test_portfolio_revenue_and_account_totals(con):
    portfolio = portfolio_details(con, parse_period("2026-10"))
    months = by_month(portfolio["revenue_by_month"])
    assert months["2026-10"] == {"month": "2026-10", "revenue": 5600.0, "prior_year_revenue": 1000.0}
    assert months["2026-02"]["prior_year_revenue"] == 800.0
    assert portfolio["revenue_12m"] == 17200.0
    assert portfolio["account_revenue_12m"] == {"A1": 14000.0, "A2": 2700.0, "A3": 500.0}


def test_output_is_plain_json_without_nan(october, con):
    json.dumps(october, allow_nan=False)
    json.dumps(portfolio_details(con, parse_period("2026-10")), allow_nan=False)


def test_empty_tables_give_zeros_and_nones():
    connection = duckdb.connect()
    canonical_tables(connection, None)
    connection.execute("INSERT INTO accounts (account_id, name) VALUES ('A1', 'Only')")
    details = account_details(connection, parse_period("2026-10"))["A1"]
    assert details["revenue_12m"] == 0.0
    assert all(r["nps"] is None and r["nps_n"] == 0 for r in details["surveys_by_month"])
    assert all(r["tickets"] == 0 and r["sla_hours"] is None for r in details["service_by_month"])
    assert details["opportunities"] == {"open": [], "open_total": 0.0, "won_12m": 0.0, "won_12m_count": 0,
                                        "whitespace": []}
    portfolio = portfolio_details(connection, parse_period("2026-10"))
    assert portfolio["account_revenue_12m"] == {"A1": 0.0}
    json.dumps(details, allow_nan=False)
