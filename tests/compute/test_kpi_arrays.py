"""The scorecard's own path into the KPI library (compute_kpi_arrays, KpiCells) gives, cell for cell,
what compute_kpis gives: the same value, n, status and last-period note, for the accounts of each
KPI's scope only."""
from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporter.compute.cells import LOW_SAMPLE, NO_DATA, OK, KpiCells
from reporter.compute.kpi_sql import Running, Tables, _radix_order
from reporter.compute.kpis import (STATUS_CODES, OrderSpans, compute_kpi_arrays, compute_kpis, resolve_kpis,
                                   scope_closure)
from reporter.compute.periods import trend_periods
from reporter.compute.portfolio import revenue_by_account, revenue_from_totals, revenue_spans
from reporter.compute.warnings import order_windows
from reporter.config import load_project
from reporter.compute.periods import parse_period
from reporter.config.catalog import BUILTIN_KPIS
from reporter.config.entities import ENTITIES

FIXTURE = Path(__file__).parents[1] / "fixtures" / "valid"
TYPES = {"string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "number": "DOUBLE", "integer": "BIGINT",
         "boolean": "BOOLEAN"}
PERIOD = parse_period("2026-10")


def connect(data_dir: Path = FIXTURE / "data") -> duckdb.DuckDBPyConnection:
    """Every canonical entity as a typed table, filled from data_dir/<entity>.csv where present (as test_kpis)."""
    con = duckdb.connect()
    for entity in ENTITIES.values():
        columns = ", ".join(f'"{f.name}" {TYPES[f.type]}' for f in entity.fields)
        con.execute(f"CREATE TABLE {entity.name} ({columns})")
        path = data_dir / f"{entity.name}.csv"
        if path.exists():
            source = f"read_csv('{path}', all_varchar = true)"
            header = con.sql(f"SELECT * FROM {source} LIMIT 0").columns
            select = ", ".join(f'CAST("{c}" AS {TYPES[entity.field(c).type]}) AS "{c}"' for c in header)
            con.execute(f"INSERT INTO {entity.name} BY NAME SELECT {select} FROM {source}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


PERIODS = trend_periods(PERIOD, 4)
LABELS = [p.label for p in PERIODS]
ALL = ("A1", "A2", "A3")


@pytest.fixture(scope="module")
def kpi_defs():
    return resolve_kpis(load_project(FIXTURE).kpis, [*BUILTIN_KPIS, "cloud_revenue", "revenue_per_interaction"])


@pytest.fixture(scope="module")
def frame(kpi_defs):
    return compute_kpis(connect(), kpi_defs, PERIODS)


def scopes_for(kpi_defs):
    """A mix: every account, one account, two, and a formula whose inputs have other scopes."""
    mix = [set(ALL), {"A1"}, {"A2", "A3"}, {"A3"}, {"A1", "A2"}]
    scopes = {k: mix[i % len(mix)] for i, k in enumerate(kpi_defs) if k not in
              ("revenue_per_interaction", "revenue", "interaction_frequency")}
    scopes.update({"revenue_per_interaction": {"A2"}, "revenue": {"A1"}})  # interaction_frequency: none of its own
    return scopes


def test_scope_closure_joins_a_formula_and_its_inputs(kpi_defs):
    closure = scope_closure(kpi_defs, scopes_for(kpi_defs))
    assert closure["revenue_per_interaction"] == closure["revenue"] == closure["interaction_frequency"] \
        == {"A1", "A2"}
    assert closure["nps"] == set(scopes_for(kpi_defs)["nps"])
    assert "csat" not in scope_closure(kpi_defs, {"nps": {"A1"}})  # no scope, not computed


def test_arrays_match_compute_kpis_cell_for_cell(kpi_defs, frame):
    scopes = scopes_for(kpi_defs)
    arrays = compute_kpi_arrays(connect(), kpi_defs, PERIODS, scopes)
    closure = scope_closure(kpi_defs, scopes)
    assert set(arrays) == set(closure)
    rows = frame.set_index(["kpi", "account_id", "period"])
    compared = 0
    for kpi_id, got in arrays.items():
        assert got.account_ids == sorted(closure[kpi_id])
        for i, account in enumerate(got.account_ids):
            for p, label in enumerate(LABELS):
                want = rows.loc[(kpi_id, account, label)]
                at = i * len(LABELS) + p
                value = got.value[at]
                assert (math.isnan(value) and math.isnan(want.value)) or value == want.value, (kpi_id, account, label)
                assert (got.n[at], STATUS_CODES[got.status[at]]) == (want.n, want.status), (kpi_id, account, label)
                compared += 1
            assert got.note[i] == rows.loc[(kpi_id, account, LABELS[-1])].note, (kpi_id, account)
    assert compared == sum(len(a) for a in closure.values()) * len(LABELS)


def test_cells_from_arrays_match_cells_from_the_frame(kpi_defs, frame):
    scopes = {k: set(ALL) for k in kpi_defs}
    arrays = compute_kpi_arrays(connect(), kpi_defs, PERIODS, scopes)
    ids = list(kpi_defs)
    from_arrays = KpiCells.from_arrays(arrays, ids, list(ALL), LABELS)
    from_frame = KpiCells.from_frame(frame, ids, list(ALL), LABELS)
    assert np.array_equal(from_arrays.value, from_frame.value, equal_nan=True)
    assert np.array_equal(from_arrays.n, from_frame.n)
    assert np.array_equal(from_arrays.status, from_frame.status)
    assert from_arrays.note.tolist() == from_frame.note.tolist()
    assert set(np.unique(from_frame.status)) == {OK, LOW_SAMPLE, NO_DATA}


def test_cells_read_frames_like_single_rows():
    """Keys as strings, the last of a duplicated key wins, non-finite values are no data."""
    frame = pd.DataFrame({
        "account_id": ["A1", "A1", "A2", "A2", "A3"], "kpi": ["k"] * 5, "period": ["2026-10"] * 5,
        "value": [1.0, 2.0, math.inf, 3.0, None], "n": [1, 2, 3, 4.9, None],
        "status": ["ok", "low_sample", "ok", None, "ok"], "note": ["a", None, "c", float("nan"), "e"],
    })
    cells = KpiCells.from_frame(frame, ["k", "missing"], ["A1", "A2", "A3", "A4"], ["2026-09", "2026-10"])
    assert cells.value[0, :, 1].tolist()[:2] == [2.0, 3.0] and np.isnan(cells.value[0, 2:, 1]).all()
    assert cells.n[0, :, 1].tolist() == [2, 4, 0, 0]
    assert cells.status[0, :, 1].tolist() == [LOW_SAMPLE, OK, NO_DATA, NO_DATA]
    assert cells.note[0].tolist() == ["", "", "e", "not computed"]
    assert (cells.status[1] == NO_DATA).all() and (cells.note[1] == "not computed").all()
    assert cells.last_values("k") == {"A1": 2.0, "A2": 3.0}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 60)), max_size=40, unique=True),
       st.sampled_from(["month", "trailing_90d", "lifetime"]), st.sampled_from(["", "prior", "ye"]))
