"""Early warnings (流失预警): signs that a key account is drifting away, each with a reason in en and zh_CN.

Most checks read the canonical tables directly rather than the KPI frame, because they need
windows and facts a KPI value does not carry: the 12-month order average next to the last
90 days, the complaints of the 90 days before, the detractor's own score and date. The
probability the account is still active comes from the KPI frame (the BG/NBD fit lives there);
health scores come from the scorecard.

Every window is half-open and ends at the period end, like the KPI windows. A table or column
no source provides simply disables the checks that need it.
"""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

import pandas as pd

from ..config.models import WarningThresholds
from .periods import Period, window_bounds
from .tables import table_columns, unique_columns

CODES = ("order_drop", "complaints_up", "nps_detractor", "no_contact", "low_p_alive", "health_drop")
RECENT_DAYS = 90
_DAYS_PER_MONTH = 365.25 / 12  # the mean Gregorian month, as in periods.py


def early_warnings(
    con,
    kpi_frame: pd.DataFrame | None,
    period: Period,
    account_tiers: dict[str, str],
    thresholds_by_tier: dict[str, WarningThresholds],
    health_now: dict[str, float | None],
    health_prev: dict[str, float | None],
    locale: str = "en",
    p_alive: dict[str, float] | None = None,
    facts: Facts | None = None,
) -> dict[str, list[dict]]:
    """Warnings per account of ``account_tiers`` (every account gets a list, possibly empty).

    Accounts whose tier has no thresholds (unassigned) are checked against the defaults.
    Each warning is ``{"code", "reason", "reasons": {"en", "zh_CN"}}``; ``reason`` is in ``locale``.
    ``p_alive`` (account_id -> the period's p_alive) replaces reading it from ``kpi_frame``;
    ``facts`` (``Facts(con, period, account_ids)`` for these accounts) replaces querying them here.
    """
    if facts is None:
        facts = Facts(con, period, list(account_tiers))
    if p_alive is None:
        p_alive = _kpi_values(kpi_frame, "p_alive", period.label)
    result: dict[str, list[dict]] = {}
    for account_id in sorted(account_tiers):
        limits = thresholds_by_tier.get(account_tiers[account_id]) or WarningThresholds()
        found = [
            _order_drop(facts, account_id, limits),
            _complaints_up(facts, account_id, limits),
            _nps_detractor(facts, account_id, limits),
            _no_contact(facts, account_id, limits),
            _low_p_alive(p_alive.get(account_id), limits),
            _health_drop(health_now.get(account_id), health_prev.get(account_id), limits),
        ]
        result[account_id] = [_warning(code, en, zh, locale) for code, en, zh in filter(None, found)]
    return result


def _warning(code: str, en: str, zh: str, locale: str) -> dict:
    return {"code": code, "reason": zh if locale == "zh_CN" else en, "reasons": {"en": en, "zh_CN": zh}}


