"""The monthly detail behind a review's charts and tables, for many accounts at once.

Each function runs a handful of grouped DuckDB queries over the canonical tables for all
requested accounts together (never one query per account), then shapes the rows into
plain JSON-ready dicts: numbers as float/int, dates as ISO strings, None where there is
no data (never NaN). Sums are 0.0 when nothing happened; medians and rates are None.

The detail always covers the 12 calendar months ending with the period's last month,
whatever the period kind, so a quarterly review still shows a year of months.
"""
from __future__ import annotations

import math
from datetime import date

import duckdb

from .periods import Period, add_months

CHANNELS = ("meeting", "call", "email", "visit", "review")
SENIORITIES = ("staff", "manager", "director", "executive")
NO_DEPARTMENT = "—"  # shown for active contacts without a department, so they still count

# Money sums use fsum (compensated) rounded to 6 places: a plain parallel double sum may
# differ in its last bits between runs, and the archive needs byte-identical charts.
_MONEY = "round(fsum({0}), 6)"
_REQUESTED = "requested AS (SELECT DISTINCT unnest($ids::VARCHAR[]) AS account_id)"


def _months(period: Period) -> list[date]:
    """First days of the 12 months ending with the period's last month, oldest first."""
    last = date(period.end.year, period.end.month, 1)
    if last == period.end:  # periods end on a month boundary (exclusive)
        last = add_months(last, -1)
    return [add_months(last, i - 11) for i in range(12)]


