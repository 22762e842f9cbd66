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

The result is JSON-ready: NaN and infinities are None, numbers are Python ones and dates ISO strings
(``_clean`` for the small parts; the KPI dicts are built that way).

How it runs (the numbers are those of the rules above, computed per tier for all its accounts at
once): the KPI library computes each KPI only for the accounts whose tier uses it (and p_alive,
which the warnings read, for all) straight into arrays (``KpiCells``: KPI × account × period);
status, score and health are numpy over those arrays, with the same float operations in the same
order as the scalar rule functions, so they give the same numbers to the last bit. A ``kpi_frame``
given by the caller is read into the same arrays. The warnings' facts and the portfolio KPIs read only
the loaded tables, so their queries run on a second connection (a cursor of the same database) in a
thread of their own while the KPIs are computed: the KPI work leaves a core idle whenever it is in
Python. The revenue and order lines they need are sums over the KPIs' order buckets (``OrderSpans``,
answered once the KPI tables over orders are made, before the CLV fit), so the orders are not scanned
again for them, and their queries run alongside the fit.
"""
from __future__ import annotations

import gc
import math
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime

import numpy as np
import pandas as pd

from ..config import ProjectConfig
from ..config.models import HealthBands, TierKpi, Tiers
from .cells import LOW_SAMPLE, NO_DATA, KpiCells
from .kpis import OrderSpans, compute_kpi_arrays, resolve_kpis
from .periods import Period, add_months, trend_periods
from .portfolio import UNASSIGNED, portfolio_kpis, revenue_by_account, revenue_from_totals, revenue_spans
from .warnings import Facts, early_warnings, order_windows
from .tables import table_columns

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


@contextmanager
def _gc_paused():
    """The scorecard builds some 10^5 small dicts and lists (a tree, no cycles): Python's cyclic garbage
    collector would walk them again and again as they are made, for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_scorecard(con, config: ProjectConfig, period: Period, kpi_frame: pd.DataFrame | None = None) -> dict:
    """The whole scorecard of ``period`` as a JSON-ready dict (see the module docstring for the rules).

    ``kpi_frame`` (the long frame of ``compute_kpis`` over the 12 trend periods) is computed when
    not given.
    """
    with _gc_paused():
        return _build_scorecard(con, config, period, kpi_frame)


