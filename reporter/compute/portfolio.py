"""Portfolio- and tier-level KPIs: retention, churn, acquisition, CAC, NRR and GRR.

Account movements (KPIS.md), for a period ``[start, end)``:

- at start: joined before the start (``since < start``, or no ``since``) and not churned
  before it (``churned_on`` empty or ``>= start``);
- new: joined in the period; lost: accounts at start whose ``churned_on`` is in the period;
- at end: accounts that joined before the end and had not churned by it. This is
  ``at start - lost + new``, except that an account which joins and churns within the same
  period is not counted at the end (it is still counted as new).

retention = (at end - new accounts still there at the end) / at start, churn = lost / at start,
acquisition = new / at end, cac = acquisition-type costs in the period / new.

NRR and GRR use the trailing-12-month window ending at the period end and compare each account
with the 12 months before; the cohort is the accounts with revenue in those prior 12 months.
Money is summed with fsum (compensated) rounded to 6 places, so parallel scans give the same
bits on every run; the scorecard passes the same revenue summed exactly from the KPI library's
order buckets instead (``revenue_from_totals``: equal whenever amounts have at most 6 decimals).

Every KPI is ``{"value", "n", "note", "label", "unit", "direction"}``; a zero denominator gives
``value: None`` and a note saying why.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from ..config.catalog import PORTFOLIO_KPIS
from .periods import Period, add_months
from .tables import table_columns

UNASSIGNED = "unassigned"
DEFAULT_CAC_CATEGORIES = ("acquisition", "sales", "marketing")


def portfolio_kpis(
    con,
    period: Period,
    account_tiers: dict[str, str],
    cac_categories=DEFAULT_CAC_CATEGORIES,
    revenue: tuple[dict[str, float], dict[str, float]] | None = None,
) -> dict:
    """``{"portfolio": {kpi: {...}, ..., "counts": {...}}, "tiers": {tier: {...}}}``.

    Accounts missing from ``account_tiers`` are grouped under "unassigned". Costs booked to an
    account count towards its tier's CAC; portfolio-level costs (no account) are spread over the
    tiers in proportion to their new accounts. ``revenue`` is revenue_by_account's (now, prior) when
    the caller has it already.
    """
    accounts = con.execute("select account_id, since, churned_on from accounts").fetchall()
    tier_of = {a: account_tiers.get(a, UNASSIGNED) for a, _, _ in accounts}
    moves = {a: _movement(since, churned, period) for a, since, churned in accounts}
    revenue_now, revenue_prior, _ = revenue_by_account(con, period) if revenue is None else (*revenue, None)
    costs_by_account, costs_unbooked = _acquisition_costs(con, period, tuple(cac_categories))

    groups: dict[str, list[str]] = defaultdict(list)
    for account_id in sorted(tier_of):
        groups[tier_of[account_id]].append(account_id)
    total_new = sum(moves[a]["new"] for a in tier_of)

    def block(members: list[str], costs: float) -> dict:
        counts = {key: sum(moves[a][key] for a in members) for key in ("at_start", "new", "lost", "at_end")}
        new_remaining = sum(moves[a]["new"] and moves[a]["at_end"] for a in members)
        cohort = [a for a in members if revenue_prior.get(a, 0) > 0]
        prior = sum(revenue_prior[a] for a in cohort)
        out = {
            "retention_rate": _ratio(counts["at_end"] - new_remaining, counts["at_start"], "no accounts at the start of the period"),
            "churn_rate": _ratio(counts["lost"], counts["at_start"], "no accounts at the start of the period"),
            "acquisition_rate": _ratio(counts["new"], counts["at_end"], "no accounts at the end of the period"),
            "cac": _ratio(costs, counts["new"], "no new accounts in the period"),
            "nrr": _ratio(sum(revenue_now.get(a, 0.0) for a in cohort), prior,
                          "no account had revenue in the 12 months before the window", n=len(cohort)),
            "grr": _ratio(sum(min(revenue_now.get(a, 0.0), revenue_prior[a]) for a in cohort), prior,
                          "no account had revenue in the 12 months before the window", n=len(cohort)),
        }
        for kpi_id, entry in out.items():
            info = PORTFOLIO_KPIS[kpi_id]
            entry.update(label={"en": info.en, "zh_CN": info.zh_CN}, unit=info.unit, direction=info.direction)
        out["counts"] = counts
        return out

    tiers = {}
    for tier, members in groups.items():
        booked = sum(costs_by_account.get(a, 0.0) for a in members)
        new = sum(moves[a]["new"] for a in members)
        share = costs_unbooked * new / total_new if total_new else 0.0
        tiers[tier] = block(members, booked + share)
    booked_total = sum(c for a, c in costs_by_account.items() if a in tier_of)
    # Costs booked to an id that is not in accounts still cost money: they stay in the portfolio total.
    orphan = sum(c for a, c in costs_by_account.items() if a not in tier_of)
    portfolio = block(sorted(tier_of), booked_total + orphan + costs_unbooked)
    return {"portfolio": portfolio, "tiers": tiers}


def _ratio(numerator: float, denominator: float, reason: str, n: int | None = None) -> dict:
    n = int(denominator) if n is None else n
    if not denominator:
        return {"value": None, "n": n, "note": reason}
    return {"value": float(numerator) / float(denominator), "n": n, "note": ""}


def _as_date(x) -> date | None:
    return x.date() if isinstance(x, datetime) else x


def _movement(since: date | None, churned_on: date | None, period: Period) -> dict[str, int]:
    start, end = period.start, period.end
    since, churned_on = _as_date(since), _as_date(churned_on)
    at_start = (since is None or since < start) and (churned_on is None or churned_on >= start)
    new = since is not None and start <= since < end
    lost = at_start and churned_on is not None and churned_on < end
    at_end = (since is None or since < end) and (churned_on is None or churned_on >= end)
    return {"at_start": int(at_start), "new": int(new), "lost": int(lost), "at_end": int(at_end)}


def revenue_by_account(con, period: Period, count_from: tuple[date, ...] = ()) -> tuple[
        dict[str, float], dict[str, float], dict[str, tuple[int, ...]] | None]:
    """Revenue per account in the trailing 12 months to the period end and in the 12 months before; and,
    from the same scan, the order lines per account from each day of ``count_from`` (none before the
    12 months before) to the period end, as a tuple. ({}, {}, None) without the columns."""
    if not {"account_id", "date", "amount"} <= table_columns(con, "orders"):
        return {}, {}, None
    end = period.end
    (start, _), (prior_start, _), *_ = revenue_spans(period, count_from)
    params = {"prior": prior_start, "start": start, "end": end, **{f"c{i}": d for i, d in enumerate(count_from)}}
    counts = "".join(f", count(*) filter (where date >= $c{i})" for i in range(len(count_from)))
    now, prior, lines = {}, {}, {}
    for account_id, current, before, *counted in con.execute(
        "select account_id, coalesce(round(fsum(amount) filter (where date >= $start), 6), 0), "
        f"coalesce(round(fsum(amount) filter (where date < $start), 6), 0){counts} "
        "from orders where date >= $prior and date < $end group by account_id",
        params,
    ).fetchall():
        now[account_id], prior[account_id] = float(current), float(before)
        lines[account_id] = tuple(int(c) for c in counted)
    return now, prior, lines


def revenue_spans(period: Period, count_from: tuple[date, ...] = ()) -> tuple[tuple[date, date], ...]:
    """The date spans ``[lo, hi)`` revenue_by_account sums over: the trailing 12 months to the period end, the
    12 months before, and from each day of ``count_from`` to the period end."""
    end = period.end
    start, prior_start = add_months(end, -12), add_months(end, -24)
    if any(day < prior_start for day in count_from):
        raise ValueError(f"order lines are counted from {prior_start} on, not from {min(count_from)}")
    return ((start, end), (prior_start, start), *((day, end) for day in count_from))


def revenue_from_totals(totals: dict[str, tuple[tuple[float, ...], tuple[int, ...]]]) -> tuple[
        dict[str, float], dict[str, float], dict[str, tuple[int, ...]]]:
    """revenue_by_account's result from order totals over revenue_spans' spans (account_id -> (amount per
    span, lines per span), for the accounts with an order line in them), summed without another scan.

    Those sums are exact to the millionth (each amount rounded to a millionth, then added up), where
    revenue_by_account rounds its compensated double sum to a millionth: the same numbers whenever the
    amounts have at most six decimals, as money does."""
    now, prior, lines = {}, {}, {}
    for account_id, (amounts, counts) in totals.items():
        now[account_id], prior[account_id] = amounts[0], amounts[1]
        lines[account_id] = counts[2:]
    return now, prior, lines


def _acquisition_costs(con, period: Period, categories: tuple[str, ...]) -> tuple[dict[str, float], float]:
    """Costs of the given categories in the period: per account, and those booked to no account."""
    columns = table_columns(con, "costs")
    if not {"date", "category", "amount"} <= columns or not categories:
        return {}, 0.0
    account = "account_id" if "account_id" in columns else "null"
    by_account, unbooked = {}, 0.0
    for account_id, total in con.execute(
        f"select nullif(trim({account}), '') as a, round(fsum(amount), 6) from costs "
        "where date >= $start and date < $end and list_contains($categories, lower(category)) group by a",
        {"start": period.start, "end": period.end, "categories": [c.lower() for c in categories]},
    ).fetchall():
        if account_id is None:
            unbooked += float(total or 0)
        else:
            by_account[account_id] = float(total or 0)
    return by_account, unbooked
