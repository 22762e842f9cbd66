"""The scorecard of one period: per account and KPI, status against the tier's thresholds, a 0-100
score, the tier percentile and a 12-period trend; per account a weighted health score with its
status, trend and early warnings; per tier and for the portfolio the health distribution and the
portfolio KPIs.

Rules (KPIS.md "Scorecard semantics", and where it is silent):

- Tier: the ``tier`` column of accounts, or with ``tier_rule`` the first band (highest minimum
  first) whose minimum the trailing-12m revenue reaches. An account whose tier has no config is
  listed under "unassigned", with no KPIs and health status "not_scored".
- Listed accounts: those that existed at some point in the period (joined before its end, not
  churned before its start).
- KPI status: no_data and low_sample pass through from the KPI frame (low_sample is shown but kept
  out of health). With thresholds: up KPIs are green at ``value >= green``, amber at
  ``value >= amber``, red below; down KPIs mirror it. Without thresholds the target decides
  (met: green, missed: red); without either the status is "ok" and the KPI is informational.
- Score: bands give green 100, amber 50, red 0. ``scoring: linear`` interpolates from 0 at the
  amber threshold to 100 at the green threshold, clamped to 0..100 (so worse than amber is 0, and
  the mean over the amber band is 50, like the bands).
- Health: Σ w·score / Σ w over the KPIs scored green/amber/red. The weight that could be scored
  (KPIs with thresholds or a target) is the whole; if less than half of it has a score the health
  is None, status "insufficient_data". Status from ``health_bands``.
- Worst-of rule: a red KPI marked ``critical`` caps a green health status at amber (the score
  itself is unchanged; ``health_capped_by`` names the KPIs).
- Previous health: the previous period's values scored with today's tier, targets and thresholds,
  so the comparison shows what changed in the data, not in the config. Trend: up / down by more
  than 2 points, else flat; None without a previous score.
- Percentile: 100 × the average rank of the value among the tier's listed accounts with a value
  (low_sample included), best = 100, in the KPI's good direction.

The result is JSON-ready: ``_clean`` turns NaN and infinities into None, numpy scalars into Python
ones and dates into ISO strings.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import date, datetime

import numpy as np
import pandas as pd

from ..config import ProjectConfig
from ..config.models import HealthBands, TierKpi, Tiers
from .kpis import compute_kpis, resolve_kpis
from .periods import Period, add_months, trend_periods
from .portfolio import UNASSIGNED, portfolio_kpis
from .warnings import early_warnings

TREND_LENGTH = 12
FLAT_POINTS = 2.0
# p_alive feeds the low_p_alive warning even when no tier scores it; the other warnings read the tables.
WARNING_KPIS = ("p_alive",)
SCORED = ("green", "amber", "red")
BAND_SCORES = {"green": 100.0, "amber": 50.0, "red": 0.0}
HEALTH_STATUSES = ("green", "amber", "red", "insufficient_data", "not_scored")
_ACCOUNT_FIELDS = ("account_id", "name", "tier", "owner_email", "owner_name", "region", "since", "churned_on")


# --------------------------------------------------------------------------- scoring rules (pure)

def _better_or_equal(value: float, threshold: float, direction: str) -> bool:
    return value <= threshold if direction == "down" else value >= threshold


def kpi_status(value: float | None, frame_status: str, setting: TierKpi, direction: str, target: float | None) -> str:
    """green / amber / red / ok / no_data / low_sample for one KPI value."""
    if frame_status == "no_data" or value is None:
        return "no_data"
    if frame_status == "low_sample":
        return "low_sample"
    if setting.green is not None or setting.amber is not None:
        if setting.green is not None and _better_or_equal(value, setting.green, direction):
            return "green"
        if setting.amber is not None and _better_or_equal(value, setting.amber, direction):
            return "amber"
        return "red"
    if target is not None:
        return "green" if _better_or_equal(value, target, direction) else "red"
    return "ok"


def kpi_score(value: float | None, status: str, setting: TierKpi, scoring: str) -> float | None:
    """0-100 for a green/amber/red KPI, None otherwise."""
    if status not in SCORED:
        return None
    green, amber = setting.green, setting.amber
    if scoring == "linear" and green is not None and amber is not None and green != amber:
        # (value - amber) / (green - amber) is 0 at amber and 1 at green for both directions.
        return min(100.0, max(0.0, 100.0 * (value - amber) / (green - amber)))
    return BAND_SCORES[status]


def scorable(setting: TierKpi, target: float | None) -> bool:
    """Whether a KPI can ever get a status other than "ok" (and so counts towards the health weight)."""
    return setting.green is not None or setting.amber is not None or target is not None


def health(items: list[tuple[float, bool, str, float | None, bool]], bands: HealthBands) -> tuple[float | None, str, list[int]]:
    """Health of one account from ``(weight, scorable, status, score, critical)`` per KPI.

    Returns ``(score, status, indexes of critical red KPIs that capped a green status)``.
    """
    total = sum(w for w, can_score, *_ in items if can_score)
    scored = [(w, score) for w, _, status, score, _ in items if status in SCORED and score is not None]
    covered = sum(w for w, _ in scored)
    if total <= 0 or covered <= 0 or covered < total / 2:
        return None, "insufficient_data", []
    score = sum(w * s for w, s in scored) / covered
    score = min(100.0, max(0.0, score))  # guards float rounding only
    status = "red" if score < bands.red_below else "green" if score >= bands.green_from else "amber"
    capped = [i for i, (_, _, s, _, critical) in enumerate(items) if critical and s == "red"]
    if status == "green" and capped:
        return score, "amber", capped
    return score, status, []


def health_trend(now: float | None, previous: float | None) -> str | None:
    if now is None or previous is None:
        return None
    change = now - previous
    return "flat" if abs(change) <= FLAT_POINTS else "up" if change > 0 else "down"


def percentile_ranks(values: dict[str, float], direction: str) -> dict[str, float]:
    """Average rank as a percentage, best = 100 (ties share their mean rank)."""
    if not values:
        return {}
    series = pd.Series(values, dtype=float)
    if direction == "down":
        series = -series
    return (series.rank(pct=True, method="average") * 100).to_dict()


# --------------------------------------------------------------------------- the scorecard

def kpi_ids_for(tiers: Tiers) -> list[str]:
    """Every tier's KPIs in config order, then the KPIs the warnings read."""
    ids = list(dict.fromkeys(k for tier in tiers.tiers.values() for k in tier.kpis))
    return ids + [k for k in WARNING_KPIS if k not in ids]


