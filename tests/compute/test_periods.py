from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from reporter.compute.periods import (
    WINDOW_NAMES,
    Period,
    add_months,
    last_complete_period,
    parse_period,
    period_containing,
    prior_window,
    to_local_date,
    trend_periods,
    window_bounds,
    year_earlier,
)

SHANGHAI = "Asia/Shanghai"
LA = "America/Los_Angeles"


# --- parsing ---------------------------------------------------------------


def test_parse_month():
    p = parse_period("2026-10")
    assert (p.kind, p.start, p.end, str(p)) == ("month", date(2026, 10, 1), date(2026, 11, 1), "2026-10")


def test_parse_december_ends_next_year():
    assert parse_period("2026-12").end == date(2027, 1, 1)


def test_parse_calendar_quarter_and_year():
    q = parse_period("2026-Q3")
    assert (q.kind, q.start, q.end, q.label) == ("quarter", date(2026, 7, 1), date(2026, 10, 1), "2026-Q3")
    for text in ("2026", "FY2026", " fy2026 "):
        y = parse_period(text)
        assert (y.kind, y.start, y.end, y.label) == ("year", date(2026, 1, 1), date(2027, 1, 1), "2026")


def test_parse_fiscal_year_named_after_starting_year():
    y = parse_period("FY2026", fiscal_year_start=4)
    assert (y.start, y.end, y.label) == (date(2026, 4, 1), date(2027, 4, 1), "FY2026")
    assert parse_period("2026", fiscal_year_start=4) == y


def test_parse_fiscal_quarters():
    q1 = parse_period("2026-Q1", fiscal_year_start=4)
    assert (q1.start, q1.end, q1.label) == (date(2026, 4, 1), date(2026, 7, 1), "FY2026-Q1")
    q4 = parse_period("2026-Q4", fiscal_year_start=4)
    assert (q4.start, q4.end) == (date(2027, 1, 1), date(2027, 4, 1))
    # Labels round-trip through the parser.
    assert parse_period(q4.label, fiscal_year_start=4) == q4


def test_months_ignore_fiscal_start():
    assert parse_period("2026-10", fiscal_year_start=4) == parse_period("2026-10")


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-Q5", "2026-Q0", "26", "2026-1", "FY2026-10", "", "Oct 2026", "0000"])
def test_parse_rejects_bad_text_with_helpful_message(text):
    with pytest.raises(ValueError) as exc:
        parse_period(text)
    assert "expected a period like 2026-10, 2026-Q3 or 2026" in str(exc.value)
    assert f'got "{text}"' in str(exc.value)


def test_parse_error_message_example():
    with pytest.raises(ValueError, match=r'^expected a period like 2026-10, 2026-Q3 or 2026, got "2026-13"$'):
        parse_period("2026-13")


@pytest.mark.parametrize("bad", [0, 13])
def test_bad_fiscal_start(bad):
    with pytest.raises(ValueError, match="fiscal_year_start must be a month number 1..12"):
        parse_period("2026", fiscal_year_start=bad)


# --- navigation ------------------------------------------------------------


def test_previous_across_year_boundary():
    assert parse_period("2026-01").previous() == parse_period("2025-12")
    assert parse_period("2026-Q1").previous() == parse_period("2025-Q4")
    assert parse_period("2026").previous() == parse_period("2025")
    assert parse_period("2026-Q1", 4).previous().label == "FY2025-Q4"
    assert parse_period("2026-Q1", 4).previous().start == date(2026, 1, 1)


def test_shift_both_directions():
    p = parse_period("2026-11")
    assert p.shift(2) == parse_period("2027-01")
    assert p.shift(-23) == parse_period("2024-12")
    assert p.shift(0) == p
    assert parse_period("2026-Q3").shift(3) == parse_period("2027-Q2")
    assert parse_period("FY2026", 4).shift(-2) == parse_period("FY2024", 4)


def test_ordering_by_start():
    periods = [parse_period(t) for t in ("2026-03", "2025-12", "2026-01")]
    assert [str(p) for p in sorted(periods)] == ["2025-12", "2026-01", "2026-03"]
    assert parse_period("2025-12") < parse_period("2026-01")
    assert max(periods) == parse_period("2026-03")


def test_period_containing():
    assert period_containing(date(2026, 10, 31), "month") == parse_period("2026-10")
    assert period_containing(date(2026, 10, 31), "quarter") == parse_period("2026-Q4")
    assert period_containing(date(2026, 2, 10), "quarter", 4) == parse_period("2025-Q4", 4)
    assert period_containing(date(2026, 3, 31), "year", 4) == parse_period("FY2025", 4)
    assert period_containing(date(2026, 4, 1), "year", 4) == parse_period("FY2026", 4)
    with pytest.raises(ValueError, match="expected one of: month, quarter, year"):
        period_containing(date(2026, 1, 1), "week")


