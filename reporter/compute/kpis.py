"""The KPI library: one small SQL query (or function) per KPI, every period in one query.

``resolve_kpis`` merges the catalog's metadata with the options of kpis.yaml (and
builds the custom KPIs); ``compute_kpis`` evaluates them on the canonical tables of a
DuckDB connection and returns one row per account × KPI × period.

A built-in KPI is a function registered with ``@builtin(id, ...)`` that returns a query
with the columns ``account_id, pidx, value, n, reason, note`` for the accounts it has
data for (``pidx`` indexes the periods). It reads the shared per-call tables of
kpi_sql.py: window bounds, order totals per window, event totals per window, or the
rows of a window. ``_wrap`` then adds every other account, the status and the note:

* ``value`` NULL (or not finite) → no_data, with ``reason`` or the registry's default
  ("no NPS responses in the last 90 days");
* ``n`` below the KPI's min_sample → low_sample (value kept); min_sample defaults to
  kpis.yaml's ``min_sample`` for survey KPIs and to 0 for every other KPI;
* accounts absent from the query get ``absent``: 0 for totals and counts (an account
  without orders has revenue 0, not "unknown": real data, scored by the thresholds);
* ``compare``: the KPI compares with an earlier window, so an account whose ``since``
  is after that window's start is no_data ("account younger than the window");
* ``rate``: a per-month rate notes when the account is younger than its window;
* a period that ends before the account's ``since`` is no_data for every KPI.

``compute_kpi_arrays`` is the scorecard's way in: the same queries, each KPI run only for the
accounts that need it (a scope; a formula and its inputs share one), without the key columns and
with the note of the last period only, scattered straight into numpy arrays.

p_alive and clv_predicted: BG/NBD and Gamma-Gamma are fitted ONCE, on the order
history up to the end of the latest period given, and those parameters score every
period of the trend. The fit dominates their run time (some 0.1-0.3 s per fit on 10,000
accounts) while population parameters barely move between adjacent months; each
period still uses its own frequency, recency, age and spend.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..config.catalog import BUILTIN_KPIS
from ..config.formula import Formula
from . import clv
from .kpi_sql import DATE_COLUMNS, WINDOW_PHRASES, Tables, decompose, lit
from .periods import Period

COLUMNS = ["account_id", "kpi", "period", "value", "n", "status", "note"]
# Status codes of KpiArrays and of the lean KPI queries (the statuses of the frame, by index).
STATUS_CODES = ("ok", "low_sample", "no_data")
SURVEY_KPIS = ("csat", "nps", "ces")
# The default min_sample of every KPI that is not a survey KPI (built-in, custom aggregate over
# another entity, formula): a total over no rows (revenue 0, no complaints, no interactions) is
# real data, not a small sample, so it gets a status from the thresholds. Survey KPIs default to
# kpis.yaml's ``min_sample``; a KPI's own ``min_sample`` option overrides either.
DEFAULT_MIN_SAMPLE = 0


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class KpiDef:
    """A resolved KPI: built-in metadata merged with kpis.yaml options, or a custom KPI."""

    id: str
    label_en: str
    label_zh: str
    unit: str
    direction: str
    window: str
    min_sample: int
    needs: tuple[str, ...]
    definition: str
    method: str | None = None
    expression: str | None = None
    denominator: str | None = None
    entity: str | None = None
    formula: str | None = None


def _formula_names(text: str) -> list[str]:
    """KPI ids of a formula in order of appearance (Formula.names is a set); min/max/abs are no KPIs."""
    tree = Formula(text).tree
    functions = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    names = [node for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in functions]
    return list(dict.fromkeys(node.id for node in sorted(names, key=lambda node: node.col_offset)))


def resolve_kpis(kpis_config, ids: Iterable[str]) -> dict[str, KpiDef]:
    """KpiDefs for ``ids`` plus every KPI their formulas need (requested ids first, in order)."""
    options = kpis_config.kpis
    resolved: dict[str, KpiDef] = {}

    def resolve(kpi_id: str, chain: tuple[str, ...]) -> KpiDef:
        if kpi_id in resolved:
            return resolved[kpi_id]
        if kpi_id in chain:
            raise ValueError(f"formula of {chain[0]} refers back to itself through {' -> '.join((*chain, kpi_id))}")
        opts = options.get(kpi_id)
        info = BUILTIN_KPIS.get(kpi_id)
        custom = opts is not None and bool(opts.expression or opts.formula)
        if info is None and not custom:
            raise ValueError(f'unknown KPI "{kpi_id}": not a built-in and not defined in kpis.yaml')
        label = opts.label if opts is not None else None
        if custom and opts.formula:
            inputs = [resolve(name, (*chain, kpi_id)) for name in _formula_names(opts.formula)]
            needs = tuple(dict.fromkeys(e for d in inputs for e in d.needs))
            window = opts.window or (inputs[0].window if inputs else "month")
            min_sample = opts.min_sample if opts.min_sample is not None else DEFAULT_MIN_SAMPLE
            definition = opts.definition or f"= {opts.formula.strip()}"
        elif custom:
            needs = (opts.entity,)
            window = opts.window or "month"
            default_sample = kpis_config.min_sample if opts.entity == "surveys" else DEFAULT_MIN_SAMPLE
            min_sample = opts.min_sample if opts.min_sample is not None else default_sample
            definition = opts.definition or (
                f"{opts.expression.strip()}" + (f" / {opts.denominator.strip()}" if opts.denominator else "")
                + f" over {opts.entity}")
        else:
            needs = info.needs
            window = (opts.window if opts else None) or info.window
            default_sample = kpis_config.min_sample if kpi_id in SURVEY_KPIS else DEFAULT_MIN_SAMPLE
            min_sample = opts.min_sample if opts is not None and opts.min_sample is not None else default_sample
            definition = (opts.definition if opts else None) or info.definition
        method = opts.method if opts is not None else None
        if kpi_id == "csat":
            method = method or "top2"
        unit = (opts.unit if opts else None) or (info.unit if info and not custom else "number")
        if kpi_id == "csat" and method == "mean" and not (opts and opts.unit):
            unit = "number"
        label_en = label.en if label else (info.en if info and not custom else kpi_id)
        label_zh = (label.zh_CN if label and label.zh_CN else None) or (
            info.zh_CN if info and not custom else label_en)
        kdef = KpiDef(
            id=kpi_id, label_en=label_en, label_zh=label_zh, unit=unit,
            direction=(opts.direction if opts else None) or (info.direction if info and not custom else "up"),
            window=window, min_sample=int(min_sample), needs=tuple(needs), definition=definition, method=method,
            expression=opts.expression if custom else None, denominator=opts.denominator if custom else None,
            entity=opts.entity if custom else None, formula=opts.formula if custom else None,
        )
        resolved[kpi_id] = kdef
        return kdef

    wanted = list(dict.fromkeys(ids))
    for kpi_id in wanted:
        resolve(kpi_id, ())
    return {k: resolved[k] for k in [*wanted, *(k for k in resolved if k not in wanted)]}


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Builtin:
    query: Callable[[Tables, KpiDef], str]
    noun: tuple[str, str]            # what n counts: ("response", "responses")
    empty: str                       # "no <empty> <window phrase>" when an account has nothing
    absent: float | None = None      # value of an account without rows (totals and counts: 0)
    compare: str | None = None       # "prior" | "ye": needs the account to exist through that window
    rate: bool = False               # per month of the window: note when the account is younger
    requires: tuple[tuple[str, ...], ...] | None = None  # groups of tables, one of each must have rows


KPIS: dict[str, Builtin] = {}


def builtin(kpi_id: str, **options) -> Callable:
    def register(func):
        KPIS[kpi_id] = Builtin(func, **options)
        return func

    return register


ORDERS = ("order", "orders")
TICKETS = ("ticket", "tickets")
INTERACTIONS = ("interaction", "interactions")
RESPONSES = ("response", "responses")


def _events(t: Tables, k: KpiDef, name: str, source: str, value: str, n: str = "e.cnt", shift: str = "") -> str:
    """A keyless event source (see Tables.event_stats) turned into one KPI value per account and period;
    ``value`` and ``n`` are expressions over e (cnt, total, last_day) and w (the windows)."""
    return (f"SELECT e.account_id, e.pidx, {value} AS value, {n} AS n, NULL AS reason, NULL AS note "
            f"FROM {t.event_stats(name, source, k.window, shift)} e JOIN {t.windows(k.window)} w USING (pidx)")


# --------------------------------------------------------------------------- surveys


def _survey(t: Tables, k: KpiDef, kind: str, value: str) -> str:
    """Mean of ``value`` (an expression over score) over the responses of one kind."""
    source = (f"SELECT account_id, '' AS key, date AS day, ({value})::DOUBLE AS value FROM surveys "
              f"WHERE kind = {lit(kind)} AND score IS NOT NULL")
    return _events(t, k, f"{kind}_{'mean' if value == 'score' else 'share'}", source, "e.total / e.cnt")


@builtin("csat", noun=RESPONSES, empty="CSAT responses")
def _csat(t, k):
    return _survey(t, k, "csat", "score" if k.method == "mean" else "(score >= 4)::INTEGER")


@builtin("nps", noun=RESPONSES, empty="NPS responses")
def _nps(t, k):
    # The mean of +100 per promoter, -100 per detractor is % promoters - % detractors.
    return _survey(t, k, "nps", "CASE WHEN score >= 9 THEN 100 WHEN score <= 6 THEN -100 ELSE 0 END")


@builtin("ces", noun=RESPONSES, empty="CES responses")
def _ces(t, k):
    return _survey(t, k, "ces", "score")


# --------------------------------------------------------------------------- orders


def _orders(t: Tables, k: KpiDef, value: str, n: str = "s.lines", reason: str = "NULL", note: str = "NULL") -> str:
    """A query over the window's order totals (alias s, windows columns available)."""
    return (f"SELECT s.account_id, s.pidx, {value} AS value, {n} AS n, {reason} AS reason, {note} AS note "
            f"FROM {t.order_stats(k.window)} s JOIN {t.windows(k.window)} w USING (pidx)")