def _num(x: float) -> str:
    """One decimal at most, without a trailing .0: 0.7, 1.5, 14, 78.4."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


# --------------------------------------------------------------------------- the checks

def _order_drop(facts: Facts, account_id: str, limits: WarningThresholds):
    counts = facts.orders.get(account_id)
    if counts is None:
        return None
    recent, recent_months, year, year_months = counts
    if recent_months <= 0 or year_months <= 0:
        return None
    average = year / year_months
    if average <= 0:
        return None
    rate = recent / recent_months
    drop_pct = (1 - rate / average) * 100
    if drop_pct < limits.order_drop_pct or drop_pct <= 0:
        return None
    pct = f"{drop_pct:.0f}"
    return (
        "order_drop",
        f"Orders down {pct}% against the 12-month average ({_num(rate)} vs {_num(average)} per month)",
        f"订单频率较12个月平均下降{pct}%（每月{_num(rate)}单，平均{_num(average)}单）",
    )


def _complaints_up(facts: Facts, account_id: str, limits: WarningThresholds):
    now, prior = facts.complaints.get(account_id, (0, 0))
    if now < 2 or now < limits.complaint_ratio * prior:
        return None
    return (
        "complaints_up",
        f"{now} complaints in the last {RECENT_DAYS} days, up from {prior}",
        f"近{RECENT_DAYS}天投诉{now}次，此前{RECENT_DAYS}天为{prior}次",
    )


def _nps_detractor(facts: Facts, account_id: str, limits: WarningThresholds):
    if not limits.nps_detractor or account_id not in facts.detractors:
        return None
    score, day, count = facts.detractors[account_id]
    more_en = f" ({count} detractors in the last {RECENT_DAYS} days)" if count > 1 else ""
    more_zh = f"（近{RECENT_DAYS}天共{count}位贬损者）" if count > 1 else ""
    return (
        "nps_detractor",
        f"NPS detractor: score {_num(score)} on {day.isoformat()}{more_en}",
        f"NPS贬损者：{day.isoformat()}评分{_num(score)}{more_zh}",
    )


def _no_contact(facts: Facts, account_id: str, limits: WarningThresholds):
    if not facts.has_interactions:
        return None
    last = facts.last_contact.get(account_id)
    if last is None:
        return ("no_contact", "No contact on record", "没有任何互动记录")
    days = (facts.period.end - last).days
    if days < limits.no_contact_days:
        return None
    return ("no_contact", f"No contact for {days} days", f"已{days}天没有互动")


def _low_p_alive(value: float | None, limits: WarningThresholds):
    if value is None or value >= limits.p_alive:
        return None
    pct = f"{value * 100:.0f}"
    if pct == "0" and value > 0:
        pct = "<1"  # "0%" would claim certainty the model does not have
    return ("low_p_alive", f"Probability still active {pct}%", f"仍活跃的概率为{pct}%")


def _health_drop(now: float | None, prev: float | None, limits: WarningThresholds):
    if now is None or prev is None:
        return None
    drop = prev - now
    if drop < limits.health_drop or drop <= 0:
        return None
    return (
        "health_drop",
        f"Health score down {_num(drop)} points ({_num(prev)} → {_num(now)})",
        f"健康分下降{_num(drop)}分（{_num(prev)} → {_num(now)}）",
    )


# --------------------------------------------------------------------------- the facts, one query each

def _kpi_values(frame: pd.DataFrame | None, kpi: str, label: str) -> dict[str, float]:
    if frame is None or frame.empty:
        return {}
    rows = frame[(frame["kpi"] == kpi) & (frame["period"] == label) & (frame["status"] != "no_data")]
    return {
        row.account_id: float(row.value)
        for row in rows.itertuples(index=False)
        if row.value is not None and math.isfinite(float(row.value))
    }


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def order_windows(period: Period) -> tuple[date, date]:
    """The first days of the order_drop check's recent and 12-month windows (both end at the period end)."""
    return period.end - timedelta(days=RECENT_DAYS), window_bounds("trailing_12m", period.end).start