def test_trend_periods():
    trend = trend_periods(parse_period("2026-02"), 3)
    assert [str(p) for p in trend] == ["2025-12", "2026-01", "2026-02"]
    assert len(trend_periods(parse_period("2026-Q1"))) == 12
    with pytest.raises(ValueError, match="at least 1"):
        trend_periods(parse_period("2026-02"), 0)


# --- clock and time zones ---------------------------------------------------


def test_last_complete_month_shanghai_ahead_of_utc():
    now = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)  # 2026-11-01 00:30 in Shanghai
    assert last_complete_period(now, SHANGHAI) == parse_period("2026-10")
    just_before = datetime(2026, 10, 31, 23, 59, tzinfo=ZoneInfo(SHANGHAI))
    assert last_complete_period(just_before, SHANGHAI) == parse_period("2026-09")


def test_last_complete_month_los_angeles_behind_utc():
    now = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)  # UTC is in November; LA is 2026-10-31 20:00
    assert last_complete_period(now, LA) == parse_period("2026-09")
    assert last_complete_period(now, "UTC") == parse_period("2026-10")
    after_midnight_la = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)  # 00:30 PDT
    assert last_complete_period(after_midnight_la, LA) == parse_period("2026-10")


def test_last_complete_at_exact_boundary():
    midnight = datetime(2026, 11, 1, 0, 0, tzinfo=ZoneInfo(SHANGHAI))
    assert last_complete_period(midnight, SHANGHAI) == parse_period("2026-10")


def test_last_complete_quarter_and_fiscal_year():
    now = datetime(2026, 4, 1, 1, 0, tzinfo=ZoneInfo(SHANGHAI))
    assert last_complete_period(now, SHANGHAI, "quarter") == parse_period("2026-Q1")
    assert last_complete_period(now, SHANGHAI, "year", fiscal_year_start=4) == parse_period("FY2025", 4)
    assert last_complete_period(now, LA, "year", fiscal_year_start=4) == parse_period("FY2024", 4)


def test_last_complete_rejects_naive_and_unknown_zone():
    with pytest.raises(ValueError, match="timezone-aware"):
        last_complete_period(datetime(2026, 11, 1), SHANGHAI)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        last_complete_period(datetime(2026, 11, 1, tzinfo=UTC), "Mars/Base")


def test_last_complete_ignores_wall_clock():
    now = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)
    with time_machine.travel(datetime(1999, 1, 1, tzinfo=UTC), tick=False):
        assert last_complete_period(now, SHANGHAI) == parse_period("2026-10")


def test_to_local_date():
    ts = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)
    assert to_local_date(ts, SHANGHAI) == date(2026, 11, 1)
    assert to_local_date(ts, LA) == date(2026, 10, 31)
    assert to_local_date(datetime(2026, 10, 31, 23, 59), SHANGHAI) == date(2026, 10, 31)  # naive = local


# --- month arithmetic and windows -------------------------------------------


def test_add_months_clamps():
    assert add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)
    assert add_months(date(2023, 3, 31), -1) == date(2023, 2, 28)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2024, 3, 1), -12) == date(2023, 3, 1)
    assert add_months(date(2026, 1, 15), -13) == date(2024, 12, 15)


def test_windows_for_leap_february():
    end = parse_period("2024-02").end
    assert end == date(2024, 3, 1)
    m = window_bounds("month", end)
    assert (m.start, m.end, m.days, m.months) == (date(2024, 2, 1), end, 29, 1.0)
    t12 = window_bounds("trailing_12m", end)
    assert (t12.start, t12.end, t12.days, t12.months) == (date(2023, 3, 1), end, 366, 12.0)
    assert window_bounds("quarter", end).start == date(2023, 12, 1)
    assert window_bounds("ytd", end).start == date(2024, 1, 1)


def test_ytd_fiscal():
    w = window_bounds("ytd", parse_period("2026-02").end, fiscal_year_start=4)
    assert (w.start, w.end, w.months) == (date(2025, 4, 1), date(2026, 3, 1), 11.0)
    # A period ending on the fiscal new year reports the whole year just finished.
    full = window_bounds("ytd", date(2026, 4, 1), fiscal_year_start=4)
    assert (full.start, full.months) == (date(2025, 4, 1), 12.0)
    first = window_bounds("ytd", date(2026, 5, 1), fiscal_year_start=4)
    assert (first.start, first.months) == (date(2026, 4, 1), 1.0)