def test_window_ends_find_what_asof_join_finds(rows, window, shift):
    """Tables.window_ends (numpy over Running) against DuckDB's ASOF JOIN over the same sorted rows."""
    con = duckdb.connect()
    start = date(2026, 6, 1)
    con.execute("CREATE TABLE r (g BIGINT, day DATE)")
    if rows:
        con.executemany("INSERT INTO r VALUES (?, ?)", [(g, start + timedelta(days=d)) for g, d in rows])
    t = Tables(con, trend_periods(parse_period("2026-09"), 3), 1, set())
    try:
        sorted_rows = "SELECT *, (row_number() OVER (ORDER BY g, day) - 1) AS pos FROM r"
        table = con.sql("SELECT g, (day - DATE '1970-01-01')::BIGINT AS k FROM r ORDER BY g, day").to_arrow_table()
        running = Running(table, table["g"].to_numpy(), ())
        g, p, end, begin = t.window_ends(running, np.arange(6, dtype=np.int64), window, shift)
        in_group = (begin >= 0) & (running.group[np.maximum(begin, 0)] == g)
        got = sorted(zip(g.tolist(), p.tolist(), end.tolist(), np.where(in_group, begin, -1).tolist()))
        lo, hi = (f"w_{shift}_lo", f"w_{shift}_hi") if shift else ("w_lo", "w_hi")
        want = con.sql(
            f"SELECT g.g, g.pidx, e.pos, coalesce(s.pos, -1) FROM (SELECT a.g, w.pidx, w.{lo} AS lo, w.{hi} AS hi "
            f"FROM range(6) a(g) CROSS JOIN {t.windows(window)} w) g "
            f"ASOF JOIN ({sorted_rows}) e ON g.g = e.g AND g.hi > e.day "
            f"ASOF LEFT JOIN ({sorted_rows}) s ON g.g = s.g AND g.lo > s.day ORDER BY ALL").fetchall()
        assert got == [tuple(row) for row in want]
    finally:
        t.drop_all()