def _window_months(k: KpiDef, first: str) -> str:
    """Months of the window; for lifetime, from the account's first event (SQL ``first``) to the window end."""
    if k.window != "lifetime":
        return "w.w_months"
    return f"(greatest(date_diff('day', {first}, w.w_hi), 1) / 30.4375)"


_MARGIN_NOTE = ("CASE WHEN s.margin_lines < s.lines THEN (s.lines - s.margin_lines) || ' of ' || s.lines "
                "|| ' orders have no cost or margin and are left out' END")


@builtin("revenue", noun=ORDERS, empty="orders", absent=0.0)
def _revenue(t, k):
    return _orders(t, k, "s.amount")


def _compared(t: Tables, k: KpiDef, shift: str, value: str, missing: str) -> str:
    """Current window against an earlier one (alias c and p); every account of the grid gets a row."""
    return (f"SELECT g.account_id, g.pidx, CASE WHEN coalesce(p.amount, 0) > 0 THEN {value} END AS value, "
            "coalesce(c.lines, 0) + coalesce(p.lines, 0) AS n, "
            f"CASE WHEN coalesce(p.amount, 0) <= 0 THEN {missing} END AS reason, NULL AS note "
            f"FROM {t.grid(k.window)} g LEFT JOIN {t.order_stats(k.window)} c USING (account_id, pidx) "
            f"LEFT JOIN {t.order_stats(k.window, shift)} p USING (account_id, pidx)")


def _span(lo: str, hi: str) -> str:
    return f"strftime({lo}, '%Y-%m-%d') || ' to ' || strftime({hi} - 1, '%Y-%m-%d')"


@builtin("revenue_growth", noun=ORDERS, empty="orders", compare="ye")
def _revenue_growth(t, k):
    return _compared(t, k, "ye", "coalesce(c.amount, 0) / p.amount - 1",
                     f"'no revenue a year earlier (' || {_span('g.w_ye_lo', 'g.w_ye_hi')} || ')'")


@builtin("net_revenue_retention", noun=ORDERS, empty="orders", compare="prior")
def _nrr(t, k):
    return _compared(t, k, "prior", "coalesce(c.amount, 0) / p.amount",
                     f"'no revenue in the prior window (' || {_span('g.w_prior_lo', 'g.w_prior_hi')} || ')'")


@builtin("gross_revenue_retention", noun=ORDERS, empty="orders", compare="prior")
def _grr(t, k):
    return _compared(t, k, "prior", "least(coalesce(c.amount, 0), p.amount) / p.amount",
                     f"'no revenue in the prior window (' || {_span('g.w_prior_lo', 'g.w_prior_hi')} || ')'")


@builtin("gross_margin", noun=ORDERS, empty="orders")
def _gross_margin(t, k):
    phrase = WINDOW_PHRASES[k.window]
    return _orders(
        t, k, "s.margin / nullif(s.margin_amount, 0)", n="s.margin_lines",
        reason=(f"CASE WHEN s.margin_lines = 0 THEN 'no cost or margin on the ' || s.lines || ' orders {phrase}' "
                f"ELSE 'no revenue {phrase}' END"),
        note=_MARGIN_NOTE)


@builtin("clv_historical", noun=ORDERS, empty="orders", absent=0.0)
def _clv_historical(t, k):
    return _orders(
        t, k, "CASE WHEN s.margin_lines > 0 THEN s.margin END", n="s.margin_lines",
        reason=f"'no cost or margin on the ' || s.lines || ' orders {WINDOW_PHRASES[k.window]}'",
        note=_MARGIN_NOTE)


@builtin("repurchase_rate", noun=ORDERS, empty="orders", absent=0.0, rate=True)
def _repurchase_rate(t, k):
    # Calendar months with an order over the window's months rounded (a 90-day window has 3);
    # capped because a 90-day window can touch four calendar months.
    months = f"greatest(round({_window_months(k, 's.first_day')}), 1)"
    return _orders(t, k, f"least(s.months, {months}) / {months}")


