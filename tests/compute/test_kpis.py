"""The KPI library on the valid fixture, against values worked out by hand from its CSV rows.

Report period 2026-10: the period ends 2026-11-01 (exclusive), so
    month        = 2026-10-01 .. 2026-11-01
    trailing_90d = 2026-08-03 .. 2026-11-01   (90 / 30.4375 = 2.956879 months)
    trailing_12m = 2025-11-01 .. 2026-11-01   (prior and year-earlier: 2024-11-01 .. 2025-11-01)
    lifetime     = everything before 2026-11-01
Accounts: A1 strategic (since 2024-01-01), A2 key (since 2025-01-15), A3 growth (since 2026-09-10).
"""
from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reporter.compute import clv
from reporter.compute.kpis import BGNBD_PENALIZERS, KPIS, compute_kpis, resolve_kpis
from reporter.compute.periods import parse_period, trend_periods, window_bounds
from reporter.config import load_project
from reporter.config.catalog import BUILTIN_KPIS
from reporter.config.entities import ENTITIES
from reporter.config.models import KpiOptions, Kpis
from reporter.sources.load import UNIQUE_KEY_COMMENT

FIXTURE = Path(__file__).parents[1] / "fixtures" / "valid"
TYPES = {"string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "number": "DOUBLE", "integer": "BIGINT",
         "boolean": "BOOLEAN"}
PERIOD = parse_period("2026-10")
M90 = 90 / 30.4375  # months in a 90-day window


def connect(data_dir: Path | None = FIXTURE / "data") -> duckdb.DuckDBPyConnection:
    """Every canonical entity as a typed table, filled from data_dir/<entity>.csv where present."""
    con = duckdb.connect()
    for entity in ENTITIES.values():
        columns = ", ".join(f'"{f.name}" {TYPES[f.type]}' for f in entity.fields)
        con.execute(f"CREATE TABLE {entity.name} ({columns})")
        path = data_dir / f"{entity.name}.csv" if data_dir else None
        if path and path.exists():
            source = f"read_csv('{path}', all_varchar = true)"
            header = con.sql(f"SELECT * FROM {source} LIMIT 0").columns
            select = ", ".join(f'CAST("{c}" AS {TYPES[entity.field(c).type]}) AS "{c}"' for c in header)
            con.execute(f"INSERT INTO {entity.name} BY NAME SELECT {select} FROM {source}")
    # as the loader leaves it: no file or network access, settings locked
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


@pytest.fixture(scope="module")
def config():
    return load_project(FIXTURE)


@pytest.fixture(scope="module")
def kpi_defs(config):
    return resolve_kpis(config.kpis, [*BUILTIN_KPIS, "cloud_revenue", "revenue_per_interaction"])


@pytest.fixture(scope="module")
def scorecard(kpi_defs):
    return compute_kpis(connect(), kpi_defs, [PERIOD])


def row(frame: pd.DataFrame, kpi: str, account: str, period: str = "2026-10") -> pd.Series:
    found = frame[(frame.kpi == kpi) & (frame.account_id == account) & (frame.period == period)]
    assert len(found) == 1, f"{kpi}/{account}/{period}: {len(found)} rows"
    return found.iloc[0]


OK, LOW, NONE = "ok", "low_sample", "no_data"