def build_scorecard(con, config: ProjectConfig, period: Period, kpi_frame: pd.DataFrame | None = None) -> dict:
    """The whole scorecard of ``period`` as a JSON-ready dict (see the module docstring for the rules).

    ``kpi_frame`` (the long frame of ``compute_kpis`` over the 12 trend periods) is computed when
    not given.
    """
    tiers_cfg = config.tiers
    periods = trend_periods(period, TREND_LENGTH)
    kpi_defs = resolve_kpis(config.kpis, kpi_ids_for(tiers_cfg))
    if kpi_frame is None:
        kpi_frame = compute_kpis(
            con, kpi_defs, periods,
            fiscal_year_start=config.project.fiscal_year_start,
            clv_discount_rate=config.kpis.clv_monthly_discount_rate,
        )
    all_accounts = _accounts(con)
    account_tiers = assign_tiers(con, tiers_cfg, period, all_accounts)
    listed = [a for a in all_accounts if _listed(a, period)]
    scores = score_accounts(kpi_frame, {a["account_id"]: account_tiers[a["account_id"]] for a in listed},
                            tiers_cfg, kpi_defs, periods)
    results = [
        {
            "account_id": a["account_id"], "name": a["name"], "tier": account_tiers[a["account_id"]],
            "period": period.label, "owner_email": a["owner_email"], "owner_name": a["owner_name"],
            "region": a["region"], "since": a["since"], **scores[a["account_id"]],
        }
        for a in listed
    ]
    health_now = {e["account_id"]: e["health_score"] for e in results}
    health_prev = {e["account_id"]: e["previous_health_score"] for e in results}

    warnings = early_warnings(
        con, kpi_frame, period,
        {a["account_id"]: account_tiers[a["account_id"]] for a in listed},
        {name: tier.warnings for name, tier in tiers_cfg.tiers.items()},
        health_now, health_prev, locale=config.project.locale,
    )
    for entry in results:
        entry["warnings"] = warnings.get(entry["account_id"], [])

    movements = portfolio_kpis(con, period, account_tiers)
    scorecard = {
        "period": period.label,
        "period_start": period.start,
        "period_end": period.end,
        "currency": config.project.currency,
        "accounts": results,
        "tiers": _tier_summaries(results, tiers_cfg, kpi_defs, movements["tiers"]),
        "portfolio": {**movements["portfolio"], **_health_summary(results)},
    }
    return _clean(scorecard)


def score_accounts(kpi_frame: pd.DataFrame, account_tiers: dict[str, str], tiers_cfg: Tiers, kpi_defs,
                   periods: list[Period]) -> dict[str, dict]:
    """The scoring part of each account's entry: health score, previous health score, status, trend,
    ``health_capped_by`` and the KPI dicts with tier percentiles. ``periods`` is oldest first and
    ends with the period being scored; accounts of unconfigured tiers are "not_scored".
    """
    cells = _index(kpi_frame)
    labels = [p.label for p in periods]
    out = {}
    for account_id in sorted(account_tiers):
        tier = tiers_cfg.tiers.get(account_tiers[account_id])
        if tier is None:
            out[account_id] = {"health_score": None, "previous_health_score": None, "health_status": "not_scored",
                               "trend": None, "health_capped_by": [], "kpis": {}}
        else:
            out[account_id] = _score_account(account_id, tier, tiers_cfg, kpi_defs, cells, labels)
    _add_percentiles(out, account_tiers, tiers_cfg, kpi_defs)
    return out