@builtin("order_frequency", noun=ORDERS, empty="orders", absent=0.0, rate=True)
def _order_frequency(t, k):
    return _orders(t, k, f"s.lines / {_window_months(k, 's.first_day')}")


@builtin("product_penetration", noun=ORDERS, empty="orders")
def _product_penetration(t, k):
    return (f"SELECT g.account_id, g.pidx, CASE WHEN o.offered > 0 THEN coalesce(p.products, 0) / o.offered END "
            "AS value, coalesce(s.lines, 0) AS n, 'no product lines in the orders before the period end' AS reason, "
            f"NULL AS note FROM {t.grid(k.window)} g JOIN {t.offered_products(k.window)} o USING (pidx) "
            f"LEFT JOIN {t.order_stats(k.window)} s USING (account_id, pidx) "
            f"LEFT JOIN {t.order_products(k.window)} p USING (account_id, pidx)")


def _per_revenue(t: Tables, k: KpiDef, name: str, source: str) -> str:
    """Σ value of an event source (account_id, key '', day, value) / revenue, per window."""
    return (f"SELECT g.account_id, g.pidx, CASE WHEN s.amount > 0 THEN coalesce(x.total, 0) / s.amount END AS value, "
            f"coalesce(s.lines, 0) AS n, 'no revenue {WINDOW_PHRASES[k.window]}' AS reason, NULL AS note "
            f"FROM {t.grid(k.window)} g LEFT JOIN {t.order_stats(k.window)} s USING (account_id, pidx) "
            f"LEFT JOIN {t.event_stats(name, source, k.window)} x USING (account_id, pidx)")


@builtin("cross_sell_revenue_share", noun=ORDERS, empty="orders", requires=(("opportunities",), ("orders",)))
def _cross_sell_revenue_share(t, k):
    return _per_revenue(t, k, "cross_sell", "SELECT account_id, '' AS key, closed_at AS day, amount AS value "
                        "FROM opportunities WHERE status = 'won' AND kind IN ('cross_sell', 'upsell')")


@builtin("cost_to_serve", noun=ORDERS, empty="orders", requires=(("costs",), ("orders",)))
def _cost_to_serve(t, k):
    return _per_revenue(t, k, "service_costs", "SELECT account_id, '' AS key, date AS day, amount AS value "
                        "FROM costs WHERE category IN ('retention', 'service')")


# --------------------------------------------------------------------------- CLV (Python models)


@builtin("p_alive", noun=ORDERS, empty="orders")
def _p_alive(t, k):
    return _model_query(t, "p_alive", _p_alive_values)


@builtin("clv_predicted", noun=ORDERS, empty="orders")
def _clv_predicted(t, k):
    return _model_query(t, "clv_predicted", _clv_values)


# The KPIs of the CLV models, which read Tables.first_day_amounts.
MODEL_KPIS = ("p_alive", "clv_predicted")


class _NoModel(Exception):
    pass


def _model(call, name: str):
    try:
        with np.errstate(all="ignore"):
            return call()
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        raise _NoModel(f"the {name} model could not be fitted: {exc}") from None


# The scorecard's BG/NBD fits, tried in turn (KPIS.md: "with a small penalizer option"): the
# first that converges cleanly is used.
BGNBD_PENALIZERS = (0.0, 1e-4, 1e-3, 1e-2)


def _fit_bgnbd(x: np.ndarray, recency: np.ndarray, age: np.ndarray) -> clv.BgNbdParams:
    """The portfolio's BG/NBD fit: plain maximum likelihood, else the smallest penalizer that
    converges cleanly, else the plain fit stalled at a ~zero gradient.

    Where no account shows signs of dropping out, the plain likelihood has no maximum: a and b
    grow together along a flat ridge until the line search stalls, at a point that depends on
    the machine's rounding (the sample data stalled with a gradient under the threshold on one
    CPU and above it on another, whose reviews then had no p_alive). A small penalty ends the
    ridge, so such data get the same model on every machine.
    """
    for penalizer in BGNBD_PENALIZERS:
        try:
            return clv.fit_bgnbd(x, recency, age, penalizer=penalizer, accept_stall=False)
        except ValueError:
            continue
    try:
        return clv.fit_bgnbd(x, recency, age)
    except ValueError:
        # clv's own message advises a larger penalizer, which the scorecard has already tried.
        tried = ", ".join(f"{p:g}" for p in BGNBD_PENALIZERS[1:])
        raise ValueError(f"it does not converge on these orders, plain or with a penalizer of {tried}") from None


def _enough_repeaters(x: np.ndarray, name: str) -> None:
    repeaters = int((x > 0).sum())
    if repeaters < 2:
        raise _NoModel(f"the {name} model needs at least 2 accounts with repeat purchases, found {repeaters}")


@dataclass(frozen=True)
class _Rfm:
    """Per account with orders and period: the BG/NBD inputs in weeks, and the fit (or why there is none)."""

    frame: pd.DataFrame   # account_id, pidx, n
    x: np.ndarray         # repeat purchase days
    recency: np.ndarray
    age: np.ndarray
    spend: np.ndarray     # mean amount of the repeat purchase days
    latest: np.ndarray    # rows of the latest period: the fit uses these
    bgnbd: clv.BgNbdParams | None
    failure: str


def _rfm(t: Tables) -> _Rfm:
    """Always the whole history: frequency, recency and age describe the account's life up to the period end."""

    def build():
        rfm = t.con.sql(
            "SELECT s.account_id, s.pidx, s.lines AS n, s.days - 1 AS frequency, "
            "date_diff('day', f.first_day, s.last_day) / 7.0 AS recency, "
            "date_diff('day', f.first_day, w.w_hi) / 7.0 AS age, "
            "CASE WHEN s.days > 1 THEN (s.amount - f.first_amount) / (s.days - 1) ELSE 0 END AS spend "
            f"FROM {t.order_stats('lifetime')} s JOIN {t.windows('lifetime')} w USING (pidx) "
            f"JOIN {t.first_day_amounts()} f USING (account_id) "
            "ORDER BY s.account_id, s.pidx"  # the fit sees its data in the same order on every run
        ).to_arrow_table().to_pandas()
        x, recency, age, spend = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "age", "spend"))
        latest = (rfm["pidx"] == len(t.periods) - 1).to_numpy()
        frame = pd.DataFrame({"account_id": rfm["account_id"], "pidx": rfm["pidx"].astype("int64"),
                              "n": rfm["n"].astype("int64")})
        try:
            _enough_repeaters(x[latest], "BG/NBD")
            bgnbd, failure = _model(lambda: _fit_bgnbd(x[latest], recency[latest], age[latest]), "BG/NBD"), ""
        except _NoModel as exc:
            bgnbd, failure = None, str(exc)
        return _Rfm(frame, x, recency, age, spend, latest, bgnbd, failure)

    return t.once(("rfm",), build)