# (kpi, account, value (None: no data), n, status) -- worked out from the CSV rows by hand.
EXPECTED = [
    # csat, trailing_90d, share of 4-5 (top2), min_sample 5 from kpis.yaml
    ("csat", "A1", 2 / 3, 3, LOW),            # scores 5 (09-20), 4 (10-05), 3 (10-12): 2 of 3
    ("csat", "A2", None, 0, NONE),            # A2 has no csat rows
    ("csat", "A3", None, 0, NONE),
    # nps, trailing_90d: % promoters (9-10) - % detractors (0-6)
    ("nps", "A1", 40.0, 5, OK),               # 10, 9, 9, 7, 3: (3 - 1) / 5 * 100
    ("nps", "A2", -50.0, 2, LOW),             # 8 (passive), 6 (detractor): (0 - 1) / 2 * 100
    ("nps", "A3", None, 0, NONE),
    # ces, trailing_90d: mean
    ("ces", "A1", None, 0, NONE),
    ("ces", "A2", 4.0, 2, LOW),               # (3 + 5) / 2
    ("ces", "A3", None, 0, NONE),
    # revenue, month 2026-10
    ("revenue", "A1", 5000.0, 2, OK),         # O06 4000 + O07 1000
    ("revenue", "A2", 600.0, 1, OK),          # O11
    ("revenue", "A3", 0.0, 0, OK),            # no October order: 0 is real data (min_sample 0 for non-surveys)
    # revenue_growth, trailing_12m vs 2024-11-01..2025-11-01
    ("revenue_growth", "A1", 13.0, 7, OK),    # (2000+1500+3000+2500+4000+1000) / 1000 (O01) - 1; n 6 + 1
    ("revenue_growth", "A2", None, 4, NONE),  # since 2025-01-15 > 2024-11-01: younger than the comparison
    ("revenue_growth", "A3", None, 1, NONE),  # since 2026-09-10
    # gross_margin, trailing_12m: Σ(amount - cost) / Σ amount
    ("gross_margin", "A1", 6900 / 14000, 6, OK),  # 14000 - (1200+900+1500+1000+2000+500)
    ("gross_margin", "A2", 1200 / 2700, 3, OK),   # (1200+900+600) - (700+500+300)
    ("gross_margin", "A3", 0.5, 1, OK),           # (500 - 250) / 500
    # clv_historical, lifetime: Σ(amount - cost) of every order before 2026-11-01
    ("clv_historical", "A1", 7300.0, 7, OK),  # 400 + 800 + 600 + 1500 + 1500 + 2000 + 500
    ("clv_historical", "A2", 1600.0, 4, OK),  # 400 + 500 + 400 + 300
    ("clv_historical", "A3", 250.0, 1, OK),
    # repurchase_rate, trailing_12m: months with an order / 12
    ("repurchase_rate", "A1", 5 / 12, 6, OK),  # 2025-11, 2026-03, -08, -09, -10
    ("repurchase_rate", "A2", 3 / 12, 3, OK),  # 2025-12, 2026-06, 2026-10
    ("repurchase_rate", "A3", 1 / 12, 1, OK),  # 2026-09
    # order_frequency, trailing_90d: orders / 2.956879 months
    ("order_frequency", "A1", 4 / M90, 4, OK),  # O04 08-10, O05 09-12, O06 10-05, O07 10-20 -> 1.3528
    ("order_frequency", "A2", 1 / M90, 1, OK),  # O11 10-30 -> 0.3382
    ("order_frequency", "A3", 1 / M90, 1, OK),  # O12 09-15
    # net / gross revenue retention, trailing_12m vs the prior 12 months
    ("net_revenue_retention", "A1", 14.0, 7, OK),   # 14000 / 1000
    ("net_revenue_retention", "A2", None, 4, NONE),  # younger than the prior window
    ("net_revenue_retention", "A3", None, 1, NONE),
    ("gross_revenue_retention", "A1", 1.0, 7, OK),  # min(14000, 1000) / 1000
    ("gross_revenue_retention", "A2", None, 4, NONE),
    ("gross_revenue_retention", "A3", None, 1, NONE),
    # complaints, trailing_90d by opened_at; n = tickets
    ("complaints", "A1", 3.0, 4, OK),         # T02, T04, T05 of T02..T05
    ("complaints", "A2", 0.0, 2, OK),         # T07, T08 (T06 07-20 is before 08-03)
    ("complaints", "A3", 0.0, 0, OK),         # no tickets: 0 complaints is real data (min_sample 0)
    # first_response_hours: median
    ("first_response_hours", "A1", 1.5, 4, OK),   # 2, 1, 4, 0.5 h -> (1 + 2) / 2
    ("first_response_hours", "A2", 4.5, 2, OK),   # 1, 8 h
    ("first_response_hours", "A3", None, 0, NONE),
    # resolution_hours: median over resolved tickets
    ("resolution_hours", "A1", 12.0, 3, OK),  # T02 36 h, T03 12 h, T05 6 h (T04 open)
    ("resolution_hours", "A2", 48.0, 2, OK),  # T07 24 h, T08 72 h
    ("resolution_hours", "A3", None, 0, NONE),
    # sla_compliance: met / tickets whose SLA is decided
    ("sla_compliance", "A1", 0.5, 4, OK),     # T02 36>24 no, T03 12<=24 yes, T04 open past 24 h no, T05 6<=48 yes
    ("sla_compliance", "A2", 0.0, 1, OK),     # T07 has no SLA; T08 72 > 48
    ("sla_compliance", "A3", None, 0, NONE),
    # complaint_resolution_rate
    ("complaint_resolution_rate", "A1", 2 / 3, 3, OK),  # T02 and T05 resolved, T04 open
    ("complaint_resolution_rate", "A2", None, 0, NONE),  # no complaints: zero denominator
    ("complaint_resolution_rate", "A3", None, 0, NONE),
    # ticket_satisfaction: mean of the ratings given
    ("ticket_satisfaction", "A1", 11 / 3, 3, OK),  # T02 2, T03 5, T05 4
    ("ticket_satisfaction", "A2", 4.0, 1, OK),     # T07 4 (T08 unrated)
    ("ticket_satisfaction", "A3", None, 0, NONE),
    # interaction_frequency, trailing_90d
    ("interaction_frequency", "A1", 5 / M90, 5, OK),  # 08-15, 09-02, 09-20, 10-08, 10-25 -> 1.6910
    ("interaction_frequency", "A2", 1 / M90, 1, OK),  # 08-20 (07-01 is before 08-03)
    ("interaction_frequency", "A3", 3 / M90, 3, OK),  # 09-12, 10-01, 10-28 -> 1.0146
    # days_since_contact: last interaction -> 2026-11-01
    ("days_since_contact", "A1", 7.0, 6, OK),   # 10-25
    ("days_since_contact", "A2", 73.0, 3, OK),  # 08-20: 11 + 30 + 31 + 1
    ("days_since_contact", "A3", 4.0, 3, OK),   # 10-28
    # relationship_breadth: departments of active contacts or interactions; n = contacts + interactions
    ("relationship_breadth", "A1", 4.0, 9, OK),  # IT, Procurement, Finance + Operations (C4 inactive, but met 10-08)
    ("relationship_breadth", "A2", 2.0, 5, OK),  # Procurement, IT; 2 contacts + 3 interactions
    ("relationship_breadth", "A3", 2.0, 5, OK),  # Executive office, Procurement
    # relationship_depth, trailing_12m: director/executive share of interactions
    ("relationship_depth", "A1", 4 / 6, 6, OK),  # exec, manager, exec, staff, director, exec
    ("relationship_depth", "A2", 0.0, 3, OK),    # manager, manager, staff
    ("relationship_depth", "A3", 2 / 3, 3, OK),  # exec, exec, staff
    # product_penetration, trailing_12m: lines bought / 5 lines in all orders (hardware, software, cloud,
    # services, training)
    ("product_penetration", "A1", 4 / 5, 6, OK),  # software, cloud, services, hardware (O01 is before the window)
    ("product_penetration", "A2", 2 / 5, 3, OK),  # hardware, software
    ("product_penetration", "A3", 1 / 5, 1, OK),  # training
    # cross_sell_revenue_share, trailing_12m: won cross_sell + upsell closed in the window / revenue
    ("cross_sell_revenue_share", "A1", 4500 / 14000, 6, OK),  # P1 1500 (03-01) + P2 3000 (08-01)
    ("cross_sell_revenue_share", "A2", 0.0, 3, OK),            # P5 is a renewal, P6 lost, P7 open
    ("cross_sell_revenue_share", "A3", 0.0, 1, OK),            # P8 is new business
    # conversion_rate, trailing_12m: won / (won + lost) by closed_at
    ("conversion_rate", "A1", 2 / 3, 3, OK),  # P1, P2 won; P3 lost
    ("conversion_rate", "A2", 0.5, 2, OK),    # P5 won, P6 lost
    ("conversion_rate", "A3", 1.0, 1, OK),    # P8 won
    # cost_to_serve, trailing_12m: retention + service costs of the account / revenue
    ("cost_to_serve", "A1", 1000 / 14000, 6, OK),  # 400 retention + 600 service
    ("cost_to_serve", "A2", 500 / 2700, 3, OK),    # 300 service + 200 retention
    ("cost_to_serve", "A3", 0.0, 1, OK),           # no costs booked on A3
    # custom aggregate cloud_revenue, trailing_12m: sum(amount) filter (where product_line = 'cloud')
    ("cloud_revenue", "A1", 5500.0, 6, OK),   # O03 1500 + O04 3000 + O07 1000
    ("cloud_revenue", "A2", None, 3, NONE),   # no cloud order: the filtered sum is empty
    ("cloud_revenue", "A3", None, 1, NONE),
    # formula revenue_per_interaction = revenue / interaction_frequency; n = the smaller n
    ("revenue_per_interaction", "A1", 5000 / (5 / M90), 2, OK),  # 2956.88
    ("revenue_per_interaction", "A2", 600 / (1 / M90), 1, OK),   # 1774.13
    ("revenue_per_interaction", "A3", 0.0, 0, OK),               # revenue 0 (no orders) is real data
]