def test_order_spans_give_revenue_by_account_without_another_scan(kpi_defs):
    # The scorecard's portfolio revenue and warnings' order lines, from the KPIs' order buckets: the
    # numbers of revenue_by_account's own scan (90 days back is no month start: the buckets split there).
    count_from = order_windows(PERIOD)
    assert count_from[0] == date(2026, 8, 3)
    con = connect()
    con.execute("INSERT INTO orders (order_id, account_id, date, amount) VALUES "
                "('X1', 'A3', DATE '2026-08-02', 70.25), ('X2', 'A3', DATE '2026-08-03', 30.5)")
    spans = OrderSpans(revenue_spans(PERIOD, count_from))
    revenue = {"revenue": kpi_defs["revenue"]}  # its window has no bound 90 days back
    assert revenue["revenue"].window != "trailing_90d"
    compute_kpi_arrays(con, revenue, [PERIOD], {"revenue": set(ALL)}, order_spans=spans)
    now, prior, lines = revenue_from_totals(spans.totals.result())
    assert (now, prior, lines) == revenue_by_account(con, PERIOD, count_from)
    assert (now["A3"], lines["A3"]) == (600.75, (2, 3))  # 500 + 70.25 + 30.5; X1 is before the 90 days


def test_order_spans_without_order_kpis_are_left_to_the_caller(kpi_defs):
    spans = OrderSpans(revenue_spans(PERIOD))
    compute_kpi_arrays(connect(), kpi_defs, [PERIOD], {"nps": set(ALL)}, order_spans=spans)
    assert spans.totals.result() is None


def test_order_span_totals_need_bucket_bounds(kpi_defs):
    t = Tables(connect(), [PERIOD], 1, {"month"}, order_splits=[date(2026, 8, 2)])
    t.order_stats("month")  # the buckets: month starts and 2026-08-02
    try:
        ids, amounts, lines = t.order_span_totals([(date(2026, 8, 2), date(2026, 11, 1))])
        assert lines.sum() > 0
        with pytest.raises(ValueError, match="2026-08-03"):
            t.order_span_totals([(date(2026, 8, 3), date(2026, 11, 1))])
    finally:
        t.drop_all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 200_000), st.integers(-40_000, 25_000)), max_size=300),
       st.sampled_from([0, 1 << 16]))
def test_running_sorts_by_group_then_key_keeping_ties_in_table_order(rows, spread):
    group = np.array([g for g, _ in rows], np.int64)
    key = np.array([k for _, k in rows], np.int64)
    if len(key):
        key[0] += spread  # spread 2^16: keys too far apart for the 16-bit digits, the composite is sorted
    order = _radix_order(group, key)
    if len(key) and key.max() - key.min() < 1 << 16:
        assert np.array_equal(order, np.lexsort((np.arange(len(key)), key, group)))
    else:
        assert order is None
    running = Running(pa.table({"k": key}), group, ())
    assert np.array_equal(running.group * 2**32 + running.key, np.sort(group * 2**32 + key))


def test_order_spans_are_answered_when_only_the_clv_models_read_the_orders(kpi_defs):
    spans = OrderSpans(revenue_spans(PERIOD))
    compute_kpi_arrays(connect(), {"p_alive": kpi_defs["p_alive"]}, [PERIOD], {"p_alive": set(ALL)},
                       order_spans=spans)
    now, prior, _ = revenue_from_totals(spans.totals.result())
    assert (now, prior) == revenue_by_account(connect(), PERIOD)[:2]