def _score_account(account_id, tier, tiers_cfg: Tiers, kpi_defs, cells, labels) -> dict:
    overrides = tiers_cfg.overrides.get(account_id, {})
    kpis, now_items, prev_items = {}, [], []
    for kpi_id, setting in tier.kpis.items():
        kdef = kpi_defs[kpi_id]
        target = overrides.get(kpi_id, setting.target)
        series = [cells.get((account_id, kpi_id, label), _MISSING) for label in labels]
        value, n, frame_status, note = series[-1]
        previous, _, previous_status, _ = series[-2] if len(series) > 1 else _MISSING
        status = kpi_status(value, frame_status, setting, kdef.direction, target)
        score = kpi_score(value, status, setting, tiers_cfg.scoring)
        prev_status = kpi_status(previous, previous_status, setting, kdef.direction, target)
        prev_score = kpi_score(previous, prev_status, setting, tiers_cfg.scoring)
        can_score = scorable(setting, target)
        now_items.append((setting.weight, can_score, status, score, setting.critical))
        prev_items.append((setting.weight, can_score, prev_status, prev_score, setting.critical))
        kpis[kpi_id] = {
            "value": value,
            "unit": kdef.unit,
            "previous": previous,
            "change": None if value is None or previous is None else value - previous,
            "target": target,
            "status": status,
            "score": score,
            "percentile": None,
            "n": n,
            "note": note,
            "trend": [v for v, *_ in series],
            "label": {"en": kdef.label_en, "zh_CN": kdef.label_zh or kdef.label_en},
            "direction": kdef.direction,
            "window": kdef.window,
        }
    score, status, capped = health(now_items, tiers_cfg.health_bands)
    previous_score, _, _ = health(prev_items, tiers_cfg.health_bands)
    ids = list(tier.kpis)
    return {
        "health_score": score,
        "previous_health_score": previous_score,
        "health_status": status,
        "trend": health_trend(score, previous_score),
        "health_capped_by": [ids[i] for i in capped],
        "kpis": kpis,
    }


def _add_percentiles(scored: dict[str, dict], account_tiers: dict[str, str], tiers_cfg: Tiers, kpi_defs) -> None:
    by_tier = defaultdict(dict)
    for account_id, entry in scored.items():
        by_tier[account_tiers[account_id]][account_id] = entry
    for tier_name, by_id in by_tier.items():
        tier = tiers_cfg.tiers.get(tier_name)
        if tier is None:
            continue
        for kpi_id in tier.kpis:
            values = {a: e["kpis"][kpi_id]["value"] for a, e in by_id.items() if e["kpis"][kpi_id]["value"] is not None}
            for account_id, rank in percentile_ranks(values, kpi_defs[kpi_id].direction).items():
                by_id[account_id]["kpis"][kpi_id]["percentile"] = rank


def _health_summary(results: list[dict]) -> dict:
    counts = Counter(e["health_status"] for e in results)
    scores = [e["health_score"] for e in results if e["health_score"] is not None]
    return {
        "account_count": len(results),
        "health_distribution": {status: counts.get(status, 0) for status in HEALTH_STATUSES},
        "average_health_score": sum(scores) / len(scores) if scores else None,
    }


def _tier_summaries(results: list[dict], tiers_cfg: Tiers, kpi_defs, movements: dict) -> dict:
    names = list(tiers_cfg.tiers)
    names += sorted({e["tier"] for e in results} - set(names))
    names += sorted(set(movements) - set(names))
    out = {}
    for name in names:
        members = [e for e in results if e["tier"] == name]
        tier = tiers_cfg.tiers.get(name)
        label = tier.label if tier is not None and tier.label is not None else None
        summary = {
            "label": {"en": label.en, "zh_CN": label.zh_CN or label.en} if label
            else {"en": name.replace("_", " ").capitalize(), "zh_CN": "未分层" if name == UNASSIGNED else name},
            **_health_summary(members),
            "kpis": {},
        }
        for kpi_id, setting in (tier.kpis.items() if tier is not None else ()):
            values = [e["kpis"][kpi_id]["value"] for e in members if e["kpis"][kpi_id]["value"] is not None]
            kdef = kpi_defs[kpi_id]
            summary["kpis"][kpi_id] = {
                "label": {"en": kdef.label_en, "zh_CN": kdef.label_zh or kdef.label_en},
                "unit": kdef.unit, "direction": kdef.direction,
                "weight": setting.weight, "target": setting.target, "green": setting.green,
                "amber": setting.amber, "critical": setting.critical,
                "median": float(np.median(values)) if values else None, "n": len(values),
            }
        summary.update(movements.get(name) or {})
        out[name] = summary
    return out