@pytest.mark.parametrize("kpi,account,value,n,status", EXPECTED, ids=[f"{e[0]}-{e[1]}" for e in EXPECTED])
def test_fixture_values_worked_out_by_hand(scorecard, kpi, account, value, n, status):
    got = row(scorecard, kpi, account)
    assert (got.status, got.n) == (status, n), got.note
    if value is None:
        assert math.isnan(got.value)
    else:
        assert got.value == pytest.approx(value, rel=1e-9)


def test_every_builtin_is_registered_and_covered():
    assert set(KPIS) == set(BUILTIN_KPIS)
    covered = {e[0] for e in EXPECTED} | {"p_alive", "clv_predicted"}  # the models: see below
    assert set(BUILTIN_KPIS) <= covered


@pytest.mark.parametrize("kpi,account,note", [
    ("csat", "A1", "3 responses, fewer than 5"),
    ("csat", "A2", "no CSAT responses in the last 90 days"),
    ("nps", "A2", "2 responses, fewer than 5"),
    ("revenue", "A3", "no orders in the month"),
    ("revenue_growth", "A3",
     "account younger than the window (customer since 2026-09-10, the comparison window starts 2024-11-01)"),
    ("net_revenue_retention", "A2",
     "account younger than the window (customer since 2025-01-15, the comparison window starts 2024-11-01)"),
    ("complaints", "A3", "no tickets in the last 90 days"),
    ("complaint_resolution_rate", "A2", "no complaints in the last 90 days"),
    ("first_response_hours", "A3", "no tickets with a first response in the last 90 days"),
    ("interaction_frequency", "A3", "account younger than the window (customer since 2026-09-10)"),
    ("relationship_depth", "A1", "decision-maker contact known"),
    ("cloud_revenue", "A2", "the expression gives no value for the 3 orders in the last 12 months"),
    ("revenue_per_interaction", "A3", ""),  # revenue 0 is real data now (min_sample 0), not a low sample
    ("nps", "A1", ""),
])
def test_notes_say_why(scorecard, kpi, account, note):
    assert row(scorecard, kpi, account).note == note