def _p_alive_values(r: _Rfm, t: Tables) -> tuple[np.ndarray, np.ndarray]:
    values, reasons = np.full(len(r.x), np.nan), np.full(len(r.x), r.failure, dtype=object)
    if r.bgnbd is not None:
        try:
            values = _model(lambda: clv.p_alive(r.bgnbd, r.x, r.recency, r.age), "BG/NBD")
        except _NoModel as exc:
            reasons[:] = str(exc)
    return values, reasons


def _clv_values(r: _Rfm, t: Tables) -> tuple[np.ndarray, np.ndarray]:
    values, reasons = np.full(len(r.x), np.nan), np.full(len(r.x), r.failure, dtype=object)
    if r.bgnbd is None:
        return values, reasons
    # Gamma-Gamma describes positive repeat spend; an account whose repeat orders sum to <= 0 has none.
    usable = (r.x == 0) | (r.spend > 0)
    try:
        repeat = r.latest & (r.x > 0) & (r.spend > 0)
        _enough_repeaters(r.x[repeat], "Gamma-Gamma")
        gamma = _model(lambda: clv.fit_gamma_gamma(r.x[repeat], r.spend[repeat]), "Gamma-Gamma")
        values[usable] = _model(lambda: clv.predicted_clv(
            r.bgnbd, gamma, r.x[usable], r.recency[usable], r.age[usable], r.spend[usable], months=12,
            monthly_discount_rate=t.clv_discount_rate, time_unit="W"), "Gamma-Gamma")
        reasons[~usable] = "the repeat orders do not add up to a positive amount"
    except _NoModel as exc:
        reasons[:] = str(exc)
    return values, reasons


def _model_query(t: Tables, kpi_id: str, compute) -> str:
    """p_alive and clv_predicted share one RFM summary and one BG/NBD fit (see the module docstring)."""

    def build():
        r = _rfm(t)
        values, reasons = compute(r, t)
        reasons = np.where(np.isfinite(values) | (reasons != ""), reasons, "the model gives no finite value")
        frame = r.frame.assign(value=values, reason=pd.Series(reasons, dtype="str"))
        name = t.name(kpi_id)
        t.con.register(name + "_df", frame)
        try:
            return t.create(name, f"SELECT * FROM {name}_df")
        finally:
            t.con.unregister(name + "_df")

    table = t.once(("model", kpi_id), build)
    return f"SELECT account_id, pidx, value, n, nullif(reason, '') AS reason, NULL AS note FROM {table}"


# --------------------------------------------------------------------------- tickets


def _tickets(t: Tables, k: KpiDef, value: str, where: str = "true", n: str = "count(*)") -> str:
    """An aggregate over the tickets opened in the window (alias e; e.w_hi is the window end)."""
    return (f"SELECT e.account_id, e.pidx, {value} AS value, {n} AS n, NULL AS reason, NULL AS note "
            f"FROM {t.rows_in_window('tickets', k.window)} e WHERE ({where}) AND {t.in_scope('e.account_id')} "
            "GROUP BY e.account_id, e.pidx")


def _hours(start: str, end: str) -> str:
    return f"(epoch({end}) - epoch({start})) / 3600.0"


# As known at the end of the window: a response or resolution after it had not happened yet.
_RESPONDED = "e.first_response_at IS NOT NULL AND e.first_response_at < e.w_hi AND e.first_response_at >= e.opened_at"
_RESOLVED = "e.resolved_at IS NOT NULL AND e.resolved_at < e.w_hi AND e.resolved_at >= e.opened_at"


@builtin("complaints", noun=TICKETS, empty="tickets", absent=0.0)
def _complaints(t, k):
    source = "SELECT account_id, '' AS key, opened_at::DATE AS day, is_complaint::INTEGER AS value FROM tickets"
    return _events(t, k, "complaints", source, "e.total")


@builtin("first_response_hours", noun=TICKETS, empty="tickets with a first response")
def _first_response_hours(t, k):
    return _tickets(t, k, f"median({_hours('e.opened_at', 'e.first_response_at')})", _RESPONDED)


@builtin("resolution_hours", noun=TICKETS, empty="resolved tickets")
def _resolution_hours(t, k):
    return _tickets(t, k, f"median({_hours('e.opened_at', 'e.resolved_at')})", _RESOLVED)


@builtin("sla_compliance", noun=TICKETS, empty="tickets with an SLA")
def _sla_compliance(t, k):
    # Tickets still open whose SLA has not run out at the window end are neither met nor missed yet.
    met = f"({_RESOLVED} AND {_hours('e.opened_at', 'e.resolved_at')} <= e.sla_hours)"
    decided = f"({met} OR epoch(e.opened_at) + e.sla_hours * 3600 < epoch(e.w_hi::TIMESTAMP))"
    return (f"SELECT e.account_id, e.pidx, (count(*) FILTER (WHERE {met}))::DOUBLE "
            f"/ nullif(count(*) FILTER (WHERE {decided}), 0) AS value, count(*) FILTER (WHERE {decided}) AS n, "
            "'the SLA of all ' || count(*) || CASE WHEN count(*) = 1 THEN ' ticket' ELSE ' tickets' END "
            "|| ' with an SLA was still running at the period end' AS reason, NULL AS note "
            f"FROM {t.rows_in_window('tickets', k.window)} e WHERE e.sla_hours IS NOT NULL "
            f"AND {t.in_scope('e.account_id')} GROUP BY e.account_id, e.pidx")


@builtin("complaint_resolution_rate", noun=("complaint", "complaints"), empty="complaints")
def _complaint_resolution_rate(t, k):
    return _tickets(t, k, f"avg(({_RESOLVED})::DOUBLE)", "e.is_complaint")


@builtin("ticket_satisfaction", noun=TICKETS, empty="tickets with a satisfaction rating")
def _ticket_satisfaction(t, k):
    source = ("SELECT account_id, '' AS key, opened_at::DATE AS day, satisfaction AS value FROM tickets "
              "WHERE satisfaction IS NOT NULL")
    return _events(t, k, "satisfaction", source, "e.total / e.cnt")


# --------------------------------------------------------------------------- relationship

_COMPLETED = ("SELECT e.account_id, e.date, coalesce(e.department, c.department) AS department, "
              "coalesce(e.seniority, c.seniority) AS seniority FROM interactions e "
              "LEFT JOIN contacts c ON c.contact_id = e.contact_id AND c.account_id = e.account_id")


def _interactions(t: Tables) -> str:
    """Interactions with department and seniority completed from the contact.

    When the loader kept contact_id unique, an interaction matches at most one contact, so the join changes
    only the rows that miss a department or a seniority: those alone are joined (a probe per interaction
    costs more than the scan)."""
    if "contact_id" not in t.unique_keys("contacts"):
        return _COMPLETED
    return ("SELECT account_id, date, department, seniority FROM interactions "
            f"WHERE department IS NOT NULL AND seniority IS NOT NULL UNION ALL {_COMPLETED} "
            "WHERE e.department IS NULL OR e.seniority IS NULL")
_ALL_INTERACTIONS = "SELECT account_id, '' AS key, date AS day, NULL::DOUBLE AS value FROM interactions"


