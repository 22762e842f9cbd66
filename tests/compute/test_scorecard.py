"""Scorecard: status, score, health and percentiles computed by hand on the fixture, scoring options,
and hypothesis properties over synthetic KPI frames."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reporter.compute.periods import parse_period, trend_periods
from reporter.compute.scorecard import (
    _clean,
    build_scorecard,
    health,
    kpi_ids_for,
    kpi_score,
    kpi_status,
    percentile_ranks,
    score_accounts,
    scorecard_frame,
)
from reporter.config import load_project
from reporter.config.entities import ENTITIES
from reporter.config.models import HealthBands, TierKpi, Tiers

FIXTURE = Path(__file__).parents[1] / "fixtures" / "valid"
DATA = FIXTURE / "data"
SQL_TYPES = {"string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "number": "DOUBLE",
             "integer": "BIGINT", "boolean": "BOOLEAN"}
OCT = parse_period("2026-10")
PERIODS = trend_periods(OCT, 12)
M90 = 90 / 30.4375  # months in a 90-day window


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


@pytest.fixture(scope="module")
def con():
    return make_con()


@pytest.fixture(scope="module")
def config():
    return load_project(FIXTURE)


def long_frame(cells: dict, accounts=("A1", "A2", "A3"), kpis=(), periods=PERIODS) -> pd.DataFrame:
    """Every account × KPI × period; ``cells[(account, kpi, label)] = (value, n, status)``, the rest no_data."""
    kpis = list(dict.fromkeys([*kpis, *(k for _, k, _ in cells)]))
    rows = []
    for a in accounts:
        for k in kpis:
            for p in periods:
                value, n, status = cells.get((a, k, p.label), (math.nan, 0, "no_data"))
                rows.append({"account_id": a, "kpi": k, "period": p.label, "value": value, "n": n,
                             "status": status, "note": "" if status == "ok" else status})
    return pd.DataFrame(rows)


# Values the KPI definitions give on the fixture (KPIS.md), by hand.
# October 2026 (end 2026-11-01; 90-day window from 2026-08-03):
#   A1 nps: 10, 9, 9, 7, 3 -> 3 promoters, 1 detractor of 5 -> 60 - 20 = 40 (n 5 = min_sample: ok)
#   A1 revenue (month): 4000 + 1000 = 5000; complaints: T02, T04, T05 = 3;
#   A1 interaction_frequency: 5 interactions from 08-15 to 10-25 -> 5 / 2.957 = 1.691 a month
#   A2 nps: 8, 6 -> 0 - 50 = -50 but n 2 < 5: low_sample; revenue 600; resolution_hours: T07 24 h, T08 72 h -> 48
#   A3 revenue 0 from no October order: real data (min_sample 0 for non-survey KPIs) -> ok;
#   A3 interaction_frequency: 3 / 2.957 = 1.015
# September 2026 (end 2026-10-01; 90 days from 2026-07-03):
#   A1 nps 10, 9, 9 -> 100, n 3: low_sample; revenue 2500; complaints T02 = 1; interactions 3 -> 1.015
#   A2 nps 8 -> 0, n 1: low_sample; revenue 0 (no order, n 0): ok; resolution_hours: T06 48 h, T07 24 h -> 36
#   A3 revenue 500; interactions 1 (09-12) -> 0.338
FIXTURE_CELLS = {
    ("A1", "nps", "2026-10"): (40.0, 5, "ok"),
    ("A1", "revenue", "2026-10"): (5000.0, 2, "ok"),
    ("A1", "complaints", "2026-10"): (3.0, 3, "ok"),
    ("A1", "interaction_frequency", "2026-10"): (5 / M90, 5, "ok"),
    ("A2", "nps", "2026-10"): (-50.0, 2, "low_sample"),
    ("A2", "revenue", "2026-10"): (600.0, 1, "ok"),
    ("A2", "resolution_hours", "2026-10"): (48.0, 2, "ok"),
    ("A3", "revenue", "2026-10"): (0.0, 0, "ok"),
    ("A3", "interaction_frequency", "2026-10"): (3 / M90, 3, "ok"),
    ("A1", "nps", "2026-09"): (100.0, 3, "low_sample"),
    ("A1", "revenue", "2026-09"): (2500.0, 1, "ok"),
    ("A1", "complaints", "2026-09"): (1.0, 1, "ok"),
    ("A1", "interaction_frequency", "2026-09"): (3 / M90, 3, "ok"),
    ("A2", "nps", "2026-09"): (0.0, 1, "low_sample"),
    ("A2", "revenue", "2026-09"): (0.0, 0, "ok"),
    ("A2", "resolution_hours", "2026-09"): (36.0, 2, "ok"),
    ("A3", "revenue", "2026-09"): (500.0, 1, "ok"),
    ("A3", "interaction_frequency", "2026-09"): (1 / M90, 1, "ok"),
}


def fixture_frame(config):
    return long_frame(FIXTURE_CELLS, kpis=kpi_ids_for(config.tiers))


def set_cell(frame, account, kpi, label, value, status="ok"):
    mask = (frame.account_id == account) & (frame.kpi == kpi) & (frame.period == label)
    frame.loc[mask, ["value", "status"]] = [value, status]
    return frame


def with_tiers(config, tiers: dict):
    return replace(config, tiers=Tiers.model_validate(tiers))


def by_id(scorecard):
    return {a["account_id"]: a for a in scorecard["accounts"]}


# --------------------------------------------------------------------------- pure rules

def test_kpi_status_honours_direction_and_falls_back_to_target():
    up, down = TierKpi(green=10, amber=5), TierKpi(green=2, amber=4)
    assert [kpi_status(v, "ok", up, "up", None) for v in (10, 7, 4.9)] == ["green", "amber", "red"]
    assert [kpi_status(v, "ok", down, "down", None) for v in (2, 3, 4.1)] == ["green", "amber", "red"]
    assert kpi_status(None, "ok", up, "up", None) == "no_data"
    assert kpi_status(11, "no_data", up, "up", None) == "no_data"
    assert kpi_status(11, "low_sample", up, "up", None) == "low_sample"
    assert kpi_status(5, "ok", TierKpi(target=5), "up", 5) == "green"
    assert kpi_status(6, "ok", TierKpi(), "down", 5) == "red"
    assert kpi_status(6, "ok", TierKpi(), "up", None) == "ok"
    assert kpi_status(6, "ok", TierKpi(green=5), "up", None) == "green"
    assert kpi_status(4, "ok", TierKpi(green=5), "up", None) == "red"


def test_kpi_score_bands_and_linear():
    up, down = TierKpi(green=10, amber=5), TierKpi(green=2, amber=4)
    assert [kpi_score(v, s, up, "bands") for v, s in ((12, "green"), (7, "amber"), (1, "red"))] == [100, 50, 0]
    assert kpi_score(7, "ok", up, "bands") is None and kpi_score(None, "no_data", up, "linear") is None
    # linear: 0 at amber, 100 at green, clamped
    assert kpi_score(7.5, "amber", up, "linear") == 50
    assert kpi_score(12, "green", up, "linear") == 100
    assert kpi_score(4, "red", up, "linear") == 0
    assert kpi_score(2.5, "amber", down, "linear") == 75     # (2.5 - 4) / (2 - 4)
    assert kpi_score(1, "green", down, "linear") == 100
    assert kpi_score(6, "green", TierKpi(target=5), "linear") == 100  # no thresholds: bands


def test_health_renormalises_caps_and_needs_half_the_weight():
    bands = HealthBands()
    # (weight, scorable, status, score, critical)
    assert health([(2, True, "green", 100, False), (1, True, "no_data", None, False), (1, True, "red", 0, False)],
                  bands) == (pytest.approx(200 / 3), "amber", [])
    # 1 of 3 weight scored: insufficient
    assert health([(1, True, "green", 100, False), (2, True, "low_sample", None, False)], bands) == \
        (None, "insufficient_data", [])
    # informational KPIs (not scorable) are outside the whole
    assert health([(1, True, "green", 100, False), (5, False, "ok", None, False)], bands)[:2] == (100, "green")
    # worst-of: 3 × 100 + 1 × 0 over 4 = 75 -> green, capped at amber by the critical red KPI
    assert health([(3, True, "green", 100, False), (1, True, "red", 0, True)], bands) == (75, "amber", [1])
    assert health([(3, True, "green", 100, False), (1, True, "red", 0, False)], bands) == (75, "green", [])
    assert health([(0, True, "green", 100, False)], bands) == (None, "insufficient_data", [])


def test_percentile_ranks():
    assert percentile_ranks({"a": 1, "b": 3, "c": 2}, "up") == pytest.approx({"a": 100 / 3, "b": 100, "c": 200 / 3})
    assert percentile_ranks({"a": 1, "b": 3}, "down") == {"a": 100, "b": 50}
    assert percentile_ranks({"a": 1, "b": 1}, "up") == {"a": 75, "b": 75}
    assert percentile_ranks({}, "up") == {}


# --------------------------------------------------------------------------- the fixture, by hand

def test_fixture_scorecard(con, config):
    card = build_scorecard(con, config, OCT, kpi_frame=fixture_frame(config))
    assert (card["period"], card["period_start"], card["period_end"], card["currency"]) == \
        ("2026-10", "2026-10-01", "2026-11-01", "EUR")
    accounts = by_id(card)
    assert list(accounts) == ["A1", "A2", "A3"]

    a1 = accounts["A1"]
    assert (a1["name"], a1["tier"], a1["owner_email"], a1["since"]) == ("Acme Corp", "strategic", "ann@example.com",
                                                                        "2024-01-01")
    assert list(a1["kpis"]) == ["nps", "revenue", "complaints", "interaction_frequency"]  # tier order
    status = {k: (v["status"], v["score"]) for k, v in a1["kpis"].items()}
    # nps 40 >= 30 green; revenue 5000 >= 4000 green; complaints 3 > amber 2 red; interactions 1.69 in [1, 2) amber
    assert status == {"nps": ("green", 100), "revenue": ("green", 100), "complaints": ("red", 0),
                      "interaction_frequency": ("amber", 50)}
    # health = (2×100 + 1×100 + 1×0 + 1×50) / 5 = 70 -> amber (50 <= 70 < 75)
    assert a1["health_score"] == pytest.approx(70)
    assert a1["health_status"] == "amber"
    # previous: nps low_sample (out); revenue 2500 amber 50; complaints 1 green 100; interactions 1.01 amber 50;
    # scored weight 3 of 5 >= half -> (50 + 100 + 50) / 3 = 66.67; 70 - 66.67 = 3.3 > 2 -> up
    assert a1["previous_health_score"] == pytest.approx(200 / 3)
    assert a1["trend"] == "up"
    revenue = a1["kpis"]["revenue"]
    assert (revenue["value"], revenue["previous"], revenue["change"]) == (5000, 2500, 2500)
    assert revenue["target"] == 6000  # the override for A1, not the tier's 5000
    assert a1["kpis"]["nps"]["target"] == 40
    assert revenue["trend"] == [None] * 10 + [2500, 5000]
    assert revenue["label"] == {"en": "Revenue", "zh_CN": "收入"}
    assert (revenue["unit"], revenue["direction"], revenue["n"]) == ("currency", "up", 2)
    assert [w["code"] for w in a1["warnings"]] == ["complaints_up", "nps_detractor"]

    a2 = accounts["A2"]
    # nps low_sample (shown, not scored); revenue 600 in [500, 1000) amber; resolution 48 h in (24, 72] amber
    # health = (50 + 50) / 2 = 50 over weight 2 of 3 -> amber (50 is not below 50)
    assert a2["kpis"]["nps"]["status"] == "low_sample" and a2["kpis"]["nps"]["value"] == -50
    assert a2["kpis"]["nps"]["score"] is None
    assert a2["health_score"] == pytest.approx(50) and a2["health_status"] == "amber"
    # previous: nps low_sample, revenue 0 < 500 red 0, resolution 36 amber 50: weight 2 of 3 -> 25; 50 - 25 -> up
    assert (a2["previous_health_score"], a2["trend"]) == (25, "up")
    assert a2["kpis"]["revenue"]["target"] is None

    a3 = accounts["A3"]
    # revenue 0 < 300 red 0; interactions 1.015 >= 1 green 100: (0 + 100) / 2 = 50 -> amber;
    # previous: revenue 500 in [300, 1000) amber 50 + interactions 0.34 < 0.5 red 0 -> 25; up
    assert (a3["health_score"], a3["health_status"], a3["previous_health_score"], a3["trend"]) == \
        (50, "amber", 25, "up")

    assert card["portfolio"]["health_distribution"] == \
        {"green": 0, "amber": 3, "red": 0, "insufficient_data": 0, "not_scored": 0}
    assert card["portfolio"]["account_count"] == 3
    assert card["portfolio"]["retention_rate"]["value"] == 1.0
    strategic = card["tiers"]["strategic"]
    assert strategic["account_count"] == 1 and strategic["health_distribution"]["amber"] == 1
    assert strategic["kpis"]["nps"]["median"] == 40 and strategic["kpis"]["nps"]["critical"] is True
    assert list(card["tiers"]) == ["strategic", "key", "growth"]
    json.dumps(card, allow_nan=False)


def test_end_to_end_matches_the_hand_computed_frame(con, config):
    """compute_kpis on the fixture gives the values written above, so the scorecards agree."""
    computed = build_scorecard(con, config, OCT)
    by_hand = build_scorecard(con, config, OCT, kpi_frame=fixture_frame(config))
    fields = ("value", "previous", "status", "score", "target", "percentile")
    for got, want in zip(computed["accounts"], by_hand["accounts"]):
        assert got["account_id"] == want["account_id"]
        assert (got["health_score"], got["previous_health_score"]) == \
            pytest.approx((want["health_score"], want["previous_health_score"]))
        assert (got["health_status"], got["trend"], got["warnings"]) == (want["health_status"], want["trend"], want["warnings"])
        for kpi in want["kpis"]:
            assert {f: got["kpis"][kpi][f] for f in fields} == pytest.approx({f: want["kpis"][kpi][f] for f in fields})
    assert computed["portfolio"] == by_hand["portfolio"]  # includes the health distribution
    assert by_id(computed)["A1"]["health_score"] == pytest.approx(70)
    json.dumps(computed, allow_nan=False)


def test_linear_scoring(con, config):
    linear = replace(config, tiers=config.tiers.model_copy(update={"scoring": "linear"}))
    a1 = by_id(build_scorecard(con, linear, OCT, kpi_frame=fixture_frame(config)))["A1"]
    scores = {k: v["score"] for k, v in a1["kpis"].items()}
    # nps (40 - 0) / (30 - 0) > 1 -> 100; revenue (5000 - 2000) / 2000 > 1 -> 100;
    # complaints (3 - 2) / (1 - 2) < 0 -> 0; interactions (1.691 - 1) / (2 - 1) -> 69.1
    assert scores == pytest.approx({"nps": 100, "revenue": 100, "complaints": 0,
                                    "interaction_frequency": 100 * (5 / M90 - 1)})
    # health = (2×100 + 100 + 0 + 69.1) / 5 = 73.8
    assert a1["health_score"] == pytest.approx((300 + 100 * (5 / M90 - 1)) / 5)


def test_override_target_decides_status_without_thresholds(con, config):
    tiers = {"tiers": {"strategic": {"kpis": {"revenue": {"target": 4000}}}}, "overrides": {"A1": {"revenue": 6000}}}
    a1 = by_id(build_scorecard(con, with_tiers(config, tiers), OCT, kpi_frame=fixture_frame(config)))["A1"]
    # 5000 meets the tier target 4000 but not A1's own 6000 -> red
    assert (a1["kpis"]["revenue"]["target"], a1["kpis"]["revenue"]["status"]) == (6000, "red")
    assert a1["health_score"] == 0 and a1["health_status"] == "red"


def test_worst_of_rule(con, config):
    tiers = {"tiers": {"strategic": {"kpis": {
        "nps": {"weight": 1, "green": 30, "amber": 0, "critical": True},
        "revenue": {"weight": 3, "green": 4000, "amber": 2000}}}}}
    frame = set_cell(fixture_frame(config), "A1", "nps", "2026-10", -10.0)
    card = build_scorecard(con, with_tiers(config, tiers), OCT, kpi_frame=frame)
    a1 = by_id(card)["A1"]
    # nps -10 < 0 red (critical); revenue green: (1×0 + 3×100) / 4 = 75 -> green, capped at amber
    assert a1["health_score"] == 75
    assert (a1["health_status"], a1["health_capped_by"]) == ("amber", ["nps"])
    tiers["tiers"]["strategic"]["kpis"]["nps"]["critical"] = False
    a1 = by_id(build_scorecard(con, with_tiers(config, tiers), OCT, kpi_frame=frame))["A1"]
    assert (a1["health_status"], a1["health_capped_by"]) == ("green", [])


def test_insufficient_data(con, config):
    frame = fixture_frame(config)
    for label in ("2026-09", "2026-10"):
        set_cell(frame, "A2", "revenue", label, math.nan, "no_data")
    a2 = by_id(build_scorecard(con, config, OCT, kpi_frame=frame))["A2"]
    # only resolution_hours (weight 1 of 3) is scored: below half -> insufficient; previous too
    assert (a2["health_score"], a2["health_status"], a2["trend"]) == (None, "insufficient_data", None)
    assert a2["kpis"]["revenue"]["status"] == "no_data" and a2["kpis"]["revenue"]["value"] is None
    assert a2["kpis"]["revenue"]["percentile"] is None


def test_tier_rule_percentiles_and_unassigned(con, config):
    tiers = {"tier_rule": {"revenue_at_least": {"key": 1000, "all": 0}},
             "tiers": {"all": {"kpis": {"revenue": {"green": 1000, "amber": 300}, "complaints": {"green": 1, "amber": 2}}},
                       "key": {"kpis": {"revenue": {"green": 1000, "amber": 300}}}}}
    # trailing-12m revenue to 2026-11-01: A1 14000, A2 2700 -> key (first band from the top they reach); A3 500 -> all
    frame = long_frame({**FIXTURE_CELLS, ("A3", "complaints", "2026-10"): (1.0, 1, "ok"),
                        ("A2", "complaints", "2026-10"): (0.0, 0, "ok")}, kpis=["revenue", "complaints", "p_alive"])
    card = build_scorecard(con, with_tiers(config, tiers), OCT, kpi_frame=frame)
    assert {a: e["tier"] for a, e in by_id(card).items()} == {"A1": "key", "A2": "key", "A3": "all"}
    # revenue among key accounts: A1 5000 best -> 100, A2 600 -> 50
    assert by_id(card)["A1"]["kpis"]["revenue"]["percentile"] == 100
    assert by_id(card)["A2"]["kpis"]["revenue"]["percentile"] == 50
    assert by_id(card)["A3"]["kpis"]["revenue"]["percentile"] == 100   # alone in its tier

    tiers["tier_rule"]["revenue_at_least"] = {"all": 2000}
    tiers["tiers"]["all"]["kpis"]["revenue"] = {"green": 1000, "amber": 300}
    card = build_scorecard(con, with_tiers(config, tiers), OCT, kpi_frame=frame)
    accounts = by_id(card)
    assert {a: e["tier"] for a, e in accounts.items()} == {"A1": "all", "A2": "all", "A3": "unassigned"}
    # complaints (down) among A1 3, A2 0: A2 best -> 100, A1 -> 50
    assert accounts["A2"]["kpis"]["complaints"]["percentile"] == 100
    assert accounts["A1"]["kpis"]["complaints"]["percentile"] == 50
    assert (accounts["A3"]["health_status"], accounts["A3"]["kpis"], accounts["A3"]["health_score"]) == \
        ("not_scored", {}, None)
    assert card["tiers"]["unassigned"]["health_distribution"]["not_scored"] == 1
    assert card["portfolio"]["health_distribution"]["not_scored"] == 1
    frame_out = scorecard_frame(card)
    assert frame_out[frame_out.account_id == "A3"]["kpi"].isna().all()


def test_accounts_outside_the_period_are_not_listed(config):
    con = make_con()
    con.execute("update accounts set churned_on = '2026-08-15' where account_id = 'A2'")
    card = build_scorecard(con, config, OCT, kpi_frame=fixture_frame(config))
    assert [a["account_id"] for a in card["accounts"]] == ["A1", "A3"]   # A2 churned before October
    aug = parse_period("2026-08")
    card = build_scorecard(con, config, aug, kpi_frame=fixture_frame(config))
    assert [a["account_id"] for a in card["accounts"]] == ["A1", "A2"]   # A3 joined in September


def test_scorecard_frame_and_json(con, config):
    card = build_scorecard(con, config, OCT, kpi_frame=fixture_frame(config))
    frame = scorecard_frame(card)
    assert len(frame) == 4 + 3 + 2
    row = frame[(frame.account_id == "A1") & (frame.kpi == "complaints")].iloc[0]
    assert (row.health_status, row.trend, row.status, row.value) == ("amber", "up", "red", 3)
    assert row.warnings == "3 complaints in the last 90 days, up from 0; NPS detractor: score 3 on 2026-10-10"
    assert json.loads(json.dumps(card, allow_nan=False, ensure_ascii=False)) == card


def test_clean():
    raw = {"a": float("nan"), "b": [float("inf"), 1.5], "c": pd.Timestamp("2026-01-02"), "d": pd.NA,
           "e": (1, 2), 3: pd.Series([1.0]).iloc[0]}
    assert _clean(raw) == {"a": None, "b": [None, 1.5], "c": "2026-01-02T00:00:00", "d": None, "e": [1, 2], "3": 1.0}


# --------------------------------------------------------------------------- properties over synthetic frames

DEFS = {k: SimpleNamespace(direction=d, unit="number", label_en=k, label_zh=None, window="month")
        for k, d in (("k_up", "up"), ("k_down", "down"), ("k_target", "up"), ("k_info", "up"))}
SETTINGS = {"k_up": {"green": 10, "amber": 5}, "k_down": {"green": 2, "amber": 4, "critical": True},
            "k_target": {"target": 50}, "k_info": {}}
STATUSES = st.sampled_from(["ok"] * 8 + ["low_sample", "no_data"])
# mostly finite values, sometimes NaN or infinite (both must read as no data)
VALUES = st.tuples(st.integers(0, 9), st.floats(-100, 100)).map(
    lambda t: float("nan") if t[0] == 8 else float("inf") if t[0] == 9 else t[1])


@st.composite
def scenario(draw):
    weights = {k: draw(st.sampled_from([0, 0.5, 1, 2, 3])) for k in DEFS}
    tiers = Tiers.model_validate({
        "scoring": draw(st.sampled_from(["bands", "linear"])),
        "tiers": {"t": {"kpis": {k: {**SETTINGS[k], "weight": weights[k]} for k in DEFS}}}})
    cells = {}
    for account in ("X", "Y"):
        for kpi in DEFS:
            for label in ("2026-09", "2026-10"):
                cells[(account, kpi, label)] = (draw(VALUES), draw(st.integers(0, 9)), draw(STATUSES))
    return tiers, cells


def scores_of(tiers, cells):
    frame = long_frame(cells, accounts=("X", "Y"), periods=PERIODS[-2:])
    return score_accounts(frame, {"X": "t", "Y": "t"}, tiers, DEFS, PERIODS)


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_health_is_a_score_or_none(case):
    tiers, cells = case
    for entry in scores_of(tiers, cells).values():
        assert entry["health_score"] is None or 0 <= entry["health_score"] <= 100
        assert (entry["health_score"] is None) == (entry["health_status"] == "insufficient_data")
        for kpi in entry["kpis"].values():
            assert kpi["score"] is None or 0 <= kpi["score"] <= 100
            assert kpi["percentile"] is None or 0 < kpi["percentile"] <= 100


@settings(max_examples=150, deadline=None)
@given(scenario(), st.sampled_from(list(DEFS)), st.floats(0, 50))
def test_improving_a_kpi_never_lowers_health(case, kpi, delta):
    tiers, cells = case
    key = ("X", kpi, "2026-10")
    value, n, status = cells[key]
    before = scores_of(tiers, cells)["X"]["health_score"]
    step = delta if DEFS[kpi].direction == "up" else -delta
    after = scores_of(tiers, {**cells, key: (value + step, n, status)})["X"]["health_score"]
    if before is not None and after is not None:
        assert after >= before - 1e-9
    assert (before is None) == (after is None)


@settings(max_examples=150, deadline=None)
@given(scenario(), st.sampled_from(list(DEFS)))
def test_dropping_a_kpi_renormalises(case, kpi):
    tiers, cells = case
    before = scores_of(tiers, cells)["X"]
    after = scores_of(tiers, {**cells, ("X", kpi, "2026-10"): (math.nan, 0, "no_data")})["X"]
    weights = {k: s.weight for k, s in tiers.tiers["t"].kpis.items()}
    rest = {k: v["score"] for k, v in before["kpis"].items() if k != kpi and v["score"] is not None}
    whole = sum(w for k, w in weights.items() if k != "k_info")
    covered = sum(weights[k] for k in rest)
    if whole <= 0 or covered <= 0 or covered < whole / 2:
        assert after["health_score"] is None
    else:
        assert after["health_score"] == pytest.approx(sum(weights[k] * s for k, s in rest.items()) / covered)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(VALUES, STATUSES), min_size=9, max_size=9))
def test_no_nan_reaches_the_output(con, config, draws):
    cells = {key: (value, 3, status) for key, (value, status) in zip(FIXTURE_CELLS, draws)}
    card = build_scorecard(con, config, OCT, kpi_frame=long_frame(cells, kpis=kpi_ids_for(config.tiers)))
    json.dumps(card, allow_nan=False)
    assert not scorecard_frame(card).isin([math.inf, -math.inf]).any().any()


def test_health_trend_ends_with_the_current_and_previous_health():
    """The series the health chart draws: 12 periods, oldest first, the last two being previous and current."""
    from reporter.clock import SystemClock
    from reporter.pipeline import compute_scorecard, load

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "valid"
    scorecard = compute_scorecard(load(fixture, "2026-10", SystemClock()))
    for account in scorecard["accounts"]:
        trend = account["health_trend"]
        assert [t["period"] for t in trend][-2:] == ["2026-09", "2026-10"]
        assert len(trend) == 12
        assert trend[-1]["health_score"] == account["health_score"]
        assert trend[-2]["health_score"] == account["previous_health_score"]