def test_trailing_90d_length():
    w = window_bounds("trailing_90d", date(2024, 3, 1))
    assert w.start == date(2023, 12, 2)
    assert w.days == 90
    assert w.months == pytest.approx(90 / 30.4375)


def test_window_accepts_any_date_and_clamps():
    w = window_bounds("month", date(2024, 3, 31))
    assert w.start == date(2024, 2, 29)
    assert window_bounds("trailing_12m", date(2024, 2, 29)).start == date(2023, 2, 28)


def test_lifetime_window():
    w = window_bounds("lifetime", date(2026, 3, 1))
    assert (w.start, w.end, w.months, w.days) == (None, date(2026, 3, 1), None, None)
    with pytest.raises(ValueError, match="lifetime window has no prior"):
        prior_window(w)
    assert year_earlier(w).end == date(2025, 3, 1)


def test_unknown_window_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        window_bounds("weekly", date(2026, 3, 1))
    assert "'weekly'" in str(exc.value)
    for name in WINDOW_NAMES:
        assert name in str(exc.value)


def test_prior_window():
    end = date(2026, 3, 1)
    assert prior_window(window_bounds("month", end)).start == date(2026, 1, 1)
    q = prior_window(window_bounds("quarter", end))
    assert (q.start, q.end) == (date(2025, 9, 1), date(2025, 12, 1))
    t = prior_window(window_bounds("trailing_12m", end))
    assert (t.start, t.end) == (date(2024, 3, 1), date(2025, 3, 1))
    d = prior_window(window_bounds("trailing_90d", end))
    assert (d.end - d.start, d.end) == (timedelta(days=90), end - timedelta(days=90))
    y = prior_window(window_bounds("ytd", end, fiscal_year_start=4))
    assert (y.start, y.end, y.months) == (date(2024, 4, 1), date(2025, 3, 1), 11.0)


def test_year_earlier():
    m = year_earlier(window_bounds("month", date(2024, 3, 1)))
    assert (m.start, m.end, m.days) == (date(2023, 2, 1), date(2023, 3, 1), 28)
    d = year_earlier(window_bounds("trailing_90d", date(2024, 3, 31)))
    assert (d.end, d.days) == (date(2023, 3, 31), 90)
    y = year_earlier(window_bounds("ytd", date(2026, 3, 1), fiscal_year_start=4))
    assert (y.start, y.end) == (date(2024, 4, 1), date(2025, 3, 1))


# --- properties --------------------------------------------------------------

month_periods = st.builds(
    lambda y, m: parse_period(f"{y:04d}-{m:02d}"),
    st.integers(1901, 2199),
    st.integers(1, 12),
)
fiscal_starts = st.integers(1, 12)
bounded_names = st.sampled_from([n for n in WINDOW_NAMES if n != "lifetime"])


@given(month_periods, bounded_names, fiscal_starts)
def test_window_properties(period, name, fiscal_start):
    w = window_bounds(name, period.end, fiscal_start)
    assert w.start < w.end == period.end
    assert w.days == (w.end - w.start).days and w.months > 0
    prior = prior_window(w)
    if name == "ytd":  # the same span a year earlier, not the adjacent span
        assert (prior.start, prior.end) == (add_months(w.start, -12), add_months(w.end, -12))
    else:
        assert prior.end == w.start
        assert prior.months == w.months
    earlier = year_earlier(w)
    assert earlier.end == add_months(w.end, -12)


@given(month_periods, fiscal_starts)
def test_windows_nest(period, fiscal_start):
    start = {n: window_bounds(n, period.end, fiscal_start).start for n in WINDOW_NAMES if n != "lifetime"}
    assert start["month"] == period.start
    assert start["month"] >= start["quarter"] >= start["trailing_12m"]
    assert start["month"] >= start["ytd"] >= start["trailing_12m"]


@given(st.dates(date(1901, 1, 1), date(2199, 12, 31)), bounded_names, fiscal_starts)
def test_windows_at_any_date_are_contiguous(end, name, fiscal_start):
    w = window_bounds(name, end, fiscal_start)
    assert w.start < w.end
    if name != "ytd":
        assert prior_window(w).end == w.start


@given(st.dates(date(1901, 1, 1), date(2199, 12, 31)), st.sampled_from(["month", "quarter", "year"]), fiscal_starts, st.integers(-30, 30))
def test_period_round_trips(day, kind, fiscal_start, n):
    p = period_containing(day, kind, fiscal_start)
    assert p.start <= day < p.end
    assert parse_period(p.label, fiscal_start) == p
    assert p.shift(n).shift(-n) == p
    assert p.shift(1).start == p.end
    assert isinstance(p, Period)
