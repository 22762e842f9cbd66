"""Portfolio KPIs on the fixture, computed by hand, plus churn, CAC allocation and empty cases."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from reporter.compute.periods import parse_period
from reporter.compute.portfolio import portfolio_kpis
from reporter.config.entities import ENTITIES

DATA = Path(__file__).parents[1] / "fixtures" / "valid" / "data"
SQL_TYPES = {"string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "number": "DOUBLE",
             "integer": "BIGINT", "boolean": "BOOLEAN"}
TIERS = {"A1": "strategic", "A2": "key", "A3": "growth"}


def make_con(data: Path | None = DATA):
    """Canonical tables with typed columns, filled from data/<entity>.csv when given."""
    con = duckdb.connect()
    for entity in ENTITIES.values():
        con.execute(f"create table {entity.name} ("
                    + ", ".join(f"{f.name} {SQL_TYPES[f.type]}" for f in entity.fields) + ")")
        path = data / f"{entity.name}.csv" if data else None
        if path and path.exists():
            header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
            select = ", ".join(f"{c}::{SQL_TYPES[entity.field(c).type]} as {c}" for c in header)
            con.execute(f"insert into {entity.name} by name select {select} "
                        "from read_csv(?, all_varchar = true, header = true)", [str(path)])
    return con


def values(block: dict) -> dict:
    return {k: block[k]["value"] for k in ("retention_rate", "churn_rate", "acquisition_rate", "cac", "nrr", "grr")}


def test_october_a3_in_start_cohort():
    result = portfolio_kpis(make_con(), parse_period("2026-10"), TIERS)
    p = result["portfolio"]
    # Start 2026-10-01: A1 (2024-01-01), A2 (2025-01-15), A3 (2026-09-10) -> 3; new 0; lost 0; end 3.
    assert p["counts"] == {"at_start": 3, "new": 0, "lost": 0, "at_end": 3}
    # retention (3 - 0) / 3 = 1; churn 0 / 3; acquisition 0 / 3.
    # cac: acquisition 3000 + sales 2000 + marketing 1000 in October, but no new account -> None.
    # NRR window 2025-11-01..2026-11-01 vs 2024-11-01..2025-11-01; cohort = revenue in the prior window:
    #   A1 prior 1000 (O01 2025-10-15), now 2000+1500+3000+2500+4000+1000 = 14000
    #   A2 prior 800 (O08 2025-02-10), now 1200+900+600 = 2700;  A3 no prior revenue: not in the cohort
    #   NRR = 16700 / 1800; GRR = (min(14000, 1000) + min(2700, 800)) / 1800 = 1
    assert values(p) == pytest.approx({"retention_rate": 1.0, "churn_rate": 0.0, "acquisition_rate": 0.0,
                                       "cac": None, "nrr": 16700 / 1800, "grr": 1.0})
    assert p["cac"]["note"] == "no new accounts in the period"
    assert (p["retention_rate"]["n"], p["acquisition_rate"]["n"], p["nrr"]["n"], p["cac"]["n"]) == (3, 3, 2, 0)
    assert p["nrr"]["label"] == {"en": "Net revenue retention", "zh_CN": "净收入留存"}
    assert p["churn_rate"]["direction"] == "down" and p["cac"]["unit"] == "currency"

    tiers = result["tiers"]
    assert set(tiers) == {"strategic", "key", "growth"}
    assert values(tiers["strategic"])["nrr"] == pytest.approx(14.0)   # 14000 / 1000
    assert values(tiers["key"])["nrr"] == pytest.approx(3.375)        # 2700 / 800
    assert values(tiers["growth"])["nrr"] is None                     # A3 had no revenue a year before
    assert tiers["growth"]["nrr"]["note"].startswith("no account had revenue")
    assert tiers["growth"]["counts"] == {"at_start": 1, "new": 0, "lost": 0, "at_end": 1}


def test_september_a3_is_new():
    result = portfolio_kpis(make_con(), parse_period("2026-09"), TIERS)
    p = result["portfolio"]
    # Start 2026-09-01: A1, A2 -> 2; new A3 (2026-09-10) -> 1; lost 0; end 3.
    assert p["counts"] == {"at_start": 2, "new": 1, "lost": 0, "at_end": 3}
    # retention (3 - 1) / 2 = 1; churn 0; acquisition 1 / 3; cac: acquisition 2500 in September / 1.
    # NRR window 2025-10-01..2026-10-01 vs 2024-10-01..2025-10-01: A1's first order is 2025-10-15, so only
    #   A2 is in the cohort: prior 800, now 1200 + 900 = 2100 -> 2.625; GRR 800 / 800.
    assert values(p) == pytest.approx({"retention_rate": 1.0, "churn_rate": 0.0, "acquisition_rate": 1 / 3,
                                       "cac": 2500.0, "nrr": 2.625, "grr": 1.0})
    # The one new account is in growth, so growth carries all the portfolio-level acquisition cost.
    assert values(result["tiers"]["growth"])["cac"] == pytest.approx(2500.0)
    assert values(result["tiers"]["growth"])["retention_rate"] is None  # no growth account at the start
    assert values(result["tiers"]["strategic"])["cac"] is None


def test_churned_account():
    con = make_con()
    con.execute("update accounts set churned_on = '2026-10-20' where account_id = 'A2'")
    result = portfolio_kpis(con, parse_period("2026-10"), TIERS)
    p = result["portfolio"]
    # Start 3 (A2 churned after the start), lost 1 (A2), new 0, end 2.
    assert p["counts"] == {"at_start": 3, "new": 0, "lost": 1, "at_end": 2}
    # retention (2 - 0) / 3; churn 1 / 3; acquisition 0 / 2.
    assert values(p)["retention_rate"] == pytest.approx(2 / 3)
    assert values(p)["churn_rate"] == pytest.approx(1 / 3)
    assert values(p)["acquisition_rate"] == 0.0
    key = result["tiers"]["key"]
    assert values(key)["retention_rate"] == 0.0 and values(key)["churn_rate"] == 1.0
    assert values(key)["acquisition_rate"] is None and key["acquisition_rate"]["note"] == "no accounts at the end of the period"
    # November: A2 churned before the start, so it is not in the start cohort at all.
    november = portfolio_kpis(con, parse_period("2026-11"), TIERS)["portfolio"]
    assert november["counts"] == {"at_start": 2, "new": 0, "lost": 0, "at_end": 2}


def test_account_joining_and_churning_in_the_same_period():
    con = make_con()
    con.execute("update accounts set churned_on = '2026-09-25' where account_id = 'A3'")
    p = portfolio_kpis(con, parse_period("2026-09"), TIERS)["portfolio"]
    # A3 is new, not lost (it was not there at the start), and not there at the end.
    assert p["counts"] == {"at_start": 2, "new": 1, "lost": 0, "at_end": 2}
    assert values(p)["retention_rate"] == 1.0          # (2 - 0 new still there) / 2
    assert values(p)["acquisition_rate"] == 0.5        # 1 / 2


def test_cac_categories_and_booked_costs():
    con = make_con()
    con.execute("insert into costs values ('2026-09-05', 'marketing', 1000, null), ('2026-09-06', 'sales', 500, 'A3'),"
                " ('2026-09-07', 'service', 700, null)")
    sept = parse_period("2026-09")
    # default categories: acquisition 2500 + marketing 1000 + sales 500 (booked to A3) = 4000; service excluded
    assert values(portfolio_kpis(con, sept, TIERS)["portfolio"])["cac"] == pytest.approx(4000.0)
    assert values(portfolio_kpis(con, sept, TIERS, cac_categories=("acquisition",))["portfolio"])["cac"] == 2500.0


def test_unassigned_and_empty():
    result = portfolio_kpis(make_con(), parse_period("2026-10"), {"A1": "strategic"})
    assert result["tiers"]["unassigned"]["counts"]["at_start"] == 2
    empty = portfolio_kpis(make_con(None), parse_period("2026-10"), {})
    assert empty["tiers"] == {}
    for kpi, entry in empty["portfolio"].items():
        if kpi != "counts":
            assert entry["value"] is None and entry["note"], kpi