# Inputs of the CLV models at 2026-11-01 in weeks, by hand (purchase days; monetary value = mean repeat spend):
#   A1: 7 order days -> x 6; first 2025-10-15, last 2026-10-20: t_x 370 / 7; T (to 11-01) 382 / 7;
#       repeat spend (2000 + 1500 + 3000 + 2500 + 4000 + 1000) / 6
#   A2: 4 days -> x 3; 2025-02-10 .. 2026-10-30: t_x 627 / 7; T 629 / 7; (1200 + 900 + 600) / 3 = 900
#   A3: 1 day -> x 0; t_x 0; T (2026-09-15 .. 11-01) 47 / 7; spend 0
RFM = {"A1": (6, 370 / 7, 382 / 7, 14000 / 6, 7), "A2": (3, 627 / 7, 629 / 7, 900.0, 4), "A3": (0, 0.0, 47 / 7, 0.0, 1)}


def first_converging_bgnbd(*rfm):
    """The scorecard's rule: the BG/NBD fit with the first of its penalizers that converges cleanly."""
    for penalizer in BGNBD_PENALIZERS:
        try:
            return clv.fit_bgnbd(*rfm, penalizer=penalizer, accept_stall=False)
        except ValueError:
            continue
    return clv.fit_bgnbd(*rfm)


def test_p_alive_and_clv_predicted_follow_the_models(scorecard):
    x, t_x, age, spend, _ = (np.array(v, float) for v in zip(*RFM.values()))
    bgnbd = first_converging_bgnbd(x, t_x, age)
    expected_alive = clv.p_alive(bgnbd, x, t_x, age)
    for account, alive in zip(RFM, expected_alive):
        got = row(scorecard, "p_alive", account)
        assert (got.status, got.n) == (OK, RFM[account][4])
        assert got.value == pytest.approx(alive, rel=1e-6)
    # With only two repeat buyers the Gamma-Gamma likelihood is nearly flat: whatever the
    # model says about these exact inputs, the KPI must say too.
    try:
        gamma = clv.fit_gamma_gamma(x, spend)
        expected_clv = clv.predicted_clv(bgnbd, gamma, x, t_x, age, spend, months=12, monthly_discount_rate=0.01)
    except ValueError:
        expected_clv = None
    for i, account in enumerate(RFM):
        got = row(scorecard, "clv_predicted", account)
        if expected_clv is None:
            assert got.status == NONE and got.note.startswith("the Gamma-Gamma model could not be fitted")
        else:
            assert got.status == OK and got.value == pytest.approx(expected_clv[i], rel=1e-6)