def _label(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def _num(value) -> float | None:
    """A JSON-safe float: None for NULL, NaN and infinities."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _money(value) -> float:
    return _num(value) or 0.0


def _account_ids(con: duckdb.DuckDBPyConnection, account_ids: list[str] | None) -> list[str]:
    if account_ids is None:
        return [r[0] for r in con.execute("SELECT account_id FROM accounts ORDER BY account_id").fetchall()]
    return list(dict.fromkeys(account_ids))  # keep the caller's order, drop repeats


def _revenue_rows(con, ids: list[str] | None, start: date, end: date) -> dict[tuple[str, str], float]:
    """(account_id, 'YYYY-MM') -> revenue, for orders in [start, end); ids None = whole portfolio."""
    if ids is None:
        rows = con.execute(
            f"""SELECT '*', strftime(date_trunc('month', date), '%Y-%m'), {_MONEY.format('amount')}
                FROM orders WHERE date >= $start AND date < $end AND amount IS NOT NULL GROUP BY ALL""",
            {"start": start, "end": end},
        ).fetchall()
    else:
        rows = con.execute(
            f"""WITH {_REQUESTED}
                SELECT o.account_id, strftime(date_trunc('month', o.date), '%Y-%m'), {_MONEY.format('o.amount')}
                FROM orders o JOIN requested r ON o.account_id = r.account_id
                WHERE o.date >= $start AND o.date < $end AND o.amount IS NOT NULL GROUP BY ALL""",
            {"ids": ids, "start": start, "end": end},
        ).fetchall()
    return {(a, m): _money(v) for a, m, v in rows}


def _revenue_by_month(revenue: dict[tuple[str, str], float], key: str, months: list[date]) -> list[dict]:
    return [
        {
            "month": _label(m),
            "revenue": revenue.get((key, _label(m)), 0.0),
            "prior_year_revenue": revenue.get((key, _label(add_months(m, -12))), 0.0),
        }
        for m in months
    ]


def _sum_revenue(series: list[dict]) -> float:
    return round(math.fsum(row["revenue"] for row in series), 6)


def _surveys(con, ids, start, end) -> dict[tuple[str, str], tuple]:
    rows = con.execute(
        f"""WITH {_REQUESTED}
            SELECT s.account_id, strftime(date_trunc('month', s.date), '%Y-%m'),
                   count(*) FILTER (WHERE s.kind = 'nps'),
                   count(*) FILTER (WHERE s.kind = 'nps' AND s.score >= 9),
                   count(*) FILTER (WHERE s.kind = 'nps' AND s.score <= 6),
                   count(*) FILTER (WHERE s.kind = 'csat'),
                   count(*) FILTER (WHERE s.kind = 'csat' AND s.score >= 4)
            FROM surveys s JOIN requested r ON s.account_id = r.account_id
            WHERE s.date >= $start AND s.date < $end AND s.score IS NOT NULL AND NOT isnan(s.score)
            GROUP BY ALL""",
        {"ids": ids, "start": start, "end": end},
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _survey_month(month: str, counts: tuple | None) -> dict:
    nps_n, promoters, detractors, csat_n, csat_top = counts or (0, 0, 0, 0, 0)
    return {
        "month": month,
        "nps": 100.0 * (promoters - detractors) / nps_n if nps_n else None,
        "nps_n": nps_n,
        "csat": csat_top / csat_n if csat_n else None,  # share of responses scoring 4-5, 0..1
        "csat_n": csat_n,
    }


def _tickets(con, ids, start, end) -> dict[tuple[str, str], tuple]:
    rows = con.execute(
        f"""WITH {_REQUESTED}
            SELECT t.account_id, strftime(date_trunc('month', t.opened_at), '%Y-%m'),
                   count(*),
                   count(*) FILTER (WHERE t.is_complaint),
                   median(date_diff('second', t.opened_at, t.first_response_at) / 3600.0),
                   median(date_diff('second', t.opened_at, t.resolved_at) / 3600.0),
                   median(t.sla_hours)
            FROM tickets t JOIN requested r ON t.account_id = r.account_id
            WHERE t.opened_at >= $start::TIMESTAMP AND t.opened_at < $end::TIMESTAMP
            GROUP BY ALL""",
        {"ids": ids, "start": start, "end": end},
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _service_month(month: str, row: tuple | None) -> dict:
    tickets, complaints, first_response, resolution, sla = row or (0, 0, None, None, None)
    return {
        "month": month,
        "tickets": tickets,
        "complaints": complaints,
        "first_response_hours": _num(first_response),
        "resolution_hours": _num(resolution),
        "sla_hours": _num(sla),
    }


def _interactions(con, ids, start, end) -> dict[tuple[str, str], tuple]:
    by_channel = ",\n".join(f"count(*) FILTER (WHERE i.channel = '{c}')" for c in CHANNELS)
    rows = con.execute(
        f"""WITH {_REQUESTED}
            SELECT i.account_id, strftime(date_trunc('month', i.date), '%Y-%m'), {by_channel}, count(*)
            FROM interactions i JOIN requested r ON i.account_id = r.account_id
            WHERE i.date >= $start AND i.date < $end
            GROUP BY ALL""",
        {"ids": ids, "start": start, "end": end},
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _interaction_month(month: str, row: tuple | None) -> dict:
    counts = row or (0,) * (len(CHANNELS) + 1)
    return {"month": month, **dict(zip(CHANNELS, counts[:-1])), "total": counts[-1]}


def _relationship_maps(con, ids) -> dict[str, dict]:
    """Active contacts (a blank `active` counts as active) by department and seniority."""
    seniority_list = ", ".join(f"'{s}'" for s in SENIORITIES)
    cells = con.execute(
        f"""WITH {_REQUESTED}
            SELECT c.account_id, coalesce(nullif(trim(c.department), ''), $none), c.seniority, count(*)
            FROM contacts c JOIN requested r ON c.account_id = r.account_id
            WHERE coalesce(c.active, true)
            GROUP BY ALL ORDER BY ALL""",
        {"ids": ids, "none": NO_DEPARTMENT},
    ).fetchall()
    makers = con.execute(
        f"""WITH {_REQUESTED}
            SELECT c.account_id, coalesce(nullif(trim(c.name), ''), c.contact_id), c.contact_id,
                   c.department, c.seniority
            FROM contacts c JOIN requested r ON c.account_id = r.account_id
            WHERE coalesce(c.active, true) AND c.role = 'decision_maker'
            ORDER BY c.account_id,
                     list_position([{seniority_list}], c.seniority) DESC NULLS LAST,
                     2, c.contact_id""",
        {"ids": ids},
    ).fetchall()
    maps = {a: {"departments": [], "seniorities": list(SENIORITIES), "cells": {}, "decision_makers": []}
            for a in ids}
    for account_id, department, seniority, count in cells:
        m = maps[account_id]
        row = m["cells"].setdefault(department, {s: 0 for s in SENIORITIES})
        if seniority in row:  # a contact of unknown seniority counts only towards its department's list
            row[seniority] += count
    for account_id, m in maps.items():
        m["departments"] = sorted(m["cells"])
        m["cells"] = {d: m["cells"][d] for d in m["departments"]}
    for account_id, name, contact_id, department, seniority in makers:
        maps[account_id]["decision_makers"].append(
            {"name": name, "contact_id": contact_id, "department": department, "seniority": seniority})
    return maps


def _opportunities(con, ids, start, end) -> dict[str, dict]:
    """Pipeline open at the period end, wins closed in the 12 months, and whitespace."""
    result = {a: {"open": [], "open_total": 0.0, "won_12m": 0.0, "won_12m_count": 0, "whitespace": []}
              for a in ids}
    # Open at the period end: created before it and not closed before it, so re-running an
    # old period shows the pipeline as it stood then.
    open_rows = con.execute(
        f"""WITH {_REQUESTED}
            SELECT o.account_id, o.opportunity_id, o.kind, o.product_line, o.amount, o.created_at
            FROM opportunities o JOIN requested r ON o.account_id = r.account_id
            WHERE o.created_at < $end
              AND CASE WHEN o.closed_at IS NULL THEN coalesce(o.status, 'open') = 'open'
                       ELSE o.closed_at >= $end END
            ORDER BY o.account_id, o.created_at, o.opportunity_id""",
        {"ids": ids, "end": end},
    ).fetchall()
    for account_id, opportunity_id, kind, product_line, amount, created_at in open_rows:
        result[account_id]["open"].append({
            "opportunity_id": opportunity_id, "kind": kind, "product_line": product_line,
            "amount": _num(amount), "created_at": created_at.isoformat(),
        })
    for account_id, r in result.items():
        r["open_total"] = round(math.fsum(o["amount"] or 0.0 for o in r["open"]), 6)
    won = con.execute(
        f"""WITH {_REQUESTED}
            SELECT o.account_id, {_MONEY.format('coalesce(o.amount, 0)')}, count(*)
            FROM opportunities o JOIN requested r ON o.account_id = r.account_id
            WHERE o.status = 'won' AND o.closed_at >= $start AND o.closed_at < $end
            GROUP BY ALL""",
        {"ids": ids, "start": start, "end": end},
    ).fetchall()
    for account_id, amount, count in won:
        result[account_id]["won_12m"] = _money(amount)
        result[account_id]["won_12m_count"] = count
    # Whitespace: product lines the portfolio sold in the 12 months that this account did not buy.
    lines = con.execute(
        f"""WITH {_REQUESTED}, bought AS (
                SELECT DISTINCT account_id, product_line FROM orders
                WHERE date >= $start AND date < $end AND product_line IS NOT NULL AND trim(product_line) <> '')
            SELECT r.account_id, list_sort(list(DISTINCT p.product_line))
            FROM requested r CROSS JOIN (SELECT DISTINCT product_line FROM bought) p
            WHERE NOT EXISTS (SELECT 1 FROM bought b
                              WHERE b.account_id = r.account_id AND b.product_line = p.product_line)
            GROUP BY r.account_id""",
        {"ids": ids, "start": start, "end": end},
    ).fetchall()
    for account_id, missing in lines:
        result[account_id]["whitespace"] = list(missing)
    return result


def account_details(con: duckdb.DuckDBPyConnection, period: Period,
                    account_ids: list[str] | None = None) -> dict[str, dict]:
    """Per-account monthly detail for the review charts, keyed by account id.

    ``account_ids`` None means every account in the accounts table. An id with no rows
    anywhere still gets a full entry (zero sums, None medians), so callers never branch.
    """
    ids = _account_ids(con, account_ids)
    months = _months(period)
    labels = [_label(m) for m in months]
    start, end = months[0], add_months(months[-1], 1)
    if not ids:
        return {}
    revenue = _revenue_rows(con, ids, add_months(start, -12), end)
    surveys = _surveys(con, ids, start, end)
    tickets = _tickets(con, ids, start, end)
    interactions = _interactions(con, ids, start, end)
    maps = _relationship_maps(con, ids)
    opportunities = _opportunities(con, ids, start, end)
    details = {}
    for a in ids:
        by_month = _revenue_by_month(revenue, a, months)
        details[a] = {
            "account_id": a,
            "period": period.label,
            "months": labels,
            "revenue_by_month": by_month,
            "revenue_12m": _sum_revenue(by_month),
            "prior_revenue_12m": round(math.fsum(r["prior_year_revenue"] for r in by_month), 6),
            "surveys_by_month": [_survey_month(m, surveys.get((a, m))) for m in labels],
            "service_by_month": [_service_month(m, tickets.get((a, m))) for m in labels],
            "interactions_by_month": [_interaction_month(m, interactions.get((a, m))) for m in labels],
            "relationship_map": maps[a],
            "opportunities": opportunities[a],
        }
    return details


def portfolio_details(con: duckdb.DuckDBPyConnection, period: Period) -> dict:
    """Portfolio revenue by month (with the prior year) and every account's trailing-12m revenue."""
    months = _months(period)
    start, end = months[0], add_months(months[-1], 1)
    by_month = _revenue_by_month(_revenue_rows(con, None, add_months(start, -12), end), "*", months)
    per_account = con.execute(
        f"""SELECT a.account_id, {_MONEY.format('coalesce(o.amount, 0)')}
            FROM accounts a LEFT JOIN orders o
              ON o.account_id = a.account_id AND o.date >= $start AND o.date < $end
            GROUP BY a.account_id ORDER BY a.account_id""",
        {"start": start, "end": end},
    ).fetchall()
    return {
        "period": period.label,
        "months": [_label(m) for m in months],
        "revenue_by_month": by_month,
        "revenue_12m": _sum_revenue(by_month),
        "prior_revenue_12m": round(math.fsum(r["prior_year_revenue"] for r in by_month), 6),
        "account_revenue_12m": {a: _money(v) for a, v in per_account},
    }