def _build_scorecard(con, config: ProjectConfig, period: Period, kpi_frame: pd.DataFrame | None) -> dict:
    tiers_cfg = config.tiers
    periods = trend_periods(period, TREND_LENGTH)
    kpi_defs = resolve_kpis(config.kpis, kpi_ids_for(tiers_cfg))
    all_accounts = _accounts(con)
    account_tiers = assign_tiers(con, tiers_cfg, period, all_accounts)
    listed = [a for a in all_accounts if _listed(a, period)]
    listed_tiers = {a["account_id"]: account_tiers[a["account_id"]] for a in listed}
    spans = OrderSpans(revenue_spans(period, order_windows(period)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        side = pool.submit(_side_facts, con, period, account_tiers, list(listed_tiers), spans)
        try:
            scores, frame, p_alive = _scores_of(con, config, period, periods, kpi_defs, listed_tiers, kpi_frame,
                                                spans)
        finally:
            spans.answer(None)  # if the KPIs did not: the side thread reads the orders itself, or stops
        facts, movements = side.result()
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
        con, frame, period, listed_tiers,
        {name: tier.warnings for name, tier in tiers_cfg.tiers.items()},
        health_now, health_prev, locale=config.project.locale, p_alive=p_alive, facts=facts,
    )
    for entry in results:
        entry["warnings"] = warnings.get(entry["account_id"], [])

    tiers = _tier_summaries(results, tiers_cfg, kpi_defs, movements["tiers"])
    # The parts score_accounts and early_warnings build are JSON-ready already: only the fields read
    # from the accounts table that are not text (dates) go through _clean, in the entries made above.
    fields = [field for field in _ACCOUNT_FIELDS if results and field in results[0]]
    for entry in results:
        for field in fields:
            if not isinstance(entry[field], str):
                entry[field] = _clean(entry[field])
    return {
        **_clean({
            "period": period.label,
            "period_start": period.start,
            "period_end": period.end,
            "currency": config.project.currency,
        }),
        "accounts": results,
        **_clean({"tiers": tiers, "portfolio": {**movements["portfolio"], **_health_summary(results)}}),
    }


def _scores_of(con, config: ProjectConfig, period: Period, periods: list[Period], kpi_defs,
               listed_tiers: dict[str, str], kpi_frame: pd.DataFrame | None, order_spans: OrderSpans | None = None):
    """(score_accounts' entries, the KPI frame the warnings read or None, p_alive per account or None)."""
    tiers_cfg = config.tiers
    if kpi_frame is not None:
        return score_accounts(kpi_frame, listed_tiers, tiers_cfg, kpi_defs, periods), kpi_frame, None
    cells = compute_kpi_cells(
        con, kpi_defs, periods, listed_tiers, tiers_cfg,
        fiscal_year_start=config.project.fiscal_year_start,
        clv_discount_rate=config.kpis.clv_monthly_discount_rate, order_spans=order_spans,
    )
    return score_accounts(cells, listed_tiers, tiers_cfg, kpi_defs, periods), None, cells.last_values("p_alive")


def _side_facts(con, period: Period, account_tiers: dict[str, str], listed_ids: list[str], spans: OrderSpans):
    """The warnings' facts and the portfolio KPIs, on a connection of their own (see _build_scorecard).
    The portfolio's revenue and the warnings' order lines are the order totals of ``spans``, which the KPI
    library answers from its order buckets; without them (no KPI over orders), one scan of the orders."""
    totals = spans.totals.result()
    cursor = con.cursor()
    try:
        if totals is None:
            now, prior, lines = revenue_by_account(cursor, period, order_windows(period))
        else:
            now, prior, lines = revenue_from_totals(totals)
        return (Facts(cursor, period, listed_ids, line_counts=lines),
                portfolio_kpis(cursor, period, account_tiers, revenue=(now, prior)))
    finally:
        cursor.close()


def compute_kpi_cells(con, kpi_defs, periods: list[Period], account_tiers: dict[str, str], tiers_cfg: Tiers,
                      fiscal_year_start: int = 1, clv_discount_rate: float = 0.01,
                      order_spans: OrderSpans | None = None) -> KpiCells:
    """The KPI cells the scorecard of ``account_tiers`` reads: each tier KPI for the accounts of the
    tiers that use it, the warning KPIs for every account (compute_kpis' values, computed only there)."""
    ids = sorted(account_tiers)
    scopes: dict[str, set[str]] = defaultdict(set)
    for account_id in ids:
        tier = tiers_cfg.tiers.get(account_tiers[account_id])
        for kpi_id in (tier.kpis if tier is not None else ()):
            scopes[kpi_id].add(account_id)
    for kpi_id in WARNING_KPIS:
        scopes[kpi_id].update(ids)
    arrays = compute_kpi_arrays(con, kpi_defs, periods, scopes, fiscal_year_start=fiscal_year_start,
                                clv_discount_rate=clv_discount_rate, order_spans=order_spans)
    kpi_ids = list(dict.fromkeys([*(k for tier in tiers_cfg.tiers.values() for k in tier.kpis), *WARNING_KPIS]))
    return KpiCells.from_arrays(arrays, kpi_ids, ids, [p.label for p in periods])


def score_accounts(kpi_frame: pd.DataFrame | KpiCells | None, account_tiers: dict[str, str], tiers_cfg: Tiers,
                   kpi_defs, periods: list[Period]) -> dict[str, dict]:
    """The scoring part of each account's entry: health score, previous health score, status, trend,
    ``health_capped_by`` and the KPI dicts with tier percentiles. ``periods`` is oldest first and
    ends with the period being scored; accounts of unconfigured tiers are "not_scored".

    ``kpi_frame`` is the long KPI frame or the same as ``KpiCells``. The entries are JSON-ready
    (Python floats, None for no value). Every rule of the module docstring is applied to all the
    accounts of a tier at once, with numpy, in the same float operations and order as the scalar
    functions above (``kpi_status``, ``kpi_score``, ``health``), so the numbers are the same.
    """
    labels = [p.label for p in periods]
    ids = sorted(account_tiers)
    members: dict[str, list[str]] = defaultdict(list)
    for account_id in ids:
        members[account_tiers[account_id]].append(account_id)
    kpi_ids = list(dict.fromkeys(k for name in members if (tier := tiers_cfg.tiers.get(name)) is not None
                                 for k in tier.kpis))
    if isinstance(kpi_frame, KpiCells):
        cells = kpi_frame.select(kpi_ids, ids)
        if cells.labels != labels:
            raise ValueError(f"the KPI cells are for {cells.labels}, not {labels}")
    else:
        cells = KpiCells.from_frame(kpi_frame, kpi_ids, ids, labels)
    kpi_pos = {k: i for i, k in enumerate(cells.kpi_ids)}
    account_pos = {a: i for i, a in enumerate(cells.account_ids)}
    scored = {}
    for name, accounts in members.items():
        tier = tiers_cfg.tiers.get(name)
        if tier is None:
            for account_id in accounts:
                scored[account_id] = {"health_score": None, "previous_health_score": None,
                                      "health_status": "not_scored", "trend": None, "health_capped_by": [],
                                      "health_trend": [], "kpis": {}}
        else:
            scored.update(_score_tier(accounts, tier, tiers_cfg, kpi_defs, cells, kpi_pos, account_pos))
    return {account_id: scored[account_id] for account_id in ids}


# Status codes of the vectorised rules (kpi_status's strings, by index).
_STATUS_NAMES = ("green", "amber", "red", "ok", "no_data", "low_sample")
_GREEN, _AMBER, _RED, _OK, _NO_DATA, _LOW = range(6)
_HEALTH_NAMES = ("green", "amber", "red", "insufficient_data")


def _status_codes(value: np.ndarray, frame_status: np.ndarray, setting: TierKpi, direction: str,
                  target: np.ndarray, has_target: np.ndarray) -> np.ndarray:
    """``kpi_status`` for an array of values (NaN: None) and frame statuses (cells codes)."""
    with np.errstate(invalid="ignore"):
        def better(threshold):
            return value <= threshold if direction == "down" else value >= threshold

        if setting.green is not None or setting.amber is not None:
            green = better(setting.green) if setting.green is not None else np.zeros(value.shape, bool)
            amber = better(setting.amber) if setting.amber is not None else np.zeros(value.shape, bool)
            codes = np.where(green, _GREEN, np.where(amber, _AMBER, _RED))
        else:
            codes = np.where(has_target, np.where(better(target), _GREEN, _RED), _OK)
    no_data = (frame_status == NO_DATA) | np.isnan(value)
    return np.where(no_data, _NO_DATA, np.where(frame_status == LOW_SAMPLE, _LOW, codes)).astype(np.int8)


def _scores(value: np.ndarray, codes: np.ndarray, setting: TierKpi, scoring: str) -> np.ndarray:
    """``kpi_score`` for arrays; NaN where the score is None."""
    scored = codes <= _RED
    green, amber = setting.green, setting.amber
    if scoring == "linear" and green is not None and amber is not None and green != amber:
        with np.errstate(all="ignore"):
            raw = 100.0 * (value - amber) / (green - amber)
        # min(100.0, max(0.0, x)) exactly: max keeps 0.0 unless x > 0.0 (so -0.0 becomes 0.0).
        raw = np.where(raw > 0.0, raw, 0.0)
        raw = np.where(raw < 100.0, raw, 100.0)
    else:
        raw = np.select([codes == _GREEN, codes == _AMBER], [BAND_SCORES["green"], BAND_SCORES["amber"]],
                        BAND_SCORES["red"])
    return np.where(scored, raw, np.nan)


def _health_arrays(weights: list[float], can_score: list[np.ndarray], codes: list[np.ndarray],
                   scores: list[np.ndarray], critical: list[bool], bands: HealthBands, size: int):
    """``health`` for every account at once: (score (NaN: None), status code, capping mask per KPI).

    The sums run over the KPIs in tier order, like ``health``'s, so they round the same way."""
    total, covered, weighted = np.zeros(size), np.zeros(size), np.zeros(size)
    for w, can, code, score in zip(weights, can_score, codes, scores):
        total = np.where(can, total + w, total)
        scored = code <= _RED
        covered = np.where(scored, covered + w, covered)
        weighted = np.where(scored, weighted + w * np.where(scored, score, 0.0), weighted)
    insufficient = (total <= 0) | (covered <= 0) | (covered < total / 2)
    with np.errstate(all="ignore"):
        score = weighted / covered
    score = np.where(score > 0.0, score, 0.0)
    score = np.where(score < 100.0, score, 100.0)
    status = np.where(score < bands.red_below, 2, np.where(score >= bands.green_from, 0, 1))
    red_critical = [(code == _RED) if is_critical else np.zeros(size, bool) for code, is_critical in zip(codes, critical)]
    capping = np.logical_or.reduce(red_critical, initial=False) if red_critical else np.zeros(size, bool)
    capped = ~insufficient & (status == 0) & capping
    status = np.where(capped, 1, status)
    status = np.where(insufficient, 3, status)
    score = np.where(insufficient, np.nan, score)
    return score, status, [mask & capped for mask in red_critical]


def _py(values: np.ndarray) -> list:
    """Python floats, None for NaN or infinities."""
    out = values.astype(object)
    out[~np.isfinite(values)] = None
    return out.tolist()


def _score_tier(accounts: list[str], tier, tiers_cfg: Tiers, kpi_defs, cells: KpiCells, kpi_pos, account_pos) -> dict:
    size, periods = len(accounts), len(cells.labels)
    rows = np.array([account_pos[a] for a in accounts], dtype=np.int64)
    overrides = tiers_cfg.overrides
    with_overrides = [(i, overrides[a]) for i, a in enumerate(accounts) if overrides.get(a)]
    ids = list(tier.kpis)
    weights, critical = [], []
    now, prev = {"can": [], "codes": [], "scores": []}, {"can": [], "codes": [], "scores": []}
    columns = []  # per KPI: the per-account pieces of its dict
    inputs = []   # per KPI: what scoring any period needs (the health trend scores all of them)
    for kpi_id, setting in tier.kpis.items():
        kdef = kpi_defs[kpi_id]
        k = kpi_pos[kpi_id]
        targets = [setting.target] * size
        shown_targets = [_clean(setting.target)] * size  # JSON-ready, cleaned once per distinct target
        for i, own in with_overrides:
            targets[i] = own.get(kpi_id, setting.target)
            shown_targets[i] = _clean(targets[i])
        has_target = np.array([t is not None for t in targets], dtype=bool)
        target = np.array([np.nan if t is None else t for t in targets], dtype=float)
        thresholds = setting.green is not None or setting.amber is not None
        can = has_target | thresholds
        series = cells.value[k][rows]                       # accounts × periods
        frame_status = cells.status[k][rows]
        value = series[:, -1]
        previous = series[:, -2] if periods > 1 else np.full(size, np.nan)
        previous_status = frame_status[:, -2] if periods > 1 else np.full(size, NO_DATA, np.int8)
        codes = _status_codes(value, frame_status[:, -1], setting, kdef.direction, target, has_target)
        prev_codes = _status_codes(previous, previous_status, setting, kdef.direction, target, has_target)
        scores = _scores(value, codes, setting, tiers_cfg.scoring)
        inputs.append((series, frame_status, setting, kdef.direction, target, has_target, can))
        weights.append(setting.weight)
        critical.append(setting.critical)
        for side, c, s in ((now, codes, scores), (prev, prev_codes, _scores(previous, prev_codes, setting,
                                                                            tiers_cfg.scoring))):
            side["can"].append(can)
            side["codes"].append(c)
            side["scores"].append(s)
        with np.errstate(all="ignore"):
            change = value - previous
        label = (kdef.label_en, kdef.label_zh or kdef.label_en)
        columns.append((kpi_id, kdef, label, shown_targets, _py(value), _py(previous), _py(change),
                        [_STATUS_NAMES[c] for c in codes.tolist()], _py(scores),
                        _percentiles(value, kdef.direction), cells.n[k][rows, -1].tolist(),
                        cells.note[k][rows].tolist(), _py(series)))
    bands = tiers_cfg.health_bands
    score, status, capped = _health_arrays(weights, now["can"], now["codes"], now["scores"], critical, bands, size)
    previous_score, _, _ = _health_arrays(weights, prev["can"], prev["codes"], prev["scores"], critical, bands, size)
    history = _health_history(inputs, weights, critical, bands, tiers_cfg.scoring, size, periods)
    with np.errstate(invalid="ignore"):
        change = score - previous_score
    trends = [None if c != c else "flat" if abs(c) <= FLAT_POINTS else "up" if c > 0 else "down"
              for c in change.tolist()]
    capped_by = np.stack(capped, axis=1) if capped else np.zeros((size, 0), bool)
    per_kpi = []
    for kpi_id, kdef, label, targets, values, previous, changes, statuses, scores, ranks, ns, notes, trend in columns:
        unit, direction, window, (en, zh) = kdef.unit, kdef.direction, kdef.window, label
        per_kpi.append([
            {"value": v, "unit": unit, "previous": pv, "change": ch, "target": tg, "status": st, "score": sc,
             "percentile": rk, "n": n, "note": note, "trend": tr, "label": {"en": en, "zh_CN": zh},
             "direction": direction, "window": window}
            for v, pv, ch, tg, st, sc, rk, n, note, tr
            in zip(values, previous, changes, targets, statuses, scores, ranks, ns, notes, trend)
        ])
    capped_ids = {i: [ids[j] for j in np.flatnonzero(capped_by[i])] for i in np.flatnonzero(capped_by.any(axis=1))}
    out = {}
    labels = cells.labels
    for i, (account_id, health_score, previous_health, health_status, trend, history_row, *kpis) in enumerate(zip(
            accounts, _py(score), _py(previous_score), [_HEALTH_NAMES[c] for c in status.tolist()], trends,
            zip(*history) if history else [()] * size, *per_kpi)):
        out[account_id] = {
            "health_score": health_score,
            "previous_health_score": previous_health,
            "health_status": health_status,
            "trend": trend,
            "health_capped_by": capped_ids.get(i, []),
            "health_trend": [{"period": label, "health_score": h} for label, h in zip(labels, history_row)],
            "kpis": dict(zip(ids, kpis)),
        }
    return out


def _health_history(inputs, weights, critical, bands, scoring: str, size: int, periods: int) -> list[list]:
    """Health score of every account in each trend period (oldest first), scored with today's tier settings."""
    history = []
    for p in range(periods):
        cans, codes, scores = [], [], []
        for series, frame_status, setting, direction, target, has_target, can in inputs:
            code = _status_codes(series[:, p], frame_status[:, p], setting, direction, target, has_target)
            cans.append(can)
            codes.append(code)
            scores.append(_scores(series[:, p], code, setting, scoring))
        history.append(_py(_health_arrays(weights, cans, codes, scores, critical, bands, size)[0]))
    return history


def _percentiles(values: np.ndarray, direction: str) -> list:
    """``percentile_ranks`` over the accounts with a value (None for the others), in account order."""
    out = [None] * len(values)
    have = np.flatnonzero(~np.isnan(values))
    if len(have):
        series = pd.Series(values[have], dtype=float)
        if direction == "down":
            series = -series
        ranks = (series.rank(pct=True, method="average") * 100).to_numpy()
        for i, rank in zip(have.tolist(), ranks.tolist()):
            out[i] = rank
    return out


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

def _accounts(con) -> list[dict]:
    present = table_columns(con, "accounts")
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
    if {"account_id", "date", "amount"} <= table_columns(con, "orders"):
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