def test_clv_needs_two_accounts_with_repeat_purchases(kpi_defs):
    con = connect()
    con.execute("DELETE FROM orders WHERE account_id = 'A2'")  # A1 is the only repeat buyer left
    frame = compute_kpis(con, {k: kpi_defs[k] for k in ("p_alive", "clv_predicted")}, [PERIOD])
    assert set(frame.status) == {NONE}
    assert row(frame, "p_alive", "A1").note == \
        "the BG/NBD model needs at least 2 accounts with repeat purchases, found 1"
    assert row(frame, "p_alive", "A2").note == "no orders to date"


def test_a_fit_that_never_converges_says_what_was_tried(kpi_defs, monkeypatch):
    """When no BG/NBD fit converges, the note names the penalizers already tried, not clv's advice
    to try a larger one (which nobody running a scorecard can act on)."""
    from types import SimpleNamespace

    def stalled(fun, x0, **kwargs):  # L-BFGS-B stopping where the gradient is far from zero
        return SimpleNamespace(success=False, status=2, message="ABNORMAL", x=np.asarray(x0, float),
                               jac=np.ones(len(x0)))

    monkeypatch.setattr(clv, "minimize", stalled)
    frame = compute_kpis(connect(), {k: kpi_defs[k] for k in ("p_alive",)}, [PERIOD])
    assert set(frame.status) == {NONE}
    assert row(frame, "p_alive", "A1").note == ("the BG/NBD model could not be fitted: it does not converge on these "
                                                "orders, plain or with a penalizer of 0.0001, 0.001, 0.01")


def test_clv_inputs_match_the_reference_rfm_summary():
    """On a portfolio large enough to fit, p_alive and CLV equal the clv module applied to rfm_summary."""
    # Simulated from the BG/NBD story: Poisson buying at a gamma-distributed rate, dropping out
    # after each purchase with a beta-distributed probability.
    rng = np.random.default_rng(7)
    con = connect(None)
    accounts = [f"C{i:02d}" for i in range(80)]
    con.executemany("INSERT INTO accounts (account_id, name) VALUES (?, ?)", [(a, a) for a in accounts])
    rows = []
    for a in accounts:
        rate, dropout, spend = rng.gamma(2.0, 0.15), rng.beta(1.0, 4.0), rng.gamma(4.0, 60.0)
        day = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 500)))
        while day < PERIOD.end:
            # whole amounts: sums are then exact both here and in rfm_summary, so the models see the same inputs
            rows.append((a, day, float(round(rng.gamma(5.0, spend / 5.0))) + 1, 10.0))
            if rng.random() < dropout:
                break
            day += timedelta(days=1 + int(rng.exponential(7.0 / rate)))
    con.executemany("INSERT INTO orders (account_id, date, amount, cost) VALUES (?, ?, ?, ?)", rows)
    defs = resolve_kpis(Kpis(), ["p_alive", "clv_predicted"])
    frame = compute_kpis(con, defs, [PERIOD])
    orders = pd.DataFrame(rows, columns=["account_id", "date", "amount", "cost"])
    rfm = clv.rfm_summary(orders, PERIOD.end)
    args = rfm["frequency"], rfm["recency"], rfm["T"]
    bgnbd = first_converging_bgnbd(*args)
    alive = pd.Series(clv.p_alive(bgnbd, *args), index=rfm.index)
    got = frame.set_index(["kpi", "account_id"])
    assert (rfm["frequency"] > 0).sum() > 20 and len(rfm) == 80
    for account in rfm.index:
        assert got.loc[("p_alive", account), "value"] == pytest.approx(alive[account], rel=1e-6)
    repeat = rfm["frequency"] > 0
    try:
        gamma = clv.fit_gamma_gamma(rfm["frequency"][repeat], rfm["monetary_value"][repeat])
    except ValueError:  # the KPI reports what the model reports
        assert got.loc["clv_predicted", "note"].str.startswith("the Gamma-Gamma model could not be fitted").all()
        return
    value = pd.Series(clv.predicted_clv(bgnbd, gamma, *args, rfm["monetary_value"]), index=rfm.index)
    for account in rfm.index:
        assert got.loc[("clv_predicted", account), "value"] == pytest.approx(value[account], rel=1e-6)


def test_custom_and_formula_kpis_come_from_kpis_yaml(kpi_defs):
    cloud, per_interaction = kpi_defs["cloud_revenue"], kpi_defs["revenue_per_interaction"]
    assert (cloud.entity, cloud.window, cloud.label_zh) == ("orders", "trailing_12m", "云收入")
    assert per_interaction.formula == "revenue / interaction_frequency"
    # formulas pull in what they use, after what was asked for
    assert list(resolve_kpis(load_project(FIXTURE).kpis, ["revenue_per_interaction"])) == \
        ["revenue_per_interaction", "revenue", "interaction_frequency"]