# --------------------------------------------------------------------------- inputs

_MISSING = (None, 0, "no_data", "not computed")


def _finite(x) -> float | None:
    if x is None or x is pd.NA:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _index(frame: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float | None, int, str, str]]:
    """(account_id, kpi, period) -> (value, n, status, note); a non-finite value is no data."""
    if frame is None or frame.empty:
        return {}
    out = {}
    notes = frame["note"] if "note" in frame else [""] * len(frame)
    for account_id, kpi, label, value, n, status, note in zip(
        frame["account_id"], frame["kpi"], frame["period"], frame["value"], frame["n"], frame["status"], notes
    ):
        value = _finite(value)
        status = "no_data" if value is None else str(status)
        n = _finite(n)
        out[(str(account_id), str(kpi), str(label))] = (
            value, int(n) if n is not None else 0, status, "" if note is None or note is pd.NA or note != note else str(note)
        )
    return out


def _columns(con, table: str) -> set[str]:
    rows = con.execute(
        "select column_name from information_schema.columns where table_name = ? and table_schema = current_schema()",
        [table],
    ).fetchall()
    return {r[0] for r in rows}


def _accounts(con) -> list[dict]:
    present = _columns(con, "accounts")
    select = ", ".join(f if f in present else f"null as {f}" for f in _ACCOUNT_FIELDS)
    rows = con.execute(f"select {select} from accounts order by account_id").fetchall()
    return [dict(zip(_ACCOUNT_FIELDS, row)) for row in rows]


def _listed(account: dict, period: Period) -> bool:
    since, churned = _as_date(account["since"]), _as_date(account["churned_on"])
    return (since is None or since < period.end) and (churned is None or churned >= period.start)


def _as_date(x) -> date | None:
    if x is None or x is pd.NaT:
        return None
    return x.date() if isinstance(x, datetime) else x


def assign_tiers(con, tiers_cfg: Tiers, period: Period, accounts: list[dict]) -> dict[str, str]:
    """account_id -> configured tier name, or "unassigned"."""
    if tiers_cfg.tier_rule is None:
        return {
            a["account_id"]: tier if (tier := (a["tier"] or "").strip()) in tiers_cfg.tiers else UNASSIGNED
            for a in accounts
        }
    revenue = {}
    if {"account_id", "date", "amount"} <= _columns(con, "orders"):
        revenue = dict(con.execute(
            "select account_id, round(fsum(amount), 6) from orders where date >= ? and date < ? group by account_id",
            [add_months(period.end, -12), period.end],
        ).fetchall())
    bands = sorted(tiers_cfg.tier_rule.revenue_at_least.items(), key=lambda kv: -kv[1])
    return {
        a["account_id"]: next((name for name, minimum in bands if float(revenue.get(a["account_id"]) or 0) >= minimum),
                              UNASSIGNED)
        for a in accounts
    }


def _clean(x):
    """JSON-ready copy: NaN/inf -> None, numpy -> Python, dates -> ISO strings, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if x is None or x is pd.NA or x is pd.NaT:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, datetime):
        return x.isoformat()
    if isinstance(x, date):
        return x.isoformat()
    return x


# --------------------------------------------------------------------------- flat output

def scorecard_frame(scorecard: dict) -> pd.DataFrame:
    """One row per account × KPI (one row with an empty kpi for accounts without KPIs), for csv/parquet."""
    rows = []
    for account in scorecard["accounts"]:
        base = {
            "period": account["period"], "account_id": account["account_id"], "name": account["name"],
            "tier": account["tier"], "owner_email": account["owner_email"], "owner_name": account["owner_name"],
            "region": account["region"], "health_score": account["health_score"],
            "previous_health_score": account["previous_health_score"], "health_status": account["health_status"],
            "trend": account["trend"], "warnings": "; ".join(w["reason"] for w in account["warnings"]),
        }
        kpis = account["kpis"] or {None: {}}
        for kpi_id, k in kpis.items():
            rows.append({
                **base, "kpi": kpi_id,
                **{f: k.get(f) for f in ("value", "unit", "previous", "change", "target", "status", "score",
                                         "percentile", "n", "note")},
            })
    columns = ["period", "account_id", "name", "tier", "owner_email", "owner_name", "region", "health_score",
               "previous_health_score", "health_status", "trend", "warnings", "kpi", "value", "unit", "previous",
               "change", "target", "status", "score", "percentile", "n", "note"]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("health_score", "previous_health_score", "value", "previous", "change", "target", "score", "percentile"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["n"] = frame["n"].astype("Int64")
    return frame