class Facts:
    """The raw numbers the checks need, for every account at once.

    ``line_counts`` (account_id -> order lines in the two order_windows, counted by the caller in a scan
    it needed anyway) stands for the orders when each line is an order of its own (see _order_counts)."""

    def __init__(self, con, period: Period, account_ids: list[str],
                 line_counts: dict[str, tuple[int, int]] | None = None):
        self.period = period
        end = period.end
        recent_start, year_start = order_windows(period)
        prior_start = recent_start - timedelta(days=RECENT_DAYS)
        year = window_bounds("trailing_12m", end)
        since = self._since(con)

        self.orders: dict[str, tuple[int, float, int, float]] = {}
        order_cols = table_columns(con, "orders")
        if {"account_id", "date"} <= order_cols:
            # Lines share an order only through an order_id, which the loader keeps unique (each line its own order).
            may_share = "order_id" in order_cols and "order_id" not in unique_columns(con, "orders")
            if line_counts is not None and not may_share:
                counts = line_counts
            else:
                counts = _order_counts(con, may_share, recent_start, year_start, end)
            for account_id in account_ids:
                recent, in_year = counts.get(account_id, (0, 0))
                # An account younger than a window is measured over its own age, so that a new
                # account is not flagged for the months before it existed.
                joined = since.get(account_id)
                recent_from = max(recent_start, joined) if joined else recent_start
                year_from = max(year.start, joined) if joined else year.start
                recent_months = (end - recent_from).days / _DAYS_PER_MONTH
                year_months = year.months if year_from == year.start else (end - year_from).days / _DAYS_PER_MONTH
                self.orders[account_id] = (recent, recent_months, in_year, year_months)

        self.complaints: dict[str, tuple[int, int]] = {}
        if {"account_id", "opened_at", "is_complaint"} <= table_columns(con, "tickets"):
            for a, now, prior in con.execute(
                "select account_id, count(*) filter (where opened_at >= $recent), count(*) filter (where opened_at < $recent) "
                "from tickets where is_complaint and opened_at >= $prior and opened_at < $end group by account_id",
                {"prior": _midnight(prior_start), "recent": _midnight(recent_start), "end": _midnight(end)},
            ).fetchall():
                self.complaints[a] = (int(now), int(prior))

        self.detractors: dict[str, tuple[float, date, int]] = {}
        if {"account_id", "date", "kind", "score"} <= table_columns(con, "surveys"):
            # The latest detractor is the one named; the lowest score breaks a tie on the same day.
            for a, score, day, count in con.execute(
                "select account_id, score, date, count(*) over (partition by account_id) from ("
                "  select *, row_number() over (partition by account_id order by date desc, score) as rn from surveys"
                "  where lower(kind) = 'nps' and score <= 6 and date >= $recent and date < $end"
                ") qualify rn = 1",
                {"recent": recent_start, "end": end},
            ).fetchall():
                self.detractors[a] = (float(score), day, int(count))

        interaction_cols = table_columns(con, "interactions")
        self.has_interactions = {"account_id", "date"} <= interaction_cols
        self.last_contact: dict[str, date] = {}
        if self.has_interactions:
            self.last_contact = dict(
                con.execute(
                    "select account_id, max(date) from interactions where date < $end group by account_id",
                    {"end": end},
                ).fetchall()
            )

    @staticmethod
    def _since(con) -> dict[str, date]:
        if {"account_id", "since"} <= table_columns(con, "accounts"):
            return dict(con.execute("select account_id, since from accounts where since is not null").fetchall())
        return {}


def _order_counts(con, may_share: bool, recent: date, year: date, end: date) -> dict[str, tuple[int, int]]:
    """Orders per account in [recent, end) and in [year, end).

    An order with several lines counts once, in each window one of its lines is in; a line without
    an order_id is an order of its own. Distinct order_ids cost a large hash table, so they are
    counted only when two lines of the year may share one: ``may_share`` (order_ids present and not
    known to be unique) and equal hashes. Otherwise every line is an order of its own, as it is in
    loaded data (the loader rejects a repeated order_id and marks the column, see unique_columns).
    """
    params = {"recent": recent, "year": year, "end": end}
    if may_share and _shared_order_ids(con, year, end):
        rows = con.execute(
            "select account_id, count(*) filter (where last >= $recent), count(*) from ("
            "  select account_id, max(date) as last from orders where date >= $year and date < $end"
            # a line without an order_id is grouped on its own by its rowid
            "  group by account_id, order_id, case when order_id is null then rowid end"
            ") group by account_id", params).fetchall()
    else:
        rows = con.execute(
            "select account_id, count(*) filter (where date >= $recent), count(*) from orders "
            "where date >= $year and date < $end group by account_id", params).fetchall()
    return {a: (int(r), int(y)) for a, r, y in rows}


def _shared_order_ids(con, year: date, end: date) -> bool:
    """Whether two order lines in [year, end) may have the same order_id (their hashes are equal)."""
    hashes = con.execute(
        "select hash(order_id) as h from orders where date >= $year and date < $end and order_id is not null",
        {"year": year, "end": end}).fetchnumpy()["h"]
    hashes.sort()
    return bool((hashes[1:] == hashes[:-1]).any())