def test_custom_aggregate_combined_from_buckets_equals_row_by_row():
    """sum/count/avg/min/max expressions are combined from the one orders scan; others read the rows."""
    expressions = {
        "combined": "avg(amount) filter (where product_line <> 'cloud') + max(cost) - min(cost) + count(*)",
        # median() cannot be combined, so this one aggregates the rows; 0 * median leaves the value alone
        "row_by_row": "avg(amount) filter (where product_line <> 'cloud') + max(cost) - min(cost) + count(*) "
                      "+ 0 * median(amount)",
    }
    config = Kpis(kpis={name: KpiOptions(entity="orders", expression=text, denominator="sum(amount)",
                                         direction="up", window="trailing_90d") for name, text in expressions.items()})
    frame = compute_kpis(connect(), resolve_kpis(config, list(expressions)), trend_periods(PERIOD))
    combined = frame[frame.kpi == "combined"].reset_index(drop=True)
    row_by_row = frame[frame.kpi == "row_by_row"].reset_index(drop=True)
    assert combined[["account_id", "period", "n", "status"]].equals(row_by_row[["account_id", "period", "n", "status"]])
    np.testing.assert_allclose(combined.value, row_by_row.value, rtol=1e-12)
    assert (combined.status == OK).sum() > 5


def test_failing_custom_expression_is_reported_not_fatal():
    config = Kpis(kpis={"broken": KpiOptions(entity="orders", expression="sum(product_line::DOUBLE)", direction="up")})
    frame = compute_kpis(connect(), resolve_kpis(config, ["broken", "revenue"]), [PERIOD])
    broken = frame[frame.kpi == "broken"]
    assert set(broken.status) == {NONE} and broken.note.str.startswith("cannot evaluate broken: ").all()
    assert row(frame, "revenue", "A1").value == 5000


def test_trend_rows_and_invariants(kpi_defs):
    periods = trend_periods(PERIOD)
    frame = compute_kpis(connect(), kpi_defs, periods)
    assert list(frame.columns) == ["account_id", "kpi", "period", "value", "n", "status", "note"]
    assert len(frame) == 3 * len(kpi_defs) * 12
    assert (frame.groupby(["account_id", "kpi"]).size() == 12).all()
    assert list(frame.period.unique()) == [p.label for p in periods]  # oldest first
    assert list(frame.kpi.unique()) == list(kpi_defs)
    assert frame.value.isna().equals(frame.status == NONE)  # NaN iff no_data
    assert not np.isinf(frame.value).any()
    assert set(frame.status) == {OK, LOW, NONE}
    assert (frame.note[frame.status != OK] != "").all()
    # the trend reproduces the single-period run for its last period
    last = frame[frame.period == "2026-10"].reset_index(drop=True)
    single = compute_kpis(connect(), kpi_defs, [PERIOD])
    pd.testing.assert_frame_equal(last, single, check_exact=False, rtol=1e-9)
    # before A3 was a customer it has no data at all
    early = frame[(frame.account_id == "A3") & (frame.period == "2026-08")]
    assert set(early.status) == {NONE}
    assert set(early.note[early.kpi != "revenue_per_interaction"]) == \
        {"not an account yet in this period (customer since 2026-09-10)"}
    assert row(frame, "revenue_per_interaction", "A3", "2026-08").note == \
        "no value for revenue; no value for interaction_frequency"
    # a month earlier: September revenue of A3 is its first order
    assert row(frame, "revenue", "A3", "2026-09").value == 500


def test_orders_without_cost_are_left_out_of_the_margin(kpi_defs):
    con = connect()
    con.execute("INSERT INTO orders (order_id, account_id, date, amount, margin) VALUES "
                "('X1', 'A3', DATE '2026-10-03', 300, 120), ('X2', 'A3', DATE '2026-10-04', 200, NULL)")
    frame = compute_kpis(con, {k: kpi_defs[k] for k in ("gross_margin", "clv_historical")}, [PERIOD])
    margin = row(frame, "gross_margin", "A3")
    assert margin.value == pytest.approx((250 + 120) / (500 + 300))  # X2 has neither cost nor margin
    assert (margin.n, margin.note) == (2, "1 of 3 orders have no cost or margin and are left out")
    assert row(frame, "clv_historical", "A3").value == 370


