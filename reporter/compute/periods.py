"""Reporting periods and the comparison windows measured back from a period's end.

All intervals are half-open ``[start, end)`` on local calendar dates of the
project's time zone, so adjacent periods share a boundary without overlapping.

Fiscal years are named after the calendar year in which they START: with
``fiscal_year_start=4``, FY2026 runs 2026-04-01..2027-04-01 and its Q1 is
2026-04-01..2026-07-01. With the default ``fiscal_year_start=1`` fiscal and
calendar years coincide.

Nothing here reads the wall clock: callers pass ``now`` in, which keeps scheduled
runs reproducible and tests free of clock patching.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KINDS = ("month", "quarter", "year")
WINDOW_NAMES = ("month", "quarter", "trailing_90d", "trailing_12m", "ytd", "lifetime")

_KIND_MONTHS = {"month": 1, "quarter": 3, "year": 12}
# Fixed-length windows; ytd is computed from its dates and lifetime has no length.
# 30.4375 = 365.25 / 12, the mean Gregorian month, so 90-day rates compare with monthly ones.
_WINDOW_MONTHS = {"month": 1.0, "quarter": 3.0, "trailing_12m": 12.0, "trailing_90d": 90 / 30.4375}

_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")
_QUARTER_RE = re.compile(r"(?:FY)?(\d{4})-Q(\d)")
_YEAR_RE = re.compile(r"(?:FY)?(\d{4})")


def add_months(d: date, n: int) -> date:
    """Move ``d`` by ``n`` calendar months, clamping the day to the target month's length
    (2024-03-31 minus one month is 2024-02-29)."""
    year, month0 = divmod(d.year * 12 + d.month - 1 + n, 12)
    day = min(d.day, calendar.monthrange(year, month0 + 1)[1])
    return d.replace(year=year, month=month0 + 1, day=day)


def _check_fiscal_start(fiscal_year_start: int) -> None:
    if not isinstance(fiscal_year_start, int) or not 1 <= fiscal_year_start <= 12:
        raise ValueError(f"fiscal_year_start must be a month number 1..12, got {fiscal_year_start!r}")


def _fiscal_year_of(day: date, fiscal_year_start: int) -> int:
    return day.year if day.month >= fiscal_year_start else day.year - 1


@functools.total_ordering
@dataclass(frozen=True)
class Period:
    """A reporting month, quarter or (fiscal) year: ``[start, end)``, shown as ``label``."""

    kind: str
    start: date
    end: date
    label: str
    # Only quarters and years depend on it; kept so shift() can label its results.
    # Not compared: the label already shows the difference where it matters.
    fiscal_year_start: int = field(default=1, compare=False)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Period):
            return NotImplemented
        return (self.start, self.end) < (other.start, other.end)

    def __str__(self) -> str:
        return self.label

    def shift(self, n: int) -> Period:
        """The period ``n`` steps later (negative ``n``: earlier), of the same kind."""
        start = add_months(self.start, n * _KIND_MONTHS[self.kind])
        return _make_period(self.kind, start, self.fiscal_year_start)

    def previous(self) -> Period:
        return self.shift(-1)


def _make_period(kind: str, start: date, fiscal_year_start: int) -> Period:
    """Build the period of ``kind`` starting on ``start`` (which must be a boundary)."""
    end = add_months(start, _KIND_MONTHS[kind])
    prefix = "FY" if fiscal_year_start != 1 else ""
    if kind == "month":
        label = f"{start.year:04d}-{start.month:02d}"
    elif kind == "quarter":
        quarter = (start.month - fiscal_year_start) % 12 // 3 + 1
        label = f"{prefix}{_fiscal_year_of(start, fiscal_year_start):04d}-Q{quarter}"
    else:
        label = f"{prefix}{start.year:04d}"
    return Period(kind, start, end, label, fiscal_year_start)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown period kind {kind!r}; expected one of: {', '.join(KINDS)}")


def parse_period(text: str, fiscal_year_start: int = 1) -> Period:
    """Parse "2026-10" (month), "2026-Q3" (quarter) or "2026"/"FY2026" (year).

    Quarters and years are fiscal when ``fiscal_year_start`` is not 1; a fiscal
    year is named after the calendar year in which it starts (see module docstring).
    """
    _check_fiscal_start(fiscal_year_start)
    cleaned = text.strip().upper() if isinstance(text, str) else ""
    if m := _MONTH_RE.fullmatch(cleaned):
        year, month = int(m[1]), int(m[2])
        if year >= 1 and 1 <= month <= 12:
            return _make_period("month", date(year, month, 1), fiscal_year_start)
    elif m := _QUARTER_RE.fullmatch(cleaned):
        year, quarter = int(m[1]), int(m[2])
        if year >= 1 and 1 <= quarter <= 4:
            fy_start = date(year, fiscal_year_start, 1)
            return _make_period("quarter", add_months(fy_start, 3 * (quarter - 1)), fiscal_year_start)
    elif m := _YEAR_RE.fullmatch(cleaned):
        if int(m[1]) >= 1:
            return _make_period("year", date(int(m[1]), fiscal_year_start, 1), fiscal_year_start)
    raise ValueError(f'expected a period like 2026-10, 2026-Q3 or 2026, got "{text}"')


def period_containing(day: date, kind: str, fiscal_year_start: int = 1) -> Period:
    """The month, (fiscal) quarter or (fiscal) year that contains ``day``."""
    _check_kind(kind)
    _check_fiscal_start(fiscal_year_start)
    if kind == "month":
        start = date(day.year, day.month, 1)
    else:
        fy_start = date(_fiscal_year_of(day, fiscal_year_start), fiscal_year_start, 1)
        months_in = (day.month - fiscal_year_start) % 12
        start = add_months(fy_start, months_in - months_in % 3) if kind == "quarter" else fy_start
    return _make_period(kind, start, fiscal_year_start)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}; expected an IANA name like Asia/Shanghai") from None


def to_local_date(ts: datetime, tz: str) -> date:
    """The project-zone calendar date of ``ts``; naive timestamps are taken as already local."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        return ts.date()
    return ts.astimezone(_zone(tz)).date()


