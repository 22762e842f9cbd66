"""Early warnings: one synthetic case per code and a negative case each, then the fixture."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from reporter.compute.periods import parse_period
from reporter.compute.warnings import early_warnings
from reporter.config.entities import ENTITIES
from reporter.config.models import WarningThresholds

DATA = Path(__file__).parents[1] / "fixtures" / "valid" / "data"
SQL_TYPES = {"string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "number": "DOUBLE",
             "integer": "BIGINT", "boolean": "BOOLEAN"}
OCT = parse_period("2026-10")
END = OCT.end  # 2026-11-01; the last 90 days are 2026-08-03 .. 2026-10-31


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


def synthetic_con(since: str = "2024-01-01", contact: bool = True):
    """Account X; with contact, an interaction a day before the end keeps no_contact quiet."""
    con = make_con(None)
    con.execute("insert into accounts (account_id, name, since) values ('X', 'X Corp', ?)", [since])
    if contact:
        con.execute("insert into interactions (account_id, date) values ('X', ?)", [END - timedelta(days=1)])
    return con


def warn(con, frame=None, thresholds=None, now=None, prev=None, locale="en", tier="t"):
    result = early_warnings(con, frame, OCT, {"X": tier}, {"t": thresholds or WarningThresholds()},
                            {"X": now}, {"X": prev}, locale=locale)
    return result["X"]


def codes(warnings):
    return [w["code"] for w in warnings]


def add_orders(con, days_before_end: list[int]):
    for i, days in enumerate(days_before_end):
        con.execute("insert into orders (account_id, date, amount, order_id) values ('X', ?, 100, ?)",
                    [END - timedelta(days=days), f"O{i}"])


# --------------------------------------------------------------------------- order_drop

def test_order_drop():
    con = synthetic_con()
    # 18 orders in the 12 months -> 1.5 a month; 2 of them in the last 90 days -> 2 / (90 / 30.4375) = 0.68;
    # drop = 1 - 0.676 / 1.5 = 54.9% >= 40%.
    add_orders(con, [10, 50] + [100 + 15 * i for i in range(16)])
    [w] = warn(con)
    assert w["code"] == "order_drop"
    assert w["reasons"]["en"] == "Orders down 55% against the 12-month average (0.7 vs 1.5 per month)"
    assert w["reasons"]["zh_CN"] == "订单频率较12个月平均下降55%（每月0.7单，平均1.5单）"
    assert w["reason"] == w["reasons"]["en"]


def test_order_drop_negative_small_drop_and_no_history():
    con = synthetic_con()
    # 4 in the last 90 days -> 1.35 a month against 18 / 12 = 1.5: down 9.8%, below 40%.
    add_orders(con, [10, 30, 50, 70] + [100 + 20 * i for i in range(14)])
    assert warn(con) == []
    assert warn(synthetic_con()) == []  # no orders at all: the 12-month average is 0


def test_order_drop_measures_young_accounts_over_their_age():
    # Joined 60 days before the end with 1 order: both windows shrink to 60 days, so no drop.
    con = synthetic_con(since=str(END - timedelta(days=60)))
    add_orders(con, [45])
    assert warn(con) == []


def test_order_lines_of_one_order_count_once():
    con = synthetic_con()
    add_orders(con, [10, 50] + [100 + 15 * i for i in range(16)])
    con.execute("insert into orders (account_id, date, amount, order_id) values ('X', ?, 5, 'O0')", [END - timedelta(days=10)])
    assert "(0.7 vs 1.5 per month)" in warn(con)[0]["reason"]


def test_an_order_counts_in_each_window_one_of_its_lines_is_in():
    con = synthetic_con()
    add_orders(con, [10, 50] + [100 + 15 * i for i in range(16)])
    # O2 (100 days before the end) gets a second line 20 days before the end: it now counts in the last
    # 90 days too (3 there), still once in the 12 months (18).
    con.execute("insert into orders (account_id, date, amount, order_id) values ('X', ?, 5, 'O2')",
                [END - timedelta(days=20)])
    assert "(1 vs 1.5 per month)" in warn(con, thresholds=WarningThresholds(order_drop_pct=10))[0]["reason"]
    # two lines without an order_id count one each: still 3 in the last 90 days, 20 in the 12 months
    # -> 1.01 vs 1.67 a month, down 39%
    for days in (200, 201):
        con.execute("insert into orders (account_id, date, amount) values ('X', ?, 5)", [END - timedelta(days=days)])
    assert warn(con, thresholds=WarningThresholds(order_drop_pct=10))[0]["reason"] == \
        "Orders down 39% against the 12-month average (1 vs 1.7 per month)"


def test_loaded_order_ids_are_known_unique_so_lines_are_not_scanned_for_shared_ones(monkeypatch):
    from reporter.compute import warnings as module
    from reporter.compute.periods import add_months
    from reporter.compute.tables import unique_columns
    from reporter.config import load_project
    from reporter.sources import load_sources

    config = load_project(DATA.parent)
    loaded = load_sources(config.sources, config.root, (add_months(END, -36), END)).con
    assert unique_columns(loaded, "orders") == {"order_id"}
    assert unique_columns(synthetic_con(), "orders") == set()  # a hand-made table: checked row by row

    def shared(*args):
        raise AssertionError("the loader's unique order_id needs no scan")

    monkeypatch.setattr(module, "_shared_order_ids", shared)
    early_warnings(loaded, None, OCT, {"A1": "t"}, {}, {}, {})


# --------------------------------------------------------------------------- complaints_up

def add_tickets(con, days_before_end: list[int], complaint=True):
    for days in days_before_end:
        con.execute("insert into tickets (account_id, opened_at, is_complaint) values ('X', ?, ?)",
                    [pd.Timestamp(END) - pd.Timedelta(days=days) + pd.Timedelta(hours=9), complaint])


def test_complaints_up():
    con = synthetic_con()
    add_tickets(con, [5, 40, 80, 120])  # 3 in the last 90 days, 1 in the 90 before: 3 >= 2 x 1
    add_tickets(con, [6, 7], complaint=False)
    [w] = warn(con)
    assert w["code"] == "complaints_up"
    assert w["reasons"] == {"en": "3 complaints in the last 90 days, up from 1",
                            "zh_CN": "近90天投诉3次，此前90天为1次"}


def test_complaints_from_zero():
    con = synthetic_con()
    add_tickets(con, [5, 40])  # 2 now, none before
    assert codes(warn(con)) == ["complaints_up"]


def test_complaints_negative():
    con = synthetic_con()
    add_tickets(con, [5, 40, 80, 100, 120])  # 3 now, 2 before: 3 < 2 x 2
    assert warn(con) == []
    con = synthetic_con()
    add_tickets(con, [5])  # 1 now, 0 before: fewer than 2
    assert warn(con) == []
    con = synthetic_con()
    add_tickets(con, [5, 40, 80, 120])
    assert warn(con, thresholds=WarningThresholds(complaint_ratio=4)) == []  # 3 < 4 x 1


# --------------------------------------------------------------------------- nps_detractor

def add_survey(con, day: str, score: float, kind="nps"):
    con.execute("insert into surveys (account_id, date, kind, score) values ('X', ?, ?, ?)", [day, kind, score])


def test_nps_detractor():
    con = synthetic_con()
    add_survey(con, "2026-10-10", 3)
    add_survey(con, "2026-09-01", 9)
    [w] = warn(con)
    assert w["code"] == "nps_detractor"
    assert w["reasons"] == {"en": "NPS detractor: score 3 on 2026-10-10", "zh_CN": "NPS贬损者：2026-10-10评分3"}


def test_nps_detractor_names_the_latest_and_counts():
    con = synthetic_con()
    add_survey(con, "2026-09-10", 2)
    add_survey(con, "2026-10-12", 6)
    [w] = warn(con)
    assert w["reason"] == "NPS detractor: score 6 on 2026-10-12 (2 detractors in the last 90 days)"


def test_nps_detractor_negative():
    con = synthetic_con()
    add_survey(con, "2026-10-10", 7)        # passive
    add_survey(con, "2026-07-01", 2)        # detractor, but before the 90 days
    add_survey(con, "2026-10-11", 2, "csat")  # not NPS
    add_survey(con, "2026-11-02", 1)        # after the period
    assert warn(con) == []
    con = synthetic_con()
    add_survey(con, "2026-10-10", 3)
    assert warn(con, thresholds=WarningThresholds(nps_detractor=False)) == []


# --------------------------------------------------------------------------- no_contact

def add_interaction(con, day: date):
    con.execute("insert into interactions (account_id, date) values ('X', ?)", [day])


def test_no_contact():
    con = synthetic_con(contact=False)
    add_interaction(con, END - timedelta(days=75))  # 2026-08-18
    [w] = warn(con)
    assert w["code"] == "no_contact"
    assert w["reasons"] == {"en": "No contact for 75 days", "zh_CN": "已75天没有互动"}


def test_no_contact_never():
    [w] = warn(synthetic_con(contact=False))
    assert (w["code"], w["reason"]) == ("no_contact", "No contact on record")


def test_no_contact_negative_and_tier_threshold():
    con = synthetic_con(contact=False)
    add_interaction(con, END - timedelta(days=75))
    add_interaction(con, END - timedelta(days=59))
    assert warn(con) == []
    con = synthetic_con(contact=False)
    add_interaction(con, END - timedelta(days=75))
    assert warn(con, thresholds=WarningThresholds(no_contact_days=90)) == []
    # an interaction after the period does not count as contact in it
    add_interaction(con, END + timedelta(days=3))
    assert codes(warn(con)) == ["no_contact"]


# --------------------------------------------------------------------------- low_p_alive

def p_alive_frame(value, status="ok"):
    return pd.DataFrame({"account_id": ["X", "X"], "kpi": ["p_alive", "p_alive"], "period": ["2026-10", "2026-09"],
                         "value": [value, 0.01], "n": [3, 3], "status": [status, "ok"], "note": ["", ""]})


def test_low_p_alive():
    con = synthetic_con()
    [w] = warn(con, frame=p_alive_frame(0.32))
    assert w["code"] == "low_p_alive"
    assert w["reasons"] == {"en": "Probability still active 32%", "zh_CN": "仍活跃的概率为32%"}
    assert warn(con, frame=p_alive_frame(0.003))[0]["reason"] == "Probability still active <1%"


def test_low_p_alive_negative():
    con = synthetic_con()
    assert warn(con, frame=p_alive_frame(0.6)) == []
    assert warn(con, frame=p_alive_frame(float("nan"), "no_data")) == []
    assert warn(con, frame=p_alive_frame(0.32), thresholds=WarningThresholds(p_alive=0.3)) == []


# --------------------------------------------------------------------------- health_drop

def test_health_drop():
    con = synthetic_con()
    [w] = warn(con, now=64, prev=78)
    assert w["code"] == "health_drop"
    assert w["reasons"] == {"en": "Health score down 14 points (78 → 64)", "zh_CN": "健康分下降14分（78 → 64）"}
    assert warn(con, now=64.25, prev=78.5)[0]["reason"] == "Health score down 14.2 points (78.5 → 64.2)"


def test_health_drop_negative():
    con = synthetic_con()
    assert warn(con, now=70, prev=78) == []          # down 8 < 10
    assert warn(con, now=90, prev=60) == []          # up
    assert warn(con, now=None, prev=78) == []        # insufficient data now
    assert warn(con, now=64, prev=None) == []
    assert warn(con, now=64, prev=78, thresholds=WarningThresholds(health_drop=15)) == []


# --------------------------------------------------------------------------- general

def test_chinese_locale_and_unknown_tier_uses_defaults():
    con = synthetic_con(contact=False)
    add_interaction(con, END - timedelta(days=75))
    # tier "other" has no thresholds: the defaults (60 days) apply
    [w] = warn(con, locale="zh_CN", tier="other", thresholds=WarningThresholds(no_contact_days=90))
    assert w["reason"] == "已75天没有互动"


def test_missing_tables_disable_their_checks():
    con = duckdb.connect()
    con.execute("create table accounts (account_id varchar, name varchar)")
    con.execute("insert into accounts values ('X', 'X Corp')")
    assert codes(warn(con, frame=p_alive_frame(0.2), now=50, prev=70)) == ["low_p_alive", "health_drop"]


def test_fixture_october():
    con = make_con()
    tiers = {"A1": "strategic", "A2": "key", "A3": "growth"}
    result = early_warnings(con, None, OCT, tiers, {}, {}, {})
    # A1: complaints T02 (08-10), T04 (10-01), T05 (10-15) in the last 90 days, none in the 90 before;
    #     NPS 3 on 10-10. Orders: 4 in 90 days (1.35/month) vs 6 in 12 months (0.5/month): up.
    assert [w["reason"] for w in result["A1"]] == [
        "3 complaints in the last 90 days, up from 0", "NPS detractor: score 3 on 2026-10-10"]
    # A2: NPS 6 on 10-15; last interaction 2026-08-20 -> 73 days to 2026-11-01.
    assert [w["reason"] for w in result["A2"]] == ["NPS detractor: score 6 on 2026-10-15", "No contact for 73 days"]
    # A3 joined 2026-09-10, ordered once, last contact 10-28.
    assert result["A3"] == []


def test_fixture_september():
    con = make_con()
    sept = parse_period("2026-09")
    tiers = {"A1": "strategic", "A2": "key"}
    plain = early_warnings(con, None, sept, tiers, {}, {}, {})
    # A2: 2 orders in the 12 months to 2026-10-01 (2025-12-01, 2026-06-15) -> 0.17/month, none in the
    # last 90 days -> down 100%. Last interaction 2026-08-20 is 42 days before 2026-10-01: under 60.
    assert [w["reason"] for w in plain["A2"]] == [
        "Orders down 100% against the 12-month average (0 vs 0.2 per month)"]
    strict = early_warnings(con, None, sept, tiers, {"key": WarningThresholds(no_contact_days=30, order_drop_pct=100.5)},
                            {}, {})
    assert [w["reason"] for w in strict["A2"]] == ["No contact for 42 days"]
    # A1: 1 complaint in the last 90 days (T02): no warning; detractors none before October.
    assert plain["A1"] == []