def test_sla_still_running_is_not_counted(kpi_defs):
    con = connect()
    con.execute("INSERT INTO tickets (ticket_id, account_id, opened_at, sla_hours) "
                "VALUES ('X1', 'A3', TIMESTAMP '2026-10-31 18:00', 48)")
    got = row(compute_kpis(con, {"sla_compliance": kpi_defs["sla_compliance"]}, [PERIOD]), "sla_compliance", "A3")
    assert (got.status, got.note) == (NONE, "the SLA of all 1 ticket with an SLA was still running at the period end")


@pytest.mark.parametrize("extra", [70, 130])  # 75 lines: two 64-bit masks; 135: three, and over 127 counted
def test_product_lines_beyond_one_bit_mask(kpi_defs, extra):
    con = connect()
    con.executemany("INSERT INTO orders (order_id, account_id, date, amount, product_line) VALUES (?, 'A1', ?, 1, ?)",
                    [(f"X{i}", date(2026, 10, 1) + timedelta(days=i % 30), f"line{i:03d}") for i in range(extra)])
    got = row(compute_kpis(con, {"product_penetration": kpi_defs["product_penetration"]}, [PERIOD]),
              "product_penetration", "A1")
    assert got.value == pytest.approx((4 + extra) / (5 + extra))


def test_relationship_depth_says_when_no_decision_maker_is_known(kpi_defs):
    con = connect()
    con.execute("UPDATE contacts SET role = 'influencer' WHERE contact_id = 'C5'")
    got = row(compute_kpis(con, {"relationship_depth": kpi_defs["relationship_depth"]}, [PERIOD]),
              "relationship_depth", "A2")
    assert (got.value, got.note) == (0.0, "no decision-maker contact known")


@pytest.mark.parametrize("unique_contact_ids", [False, True])
def test_interactions_take_department_and_seniority_from_their_contact(kpi_defs, unique_contact_ids):
    # Without them on the interactions, C1's (IT, executive) come from contacts: the hand-worked values hold.
    # With contact_id marked unique (as the loader does), only these interactions are joined with contacts.
    con = connect()
    con.execute("UPDATE interactions SET department = NULL WHERE contact_id = 'C1' AND date < DATE '2026-09-10'")
    con.execute("UPDATE interactions SET seniority = NULL WHERE contact_id = 'C1' AND date > DATE '2026-09-10'")
    if unique_contact_ids:
        con.execute(f"COMMENT ON COLUMN contacts.contact_id IS '{UNIQUE_KEY_COMMENT}'")
    ids = ("relationship_breadth", "relationship_depth")
    frame = compute_kpis(con, {k: kpi_defs[k] for k in ids}, [PERIOD])
    assert (row(frame, "relationship_breadth", "A1").value, row(frame, "relationship_breadth", "A1").n) == (4.0, 9)
    assert (row(frame, "relationship_depth", "A1").value, row(frame, "relationship_depth", "A1").n) == (4 / 6, 6)


def test_no_revenue_a_year_earlier(kpi_defs):
    con = connect()
    con.execute("UPDATE accounts SET since = DATE '2024-06-01' WHERE account_id = 'A2'")
    con.execute("DELETE FROM orders WHERE order_id = 'O08'")  # A2's only order before 2025-11-01
    got = row(compute_kpis(con, {"revenue_growth": kpi_defs["revenue_growth"]}, [PERIOD]), "revenue_growth", "A2")
    assert (got.status, got.note) == (NONE, "no revenue a year earlier (2024-11-01 to 2025-10-31)")


def test_empty_tables_give_no_data(kpi_defs):
    con = connect(None)
    con.execute("INSERT INTO accounts (account_id, name) VALUES ('A1', 'Acme')")
    frame = compute_kpis(con, kpi_defs, [PERIOD])
    assert set(frame.status) == {NONE}
    assert row(frame, "revenue", "A1").note == "no orders data loaded"
    assert row(frame, "relationship_breadth", "A1").note == "no contacts or interactions data loaded"
    assert compute_kpis(connect(None), kpi_defs, [PERIOD]).empty  # no accounts, no rows