@builtin("interaction_frequency", noun=INTERACTIONS, empty="interactions", absent=0.0, rate=True)
def _interaction_frequency(t, k):
    # Lifetime: per month since the account's first interaction.
    first = "(SELECT min(i.date) FROM interactions i WHERE i.account_id = e.account_id)"
    return _events(t, k, "interactions", _ALL_INTERACTIONS, f"e.cnt / {_window_months(k, first)}")


@builtin("days_since_contact", noun=INTERACTIONS, empty="interactions")
def _days_since_contact(t, k):
    return _events(t, k, "interactions", _ALL_INTERACTIONS, "date_diff('day', e.last_day, w.w_end)::DOUBLE")


@builtin("relationship_breadth", noun=("contact or interaction", "contacts and interactions"),
         empty="active contacts or interactions", absent=0.0, requires=(("contacts", "interactions"),))
def _relationship_breadth(t, k):
    source = ("SELECT account_id, coalesce(department, '') AS key, date AS day, NULL::DOUBLE AS value "
              f"FROM ({_interactions(t)})")
    met = (f"SELECT account_id, pidx, key AS department, cnt FROM {t.event_stats('departments', source, k.window)}")
    contacts = (f"SELECT c.account_id, w.pidx, coalesce(c.department, '') AS department, 1 AS cnt FROM contacts c "
                f"CROSS JOIN {t.windows(k.window)} w WHERE coalesce(c.active, true) AND {t.in_scope('c.account_id')}")
    return (f"SELECT account_id, pidx, (count(DISTINCT department) FILTER (WHERE department <> ''))::DOUBLE AS value, "
            f"sum(cnt)::BIGINT AS n, NULL AS reason, NULL AS note FROM ({met} UNION ALL {contacts}) "
            "GROUP BY account_id, pidx")


@builtin("relationship_depth", noun=("interaction with a known seniority", "interactions with a known seniority"),
         empty="interactions with a known seniority", requires=(("interactions",),))
def _relationship_depth(t, k):
    source = (f"SELECT account_id, '' AS key, date AS day, (seniority IN ('director', 'executive'))::INTEGER AS value "
              f"FROM ({_interactions(t)}) WHERE seniority IS NOT NULL")
    deciders = "SELECT DISTINCT account_id FROM contacts WHERE role = 'decision_maker' AND coalesce(active, true)"
    return (f"SELECT g.account_id, g.pidx, s.total / s.cnt AS value, coalesce(s.cnt, 0) AS n, NULL AS reason, "
            "CASE WHEN d.account_id IS NULL THEN 'no decision-maker contact known' "
            "ELSE 'decision-maker contact known' END AS note "
            f"FROM {t.grid(k.window)} g LEFT JOIN {t.event_stats('seniority', source, k.window)} s "
            "USING (account_id, pidx) "
            f"LEFT JOIN ({deciders}) d ON d.account_id = g.account_id")


# --------------------------------------------------------------------------- opportunities


@builtin("conversion_rate", noun=("opportunity", "opportunities"), empty="won or lost opportunities")
def _conversion_rate(t, k):
    source = ("SELECT account_id, '' AS key, closed_at AS day, (status = 'won')::INTEGER AS value FROM opportunities "
              "WHERE status IN ('won', 'lost')")
    return _events(t, k, "decided_opportunities", source, "e.total / e.cnt")


# --------------------------------------------------------------------------- custom aggregates


_ENTITY_NOUNS = {
    "orders": ORDERS, "surveys": RESPONSES, "tickets": TICKETS, "interactions": INTERACTIONS,
    "opportunities": ("opportunity", "opportunities"), "costs": ("cost", "costs"),
    "contacts": ("contact", "contacts"), "accounts": ("account", "accounts"),
}