def last_complete_period(now: datetime, tz: str, kind: str = "month", fiscal_year_start: int = 1) -> Period:
    """The latest period that had fully ended by ``now`` in time zone ``tz``.

    ``now`` must be timezone-aware: a naive value would silently mean "server
    time", which is exactly the ambiguity this function exists to remove.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (pass the clock in, e.g. datetime.now(UTC))")
    # The period containing local "today" is still running; its predecessor ended at
    # local midnight on our start date, which is not after now.
    return period_containing(to_local_date(now, tz), kind, fiscal_year_start).previous()


def trend_periods(period: Period, n: int = 12) -> list[Period]:
    """The ``n`` periods ending with ``period``, oldest first."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [period.shift(-i) for i in range(n - 1, -1, -1)]


@dataclass(frozen=True)
class Window:
    """A comparison window ``[start, end)``; ``start`` is None for the unbounded lifetime window.

    ``months`` is the length used to turn totals into per-month rates; ``days`` the
    exact length in days. Both are None for lifetime.
    """

    name: str
    start: date | None
    end: date
    months: float | None
    days: int | None


def _months_between(start: date, end: date) -> float:
    """Whole months from start to end plus the leftover as a fraction of the next month."""
    whole = (end.year - start.year) * 12 + end.month - start.month
    if add_months(start, whole) > end:
        whole -= 1
    anchor = add_months(start, whole)
    next_anchor = add_months(start, whole + 1)
    return whole + (end - anchor).days / (next_anchor - anchor).days


def _window(name: str, start: date | None, end: date) -> Window:
    if start is None:
        return Window(name, None, end, None, None)
    months = _WINDOW_MONTHS.get(name)
    if months is None:
        months = _months_between(start, end)
    return Window(name, start, end, months, (end - start).days)


def window_bounds(name: str, period_end: date, fiscal_year_start: int = 1) -> Window:
    """The window called ``name`` that ends (exclusive) at ``period_end``.

    Any date is accepted as ``period_end``; month arithmetic clamps the day.
    """
    _check_fiscal_start(fiscal_year_start)
    if name in ("month", "quarter", "trailing_12m"):
        start = add_months(period_end, -int(_WINDOW_MONTHS[name]))
    elif name == "trailing_90d":
        start = period_end - timedelta(days=90)
    elif name == "ytd":
        # The day before end, because end is exclusive: a period ending on the fiscal
        # new year reports the whole year just finished, not an empty window.
        last_day = period_end - timedelta(days=1)
        start = date(_fiscal_year_of(last_day, fiscal_year_start), fiscal_year_start, 1)
    elif name == "lifetime":
        start = None
    else:
        raise ValueError(f"unknown window {name!r}; expected one of: {', '.join(WINDOW_NAMES)}")
    return _window(name, start, period_end)


def year_earlier(w: Window) -> Window:
    """The same window twelve months back."""
    end = add_months(w.end, -12)
    if w.name == "ytd":
        # Shifting the fiscal-year start keeps fiscal alignment without knowing the fiscal start month.
        return _window("ytd", add_months(w.start, -12), end)
    return window_bounds(w.name, end)


def prior_window(w: Window) -> Window:
    """The window of equal length immediately before ``w`` (for ytd: the same span a year earlier)."""
    if w.start is None:
        raise ValueError("lifetime window has no prior window")
    if w.name == "ytd":
        return year_earlier(w)
    # Ending the prior window at w.start keeps the two contiguous even when month clamping
    # would make "shift both ends back" leave a gap.
    return window_bounds(w.name, w.start)