def test_connection_is_left_as_found(kpi_defs):
    con = connect()
    before = con.sql("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
    compute_kpis(con, kpi_defs, trend_periods(PERIOD, 3))
    assert con.sql("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall() == before


def test_resolve_kpis_merges_options():
    config = Kpis(min_sample=3, kpis={"csat": KpiOptions(method="mean"), "revenue": KpiOptions(window="quarter")})
    defs = resolve_kpis(config, ["csat", "nps", "revenue", "complaints"])
    assert (defs["csat"].method, defs["csat"].unit, defs["csat"].min_sample) == ("mean", "number", 3)
    # surveys default to kpis.yaml's min_sample; every other KPI to 0 (a total over no rows is real data)
    assert (defs["nps"].min_sample, defs["complaints"].min_sample) == (3, 0)
    assert (defs["revenue"].window, defs["revenue"].label_zh) == ("quarter", "收入")
    with pytest.raises(ValueError, match='unknown KPI "nope"'):
        resolve_kpis(config, ["nope"])


def test_default_min_sample_and_low_sample_inputs_of_formulas():
    """Non-survey KPIs (built-in, custom over another entity, formula) default to min_sample 0; a
    formula over a low-sample survey KPI is low_sample and names it."""
    config = Kpis(min_sample=5, kpis={
        "nps_per_interaction": KpiOptions(formula="nps / interaction_frequency"),
        "survey_count": KpiOptions(entity="surveys", expression="count(*)"),
        "order_count": KpiOptions(entity="orders", expression="count(*)"),
    })
    defs = resolve_kpis(config, ["nps_per_interaction", "survey_count", "order_count", "revenue"])
    assert {k: d.min_sample for k, d in defs.items()} == {
        "nps_per_interaction": 0, "survey_count": 5, "order_count": 0, "revenue": 0, "nps": 5,
        "interaction_frequency": 0}
    frame = compute_kpis(connect(), defs, [PERIOD])
    got = row(frame, "nps_per_interaction", "A2")   # nps -50 of 2 responses (< 5) / 1 interaction in 90 days
    assert (got.status, got.note) == (LOW, "nps has a low sample")
    assert got.value == pytest.approx(-50 / (1 / M90), rel=1e-9)
    a3 = row(frame, "revenue", "A3")  # no October order: revenue 0 with an ok status, the note says why
    assert (a3.value, a3.n, a3.status, a3.note) == (0.0, 0, OK, "no orders in the month")


def test_csat_mean_method(config):
    config = Kpis(kpis={"csat": KpiOptions(method="mean", min_sample=1)})
    got = row(compute_kpis(connect(), resolve_kpis(config, ["csat"]), [PERIOD]), "csat", "A1")
    assert (got.value, got.status) == (4.0, OK)  # (5 + 4 + 3) / 3


ORDER_KPIS = ["revenue", "revenue_growth", "gross_margin", "clv_historical", "clv_predicted", "p_alive",
              "repurchase_rate", "order_frequency", "net_revenue_retention", "gross_revenue_retention",
              "product_penetration", "cross_sell_revenue_share", "cost_to_serve"]
order_rows = st.lists(
    st.tuples(st.sampled_from(["A1", "A2", "A3"]),
              st.dates(min_value=date(2024, 10, 1), max_value=date(2026, 12, 31)),
              st.sampled_from([0.0, 0.01, 1.0, 250.0, 1e6]),
              st.one_of(st.none(), st.sampled_from([0.0, 0.5, 100.0])),
              st.sampled_from([None, "cloud", "hardware"])),
    max_size=25,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order_rows, st.sampled_from(["month", "trailing_90d", "quarter", "ytd", "trailing_12m", "lifetime"]))
def test_random_orders_never_give_inf_or_nan_with_data(orders, window):
    con = connect(None)
    con.execute("INSERT INTO accounts (account_id, name, since) VALUES "
                "('A1', 'a', NULL), ('A2', 'b', DATE '2025-01-01'), ('A3', 'c', DATE '2026-07-15')")
    if orders:
        con.executemany("INSERT INTO orders (order_id, account_id, date, amount, cost, product_line) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [(f"O{i}", *r) for i, r in enumerate(orders)])
    con.execute("INSERT INTO costs (date, category, amount, account_id) "
                "VALUES (DATE '2026-09-01', 'service', 10, 'A1')")
    config = Kpis(kpis={k: KpiOptions(window=window) for k in ORDER_KPIS})
    periods = trend_periods(PERIOD, 3)
    frame = compute_kpis(con, resolve_kpis(config, ORDER_KPIS), periods)
    assert len(frame) == 3 * len(ORDER_KPIS) * 3
    assert frame.value.isna().equals(frame.status == NONE)
    assert not np.isinf(frame.value).any()
    assert set(frame.status) <= {OK, LOW, NONE}
    # revenue equals the plain sum over the window
    for period in periods:
        w = window_bounds(window, period.end)
        for account in ("A1", "A2", "A3"):
            total = sum(amount for acc, day, amount, *_ in orders
                        if acc == account and (w.start is None or day >= w.start) and day < w.end)
            got = row(frame, "revenue", account, period.label)
            if got.status != NONE:
                assert got.value == pytest.approx(total, rel=1e-9, abs=1e-6)