def _partial_columns(k: KpiDef, number: int, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Columns for the orders scan that let custom KPI ``k`` be combined per window from buckets
    (see kpi_sql.decompose); empty when its aggregates do not combine."""
    parts = {"num": decompose(con, k.expression)}
    if k.denominator:
        parts["den"] = decompose(con, k.denominator)
    if any(p is None for p in parts.values()):
        return {}
    return {f"__custom{number}_{key}{i}": sql for key, p in parts.items() for i, sql in enumerate(p.partials)}


def _custom(t: Tables, k: KpiDef) -> str:
    """SELECT account_id, <expression> [/ nullif(<denominator>, 0)] FROM <entity> WHERE <date in window>.

    Over orders, when the aggregates combine, from the partial aggregates of the one orders scan.
    """
    entity, column = k.entity, DATE_COLUMNS[k.entity]
    phrase = WINDOW_PHRASES[k.window] if column else ""
    number = t.custom_numbers.get(k.id)
    prefix = f"__custom{number}_"
    if entity == "orders" and number is not None and t.order_buckets() and any(
            c.startswith(prefix) for c in t.order_partials):
        def combined(text: str, key: str) -> str:
            split = decompose(t.con, text)
            return split.outer.format(*(f"{how}(ob.{prefix}{key}{i})" for i, how in enumerate(split.combine)))

        denominator = f"({combined(k.denominator, 'den')})::DOUBLE" if k.denominator else "1.0"
        aggregated = (f"SELECT ob.account_id, w.pidx, ({combined(k.expression, 'num')})::DOUBLE AS num, "
                      f"{denominator} AS den, sum(ob.lines) AS n FROM {t.in_window_buckets(k.window)} "
                      "GROUP BY ob.account_id, w.pidx")
    else:
        rows = (f"SELECT e.*, w.pidx FROM {entity} e CROSS JOIN {t.windows(k.window)} w" if column is None else
                t.rows_in_window(entity, k.window))
        denominator = f"({k.denominator})::DOUBLE" if k.denominator else "1.0"
        aggregated = (f"SELECT account_id, pidx, ({k.expression})::DOUBLE AS num, {denominator} AS den, "
                      f"count(*) AS n FROM {rows if column else '(' + rows + ')'} GROUP BY account_id, pidx")
    singular, plural = _ENTITY_NOUNS[entity]
    return (
        "SELECT account_id, pidx, CASE WHEN den <> 0 THEN num / den END AS value, n, "
        f"CASE WHEN num IS NULL THEN 'the expression gives no value for the ' || n || CASE WHEN n = 1 "
        f"THEN {lit(' ' + singular)} ELSE {lit(' ' + plural)} END || {lit(' ' + phrase if phrase else '')} "
        f"ELSE 'the denominator is zero or empty{' ' + phrase if phrase else ''}' END AS reason, NULL AS note "
        f"FROM ({aggregated})"
    )


# --------------------------------------------------------------------------- assembly


def _spec(k: KpiDef) -> Builtin:
    """The registry entry of a built-in, or the equivalent of a custom aggregate; requires filled in."""
    if k.expression:
        noun = _ENTITY_NOUNS[k.entity]
        return Builtin(_custom, noun, noun[1], requires=((k.entity,),))
    impl = KPIS[k.id]
    return replace(impl, requires=impl.requires if impl.requires is not None else tuple((e,) for e in k.needs))


def _wrap(t: Tables, k: KpiDef, kidx: int, spec: Builtin, query: str | None, reason: str | None = None) -> str:
    """Every account × period of k: value, n, status and note (see the module docstring)."""
    phrase = WINDOW_PHRASES[k.window]
    singular, plural = spec.noun
    default = lit(reason or f"no {spec.empty} {phrase}")
    rows = (f"WITH r AS ({query}) SELECT g.*, CASE WHEN r.n IS NULL THEN {_num(spec.absent)} ELSE r.value END "
            "AS v, coalesce(r.n, 0)::BIGINT AS cnt, r.reason, r.note "
            f"FROM {t.grid(k.window)} g LEFT JOIN r ON r.account_id = g.account_id AND r.pidx = g.pidx"
            if query else f"SELECT g.*, NULL::DOUBLE AS v, 0::BIGINT AS cnt, NULL AS reason, NULL AS note "
                          f"FROM {t.grid(k.window)} g")
    younger = ""
    if spec.compare and query:
        lo = f"w_{spec.compare}_lo"
        younger = (f"WHEN w_has_start AND since > {lo} THEN 'account younger than the window (customer since ' "
                   f"|| strftime(since, '%Y-%m-%d') || ', the comparison window starts ' || strftime({lo}, '%Y-%m-%d') "
                   "|| ')' ")
    why = ("CASE WHEN since >= w_end THEN 'not an account yet in this period (customer since ' "
           f"|| strftime(since, '%Y-%m-%d') || ')' {younger}"
           f"WHEN v IS NULL OR isnan(v) OR isinf(v) THEN coalesce(reason, {default}) END")
    young = ("CASE WHEN w_has_start AND since > w_lo THEN 'account younger than the window (customer since ' "
             "|| strftime(since, '%Y-%m-%d') || ')' END") if spec.rate else "NULL"
    sample = (f"CASE WHEN cnt = 0 THEN {default} ELSE cnt || CASE WHEN cnt = 1 THEN {lit(' ' + singular)} "
              f"ELSE {lit(' ' + plural)} END || ', fewer than {k.min_sample}' END")
    note = ("CASE WHEN since >= w_end THEN why WHEN why IS NOT NULL THEN concat_ws('; ', why, note) "
            f"WHEN cnt < {k.min_sample} THEN concat_ws('; ', {sample}, note, {young}) "
            # n 0 with a value (a total over no rows, min_sample 0): the value is real, the note says why it is 0.
            f"WHEN cnt = 0 THEN concat_ws('; ', {default}, note, {young}) "
            f"ELSE concat_ws('; ', note, {young}) END")
    statuses = [lit(status) for status in STATUS_CODES]
    if t.lean:  # only the last period's note is read; the status as its index in STATUS_CODES
        note = f"CASE WHEN pidx = {len(t.periods) - 1} THEN {note} END"
        statuses = [f"{STATUS_CODES.index(status)}::TINYINT" for status in STATUS_CODES]
    ok, low, none = statuses
    keys = "" if t.lean else f"account_id, {lit(k.id)} AS kpi, w_label AS period, "
    return (
        f"SELECT {kidx} AS kidx, gidx, {keys}"
        "CASE WHEN why IS NULL THEN v END AS value, cnt AS n, "
        f"CASE WHEN why IS NOT NULL THEN {none} WHEN cnt < {k.min_sample} THEN {low} ELSE {ok} END "
        f"AS status, {note} AS note "
        f"FROM (SELECT *, {why} AS why FROM ({rows}))"
    )


def _failed(t: Tables, k: KpiDef, kidx: int, spec: Builtin, exc: duckdb.Error) -> str:
    """A custom KPI whose SQL fails on this data (say, text that is no number) is reported, not fatal."""
    if not k.expression:
        raise exc
    return _wrap(t, k, kidx, spec, None, f"cannot evaluate {k.id}: {str(exc).splitlines()[0]}")


def _num(value: float | None) -> str:
    return "NULL::DOUBLE" if value is None else f"{float(value)!r}::DOUBLE"


def _missing_tables(t: Tables, spec: Builtin) -> str | None:
    for group in spec.requires:
        if all(t.is_empty(entity) for entity in group):
            return f"no {' or '.join(group)} data loaded"
    return None


def _formula_arrays(k: KpiDef, values: dict[str, np.ndarray], ns: dict[str, np.ndarray],
                    low: dict[str, np.ndarray], size: int):
    """A formula KPI over its inputs' values, n and low_sample flags, row by row (see _formula_block).

    Returns (value with NaN for no data, n, no_data mask, low_sample mask, notes)."""
    names = _formula_names(k.formula)
    with np.errstate(all="ignore"):
        result = np.broadcast_to(np.asarray(Formula(k.formula).evaluate({name: values[name] for name in names}),
                                            float), size).copy()
    missing = [np.isnan(values[name]) for name in names]
    flags = [low[name] for name in names]
    n = np.min([ns[name] for name in names], axis=0) if names else np.zeros(size, "int64")
    no_value = np.logical_or.reduce(missing, initial=False)
    no_data = no_value | ~np.isfinite(result)
    low_sample = ~no_data & (np.logical_or.reduce(flags, initial=False) | (n < k.min_sample))
    notes = np.full(size, "", dtype=object)
    for name, absent, flagged in reversed(list(zip(names, missing, flags))):
        notes[absent] = [f"no value for {name}" + ("; " + rest if rest.startswith("no value") else "")
                         for rest in notes[absent]]
        mark = ~no_data & flagged
        notes[mark] = [f"{name} has a low sample" + ("; " + rest if rest else "") for rest in notes[mark]]
    notes[no_data & ~no_value] = "the formula has no finite value (division by zero)"
    result[no_data] = np.nan
    return result, n, no_data, low_sample, notes


def _formula_block(k: KpiDef, blocks: dict[str, pa.Table], base: pa.Table) -> pa.Table:
    """Evaluate a formula KPI over the values of its inputs for the same account and period.

    No value for an input → no_data naming it; no finite result (division by zero) → no_data;
    an input flagged low_sample → low_sample; n is the smallest n of the inputs.
    """
    names = _formula_names(k.formula)
    size = base.num_rows
    values = {name: blocks[name]["value"].to_numpy(zero_copy_only=False).astype(float) for name in names}
    low = {name: blocks[name]["status"].to_numpy(zero_copy_only=False) == "low_sample" for name in names}
    ns = {name: blocks[name]["n"].to_numpy() for name in names}
    result, n, no_data, low_sample, notes = _formula_arrays(k, values, ns, low, size)
    status = np.where(no_data, "no_data", np.where(low_sample, "low_sample", "ok"))
    return pa.table({
        "account_id": base["account_id"], "kpi": pa.array(np.full(size, k.id), pa.large_string()),
        "period": base["period"], "value": pa.array(result, pa.float64(), from_pandas=True),
        "n": pa.array(n, pa.int64()), "status": pa.array(status, pa.large_string()),
        "note": pa.array(notes, pa.large_string()),
    }).cast(base.schema)


def _formula_order(kpi_defs: dict[str, KpiDef]) -> list[str]:
    """Formula KPIs after the KPIs they use."""
    done, order = set(), []

    def visit(kpi_id: str):
        if kpi_id in done:
            return
        done.add(kpi_id)
        k = kpi_defs[kpi_id]
        if k.formula:
            for name in _formula_names(k.formula):
                visit(name)
            order.append(kpi_id)

    for kpi_id in kpi_defs:
        visit(kpi_id)
    return order


def _check(kpi_defs: dict[str, KpiDef]) -> None:
    for k in kpi_defs.values():
        if k.formula:
            unknown = [n for n in _formula_names(k.formula) if n not in kpi_defs]
            if unknown:
                raise ValueError(f"{k.id}: the formula uses {', '.join(unknown)}, which is not among the KPIs passed")
        elif not k.expression and k.id not in KPIS:
            raise ValueError(f'no implementation for the built-in KPI "{k.id}"')


def _tables(con: duckdb.DuckDBPyConnection, kpi_defs: dict[str, KpiDef], periods: list[Period],
            fiscal_year_start: int, clv_discount_rate: float,
            order_splits: Iterable[date] = ()) -> tuple[Tables, list[KpiDef]]:
    sql_kpis = [k for k in kpi_defs.values() if not k.formula]
    if not sql_kpis:
        raise ValueError("formula KPIs need at least one KPI that is computed from the data")
    order_windows = {k.window for k in sql_kpis if "orders" in k.needs}
    customs = [k for k in sql_kpis if k.expression and k.entity == "orders"]
    partials = {col: sql for number, k in enumerate(customs) for col, sql in _partial_columns(k, number, con).items()}
    t = Tables(con, list(periods), fiscal_year_start, order_windows, partials, clv_discount_rate,
               event_windows={k.window for k in sql_kpis}, order_splits=order_splits)
    t.custom_numbers.update({k.id: number for number, k in enumerate(customs)})
    return t, sql_kpis


def _queries(t: Tables, sql_kpis: list[KpiDef], scopes: dict[str, str | None],
             order_spans: OrderSpans | None = None) -> list[str]:
    """The wrapped query of each KPI, built with its scope (``scopes[k.id]``, None: every account).

    The build order puts the side connection to work early: first the KPIs without orders (their event
    totals are read there while the orders are scanned here), then those over orders, then the CLV
    models (the first-order-day amounts they need are read there once the order buckets exist).
    ``order_spans`` is answered before the models are fitted, so that its caller's own queries run
    alongside the fit."""
    queries: list[str] = [""] * len(sql_kpis)
    t.wants_first_days = any(k.id in MODEL_KPIS for k in sql_kpis)
    if any("orders" in k.needs for k in sql_kpis):
        t.read_product_lines()  # for the orders scan, which the first order KPI starts
    try:
        for kidx in sorted(range(len(sql_kpis)),
                           key=lambda i: (sql_kpis[i].id in MODEL_KPIS, "orders" in sql_kpis[i].needs)):
            k = sql_kpis[kidx]
            t.scope = scopes.get(k.id)
            spec = _spec(k)
            missing = _missing_tables(t, spec)
            if k.id in MODEL_KPIS and order_spans is not None and not order_spans.totals.done():
                if not missing:
                    t.order_totals()  # which the model reads next anyway
                order_spans.answer(t)
            try:
                queries[kidx] = _wrap(t, k, kidx, spec, None if missing else spec.query(t, k), missing)
            except duckdb.Error as exc:
                queries[kidx] = _failed(t, k, kidx, spec, exc)
    finally:
        t.scope = None
    return queries


def _collect(t: Tables, sql_kpis: list[KpiDef], queries: list[str], columns: str, order: str,
             scopes: dict[str, str | None]) -> pa.Table:
    """All KPI queries in one statement (DuckDB runs them side by side); KPI by KPI when that fails,
    a custom KPI that fails on its own being reported instead (see _failed)."""
    t.settle()  # the event tables the queries read, from the totals read in the background
    con = t.con
    try:
        return con.sql(f"{columns} ({' UNION ALL '.join(f'({q})' for q in queries)}){order}").to_arrow_table()
    except duckdb.Error:
        parts = []
        for kidx, (k, sql) in enumerate(zip(sql_kpis, queries)):
            try:
                parts.append(con.sql(f"{columns} ({sql}){order}").to_arrow_table())
            except duckdb.Error as exc:
                t.scope = scopes.get(k.id)
                try:
                    failed = _failed(t, k, kidx, _spec(k), exc)
                finally:
                    t.scope = None
                parts.append(con.sql(f"{columns} ({failed}){order}").to_arrow_table())
        return pa.concat_tables(parts)


def compute_kpis(con: duckdb.DuckDBPyConnection, kpi_defs: dict[str, KpiDef], periods: list[Period],
                 fiscal_year_start: int = 1, clv_discount_rate: float = 0.01) -> pd.DataFrame:
    """One row per account in ``accounts`` × KPI × period: account_id, kpi, period, value, n, status, note.

    ``kpi_defs`` must contain every KPI a formula uses (resolve_kpis adds them). Rows come
    KPI by KPI in the order of ``kpi_defs``, then by account_id, then by period as given.
    """
    _check(kpi_defs)
    if not periods or not kpi_defs:
        return _empty_frame()
    t, sql_kpis = _tables(con, kpi_defs, periods, fiscal_year_start, clv_discount_rate)
    try:
        if t.account_count() == 0:
            return _empty_frame()
        queries = _queries(t, sql_kpis, {})
        table = _collect(t, sql_kpis, queries, "SELECT account_id, kpi, period, value, n, status, note FROM",
                         " ORDER BY kidx, gidx", {})
        grid_size = t.account_count() * len(periods)
    finally:
        t.drop_all()
    if table.num_rows != grid_size * len(sql_kpis):
        raise RuntimeError(f"KPI queries returned {table.num_rows} rows, expected {grid_size * len(sql_kpis)}")
    blocks = {k.id: table.slice(i * grid_size, grid_size) for i, k in enumerate(sql_kpis)}
    for kpi_id in _formula_order(kpi_defs):
        blocks[kpi_id] = _formula_block(kpi_defs[kpi_id], blocks, blocks[sql_kpis[0].id])
    return pa.concat_tables([blocks[k] for k in kpi_defs]).to_pandas()




@dataclass
class KpiArrays:
    """One KPI for the accounts of its scope, as compute_kpis would give them: value (NaN: null), n and
    status (an index into STATUS_CODES) per account × period, flattened account-major; the note of
    the last period per account (None where it is NULL)."""

    account_ids: list[str]
    value: np.ndarray
    n: np.ndarray
    status: np.ndarray
    note: list


@dataclass
class OrderSpans:
    """Order totals per account over fixed date spans ``[lo, hi)``, asked of compute_kpi_arrays by a caller
    that would otherwise scan the orders again (the scorecard: the portfolio's revenue, the warnings'
    order lines). Every bound must be a month start or a day the order buckets can be split at.

    ``totals`` is answered once the KPIs' order buckets exist (Tables.order_span_totals): for each account
    of ``accounts`` with an order line in some span, (Σ amount per span, order lines per span), the sums
    exact to the millionth as in the KPIs; None when no KPI scanned the orders or compute_kpi_arrays
    stopped early (the caller then reads the orders itself)."""

    spans: tuple[tuple[date, date], ...]
    totals: Future = field(default_factory=Future)

    def answer(self, t: Tables | None) -> None:
        if self.totals.done():
            return
        if t is None or not t.has_order_totals():
            self.totals.set_result(None)
            return
        ids, amounts, lines = t.order_span_totals(self.spans)
        have = np.flatnonzero(lines.sum(axis=1) > 0)
        # Whole millionths / 1e6: the double nearest the exact sum, like the KPIs' amounts.
        self.totals.set_result({
            account_id: (tuple(m / 1e6 for m in money), tuple(counts))
            for account_id, money, counts in zip(ids.take(pa.array(have)).to_pylist(), amounts[have].tolist(),
                                                 lines[have].tolist())
        })


def scope_closure(kpi_defs: dict[str, KpiDef], scopes: dict[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Accounts to compute each KPI for: its own scope, widened so that a formula KPI and every KPI it
    uses (directly or not) share one scope (the formula is evaluated row by row over its inputs).
    KPIs with no accounts are left out."""
    parent = {k: k for k in kpi_defs}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for k in kpi_defs.values():
        if k.formula:
            for name in _formula_names(k.formula):
                parent[root(name)] = root(k.id)
    joined: dict[str, set[str]] = {}
    for kpi_id, accounts in scopes.items():
        if kpi_id in kpi_defs:
            joined.setdefault(root(kpi_id), set()).update(accounts)
    out = {}
    for kpi_id in kpi_defs:
        accounts = joined.get(root(kpi_id))
        if accounts:
            out[kpi_id] = frozenset(accounts)
    return out


def compute_kpi_arrays(con: duckdb.DuckDBPyConnection, kpi_defs: dict[str, KpiDef], periods: list[Period],
                       scopes: dict[str, Iterable[str]], fiscal_year_start: int = 1,
                       clv_discount_rate: float = 0.01, order_spans: OrderSpans | None = None) -> dict[str, KpiArrays]:
    """compute_kpis for the scorecard: each KPI only for the accounts ``scopes`` gives it (see
    scope_closure; a KPI without accounts is not computed), as arrays, with the note of the last
    period only. Every value, n, status and note is the one compute_kpis gives for that cell:
    the queries are the same, run over fewer accounts and without the key columns.

    ``order_spans`` is answered from the order buckets once the KPI tables over orders are made (before
    the CLV models are fitted); None if there are none."""
    try:
        return _kpi_arrays(con, kpi_defs, periods, scopes, fiscal_year_start, clv_discount_rate, order_spans)
    finally:
        if order_spans is not None:
            order_spans.answer(None)  # if not answered yet: nobody waits for ever


def _kpi_arrays(con, kpi_defs, periods, scopes, fiscal_year_start, clv_discount_rate,
                order_spans: OrderSpans | None) -> dict[str, KpiArrays]:
    _check(kpi_defs)
    closure = scope_closure(kpi_defs, scopes)
    if not periods or not closure:
        return {}
    splits = [day for span in order_spans.spans for day in span] if order_spans is not None else ()
    t, sql_kpis = _tables(con, kpi_defs, periods, fiscal_year_start, clv_discount_rate, splits)
    sql_kpis = [k for k in sql_kpis if k.id in closure]
    if not sql_kpis:
        raise ValueError("formula KPIs need at least one KPI that is computed from the data")
    names: dict[frozenset[str], str] = {}
    for kpi_id in closure:
        names.setdefault(closure[kpi_id], f"s{len(names)}")
    t.scopes.update({name: sorted(accounts) for accounts, name in names.items()})
    scope_of = {kpi_id: names[accounts] for kpi_id, accounts in closure.items()}
    t.lean = True
    p = len(periods)
    try:
        if t.account_count() == 0:
            return {}
        queries = _queries(t, sql_kpis, scope_of, order_spans)
        if order_spans is not None:
            order_spans.answer(t)  # if no model came last
        table = _collect(t, sql_kpis, queries, "SELECT kidx, gidx, value, n, status, note FROM", "", scope_of)
        ids = {kpi_id: t.scope_ids(scope) for kpi_id, scope in scope_of.items()}
    finally:
        t.drop_all()
    kidx = table["kidx"].to_numpy()
    gidx = table["gidx"].to_numpy()
    value = table["value"].to_numpy(zero_copy_only=False).astype(float)
    n = table["n"].to_numpy(zero_copy_only=False)
    status = table["status"].to_numpy(zero_copy_only=False)  # indexes into STATUS_CODES (lean queries)
    notes = table["note"]
    expected = sum(len(ids[k.id]) * p for k in sql_kpis)
    if table.num_rows != expected or table["status"].null_count:
        raise RuntimeError(f"KPI queries returned {table.num_rows} rows, expected {expected}")
    order = np.argsort(kidx, kind="stable")
    bounds = np.searchsorted(kidx[order], np.arange(len(sql_kpis) + 1))
    out: dict[str, KpiArrays] = {}
    for i, k in enumerate(sql_kpis):
        rows = order[bounds[i]:bounds[i + 1]]
        size = len(ids[k.id]) * p
        where = gidx[rows]
        covered = np.zeros(size, bool)
        if len(rows) == size and (not size or (where.min() >= 0 and where.max() < size)):
            covered[where] = True
        if not covered.all():
            raise RuntimeError(f"{k.id}: the KPI query does not cover its grid")
        arrays = KpiArrays(ids[k.id], np.empty(size), np.empty(size, np.int64), np.empty(size, np.int8),
                           [None] * len(ids[k.id]))
        arrays.value[where] = value[rows]
        arrays.n[where] = n[rows]
        arrays.status[where] = status[rows]
        last = rows[where % p == p - 1]
        for position, text in zip((gidx[last] // p).tolist(), notes.take(pa.array(last)).to_pylist()):
            arrays.note[position] = text
        out[k.id] = arrays
    for kpi_id in _formula_order(kpi_defs):
        if kpi_id not in closure:
            continue
        k = kpi_defs[kpi_id]
        inputs = {name: out[name] for name in _formula_names(k.formula)}  # the same scope: the same rows
        result, fn, no_data, low_sample, fnotes = _formula_arrays(
            k, {name: a.value for name, a in inputs.items()}, {name: a.n for name, a in inputs.items()},
            {name: a.status == 1 for name, a in inputs.items()}, len(ids[kpi_id]) * p)
        codes = np.where(no_data, 2, np.where(low_sample, 1, 0)).astype(np.int8)
        out[kpi_id] = KpiArrays(ids[kpi_id], result, np.asarray(fn, np.int64), codes, list(fnotes[p - 1::p]))
    return out


def _empty_frame() -> pd.DataFrame:
    types = {"value": "float64", "n": "int64"}
    return pd.DataFrame({c: pd.Series(dtype=types.get(c, "str")) for c in COLUMNS})
