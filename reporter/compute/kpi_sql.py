"""The temporary tables one compute_kpis() call shares between its KPI queries.

Everything lives for one call on the caller's DuckDB connection under a unique prefix
and is dropped afterwards:

* ``windows`` — per window name, one row per period: the window's bounds, its length
  in months and the bounds of the prior and year-earlier windows. KPIs compute every
  period in one query by joining against it.
* ``grid`` — accounts × periods of one window, so that every account gets a row.
* ``scopes`` — optionally, named subsets of the accounts (the scorecard computes a KPI only for
  the accounts whose tier uses it). While ``Tables.scope`` names one, the grid and the event
  totals cover only its accounts; everything per account is computed exactly as without it.
* ``order buckets`` — the orders, scanned ONCE and summed per account and *bucket*: a
  calendar month, split again at every window boundary that is not a month start
  (trailing-90-day windows). Every window of every order KPI is an exact union of
  buckets. Distinct purchase days and product lines survive as bit masks (day of
  month; product line index) so they can still be counted per window, and custom
  KPIs over orders whose aggregates can be combined (sum, count, min, max, avg) get
  their partial aggregates computed in the same scan.
* ``order totals`` — running sums of the buckets per account; the totals of any window
  are the running sums at its end minus those at its start, so no window ever re-reads
  the rows it covers. The running-sum rows at each bound are found by an as-of look-up
  (the last row before the bound: what ``ASOF JOIN`` finds) done with numpy on the
  sorted (account, bucket) keys, then joined back by rowid; the sums stay in SQL.
* ``event totals`` — the same for the other entities: rows counted and a value summed
  per account, key (say, department) and day, as running totals (per pair number ``gid``),
  looked up the same way.
* ``rows in window`` — for the KPIs that need the rows themselves (ticket medians):
  each row once per window that holds it, shared by those KPIs.

Sums of money and scores are exact decimals, so the same data gives the same numbers
on every run (summing doubles in parallel does not).
"""
from __future__ import annotations

import bisect
import json
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from ..config.entities import ENTITIES, TIMESTAMP
from .periods import Period, Window, prior_window, window_bounds, year_earlier

EPOCH = date(1970, 1, 1)
# Stands for "no start" (lifetime windows), so joins need no "OR start IS NULL".
OPEN_START = date(1, 1, 1)

# "no NPS responses <phrase>"
WINDOW_PHRASES = {
    "month": "in the month",
    "quarter": "in the quarter",
    "trailing_90d": "in the last 90 days",
    "trailing_12m": "in the last 12 months",
    "ytd": "in the year to date",
    "lifetime": "to date",
}

# The column that places a row of each entity in a window (contacts and accounts have none).
DATE_COLUMNS = {
    "orders": "date",
    "surveys": "date",
    "tickets": "opened_at",
    "interactions": "date",
    "opportunities": "closed_at",
    "costs": "date",
    "accounts": None,
    "contacts": None,
}

# Money and scores are summed as exact decimals (see the module docstring).
EXACT = "DECIMAL(38, 6)"

# Aggregates whose per-bucket results combine into the window's result: partial -> combining aggregate.
_COMBINE = {"sum": "sum", "count": "sum", "count_star": "sum", "min": "min", "max": "max"}


def _bounds(row: WindowRow) -> list[date | None]:
    """w_lo, w_hi, w_prior_lo, w_prior_hi, w_ye_lo, w_ye_hi of one windows row."""
    cur, prior, ye = row.current, row.prior, row.earlier
    return [cur.start or OPEN_START, cur.end, prior.start if prior else None, prior.end if prior else None,
            ye.start or OPEN_START, ye.end]


def lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def date_lit(d: date) -> str:
    return f"DATE '{d.isoformat()}'"


def day_number(d: date) -> int:
    return (d - EPOCH).days


@dataclass(frozen=True)
class WindowRow:
    pidx: int
    label: str
    current: Window
    prior: Window | None
    earlier: Window


@dataclass(frozen=True)
class Decomposed:
    """An aggregate expression split into partial aggregates (per bucket) and the outer expression
    that combines them: outer.format(*combined_partials)."""

    outer: str
    partials: tuple[str, ...]
    combine: tuple[str, ...]


_AGGREGATES: set[str] = set()


def _aggregate_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of DuckDB's aggregate functions (asked once per process: the list is the engine's)."""
    if not _AGGREGATES:
        _AGGREGATES.update(r[0] for r in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'aggregate'").fetchall())
    return _AGGREGATES


def decompose(con: duckdb.DuckDBPyConnection, expression: str) -> Decomposed | None:
    """Split ``expression`` if every aggregate in it is sum, count, min, max or avg without
    DISTINCT or ORDER BY (FILTER is fine); None otherwise, and the caller aggregates the rows."""
    sql = f"SELECT {expression}"
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
        aggregates = _aggregate_names(con)
    except (duckdb.Error, json.JSONDecodeError, TypeError):
        return None
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        return None
    raw = sql.encode()  # json_serialize_sql reports byte offsets
    calls: list[tuple[int, int, str]] = []  # byte offset, byte length, function name

    def walk(node) -> bool:
        if isinstance(node, list):
            return all(walk(item) for item in node)
        if not isinstance(node, dict):
            return True
        kind = node.get("class")
        if kind in ("WINDOW", "SUBQUERY"):
            return False
        if kind == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in aggregates or name == "count_star":
                plain = not node.get("distinct") and not (node.get("order_bys") or {}).get("orders") \
                    and not node.get("export_state") and not node.get("schema") and not node.get("catalog")
                location = node.get("query_location")
                if not plain or (name not in _COMBINE and name != "avg") or not isinstance(location, int) \
                        or location >= len(raw):
                    return False
                calls.append((node["query_location"], node["query_location_length"], name))
                return True
        return all(walk(value) for value in node.values())

    node = tree["statements"][0]["node"]
    if (node.get("from_table") or {}).get("type") not in (None, "EMPTY") or not walk(node.get("select_list")) \
            or not calls:
        return None
    outer, partials, combine, cursor = [], [], [], 7  # len("SELECT ")
    for start, length, name in sorted(calls):
        if start < cursor:  # an aggregate inside an aggregate: not valid SQL anyway
            return None
        call = raw[start:start + length].decode()
        outer.append(raw[cursor:start].decode().replace("{", "{{").replace("}", "}}"))
        if name == "avg":
            args = call[3:].lstrip()
            if not call[:3].lower() == "avg" or not args.startswith("("):
                return None
            outer.append(f"({{{len(partials)}}} / nullif({{{len(partials) + 1}}}, 0))")
            partials += [f"sum{args}", f"count{args}"]
            combine += ["sum", "sum"]
        else:
            outer.append(f"{{{len(partials)}}}")
            partials.append(call)
            combine.append(_COMBINE[name])
        cursor = start + length
    outer.append(raw[cursor:].decode().replace("{", "{{").replace("}", "}}"))
    return Decomposed("".join(outer), tuple(partials), tuple(combine))


class Tables:
    """Creates (once, on first use) and finally drops the shared temporary tables of one call."""

    def __init__(self, con: duckdb.DuckDBPyConnection, periods: list[Period], fiscal_year_start: int,
                 order_windows: set[str], order_partials: dict[str, str] | None = None,
                 clv_discount_rate: float = 0.01):
        self.con = con
        self.periods = periods
        self.fiscal_year_start = fiscal_year_start
        self.clv_discount_rate = clv_discount_rate
        self.prefix = f"_kpi_{uuid.uuid4().hex[:10]}"
        # Custom partial aggregates (column name -> SQL) to compute in the orders scan; emptied
        # if one of them fails on the data, so that the KPIs it belongs to fall back to the rows.
        self.order_partials = dict(order_partials or {})
        self.custom_numbers: dict[str, int] = {}  # custom KPI id -> number in the partial column names
        self._order_windows = set(order_windows)
        # Named account subsets (see the module docstring) and the one the KPI being built uses.
        self.scopes: dict[str, list[str]] = {}
        self.scope: str | None = None
        # The scorecard reads only the last period's note: lean KPI queries leave the others NULL.
        self.lean = False
        self._created: list[str] = []
        self._cache: dict[tuple, object] = {}
        self._empty: dict[str, bool] = {}

    # ------------------------------------------------------------------ plumbing

    def name(self, *parts: str) -> str:
        return "_".join((self.prefix, *parts))

    def create(self, name: str, sql: str) -> str:
        self.con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        self._created.append(name)
        return name

    @staticmethod
    def inline(sql: str) -> str:
        """A derived table used by one or two KPIs: left to the final query instead of stored."""
        return f"({sql})"

    def drop_all(self) -> None:
        for name in reversed(self._created):
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
        self._created.clear()

    def once(self, key: tuple, build):
        """build() the first time ``key`` is asked for; the cached result afterwards."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def is_empty(self, entity: str) -> bool:
        if entity not in self._empty:
            try:
                # fetchall, never fetchone: a half-read result would block the caller's connection.
                self._empty[entity] = not self.con.execute(f"SELECT 1 FROM {entity} LIMIT 1").fetchall()
            except duckdb.CatalogException:
                self._empty[entity] = True
        return self._empty[entity]

    # ------------------------------------------------------------------ windows, accounts, grid

    def window_rows(self, window: str) -> list[WindowRow]:
        def build():
            rows = []
            for pidx, period in enumerate(self.periods):
                current = window_bounds(window, period.end, self.fiscal_year_start)
                prior = prior_window(current) if current.start is not None else None
                rows.append(WindowRow(pidx, period.label, current, prior, year_earlier(current)))
            return rows

        return self.once(("window_rows", window), build)

    def windows(self, window: str) -> str:
        """Table: pidx, w_label, w_end, w_has_start, w_months, then w_lo, w_hi, w_prior_lo, w_prior_hi,
        w_ye_lo, w_ye_hi as DATEs and again as day numbers (suffix _i). Lifetime starts at OPEN_START."""

        def build():
            values = []
            for row in self.window_rows(window):
                cur = row.current
                bounds = _bounds(row)
                cols = [str(row.pidx), lit(row.label), date_lit(cur.end),
                        "true" if cur.start is not None else "false",
                        "NULL::DOUBLE" if cur.months is None else f"{float(cur.months)!r}::DOUBLE"]
                cols += ["NULL::DATE" if b is None else date_lit(b) for b in bounds]
                cols += ["NULL::INTEGER" if b is None else f"{day_number(b)}::INTEGER" for b in bounds]
                values.append("(" + ", ".join(cols) + ")")
            names = ("pidx, w_label, w_end, w_has_start, w_months, w_lo, w_hi, w_prior_lo, w_prior_hi, w_ye_lo, "
                     "w_ye_hi, w_lo_i, w_hi_i, w_prior_lo_i, w_prior_hi_i, w_ye_lo_i, w_ye_hi_i")
            return self.create(self.name("w", window), f"SELECT * FROM (VALUES {', '.join(values)}) AS t({names})")

        return self.once(("windows", window), build)

    def accounts(self) -> str:
        """Table: account_id, aidx (position in account_id order), since."""
        return self.once(("accounts",), lambda: self.create(
            self.name("acc"),
            "SELECT account_id, (row_number() OVER (ORDER BY account_id) - 1)::BIGINT AS aidx, since "
            "FROM (SELECT DISTINCT ON (account_id) account_id, since FROM accounts WHERE account_id IS NOT NULL)",
        ))

    def account_count(self) -> int:
        return self.once(("account_count",), lambda: self.con.execute(
            f"SELECT count(*) FROM {self.accounts()}").fetchall()[0][0])

    def grid(self, window: str) -> str:
        """Table: every account (of the current scope) × every period with the window columns, and gidx
        (the output order: aidx × periods + pidx)."""
        n_periods = len(self.periods)
        scope = self.scope
        accounts = self.accounts() if scope is None else self.scope_accounts(scope)
        return self.once(("grid", window, scope), lambda: self.create(
            self.name("g", window) if scope is None else self.name("g", window, scope),
            f"SELECT a.account_id, a.since, a.aidx * {n_periods} + w.pidx AS gidx, w.* "
            f"FROM {accounts} a CROSS JOIN {self.windows(window)} w",
        ))

    # ------------------------------------------------------------------ scopes

    def scope_accounts(self, scope: str) -> str:
        """Table: account_id, aidx (position in account_id order within the scope), since: the accounts
        of ``accounts()`` that are in the scope."""

        def build():
            ids = pa.table({"account_id": pa.array(sorted(set(self.scopes[scope])), pa.string())})
            source = self.name("sa", scope, "ids")
            self.con.register(source, ids)
            try:
                return self.create(
                    self.name("sa", scope),
                    "SELECT account_id, (row_number() OVER (ORDER BY account_id) - 1)::BIGINT AS aidx, since "
                    f"FROM {self.accounts()} WHERE account_id IN (SELECT account_id FROM {source})",
                )
            finally:
                self.con.unregister(source)

        return self.once(("scope_accounts", scope), build)

    def scope_ids(self, scope: str | None) -> list[str]:
        """The account ids of a scope (None: all accounts) in aidx order."""
        table = self.accounts() if scope is None else self.scope_accounts(scope)
        return self.once(("scope_ids", scope), lambda: [r[0] for r in self.con.execute(
            f"SELECT account_id FROM {table} ORDER BY aidx").fetchall()])

    def in_scope(self, column: str) -> str:
        """SQL condition: ``column`` (an account_id) is in the current scope."""
        if self.scope is None:
            return "true"
        return f"{column} IN (SELECT account_id FROM {self.scope_accounts(self.scope)})"

    # ------------------------------------------------------------------ running totals: as-of look-ups

    def _asof_index(self, sql: str, order: str = "gid, k") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(group id, key, rowid) of the rows ``sql`` selects (columns gid, k, rid), sorted by ``order``
        (group, then key or what the key truncates)."""
        table = self.con.sql(f"SELECT gid, k, rid FROM ({sql}) ORDER BY {order}").to_arrow_table()
        return tuple(table[c].to_numpy(zero_copy_only=False).astype(np.int64) for c in ("gid", "k", "rid"))

    def asof_rows(self, name: str, index, groups: np.ndarray, window: str, shift: str = "") -> str:
        """Table: gid, pidx, e_rid, s_rid: for each group of ``groups`` and period, the rowid of the group's
        last row with a key before the window's end (e_rid; no row for the pair without one) and before
        its start (s_rid, NULL without one). Keys are day numbers; ``shift`` picks the window as in
        ``windows`` (current, prior, ye). The same rows as ``ASOF [LEFT] JOIN ... ON hi > key``."""
        gid, key, rid = index
        which = {"": 0, "prior": 2, "ye": 4}[shift]
        rows = self.window_rows(window)
        bounds = [[None if b is None else day_number(b) for b in _bounds(row)[which:which + 2]] for row in rows]
        # group and key in one sortable int64: keys are day numbers (dates of years 1 to 9999 fit in 2^32)
        span, offset = np.int64(1) << 33, np.int64(1) << 32
        composite = gid * span + key + offset
        g = np.repeat(groups.astype(np.int64), len(rows))
        p = np.tile(np.arange(len(rows), dtype=np.int64), len(groups))
        hi = np.array([b[1] if b[1] is not None else 0 for b in bounds], np.int64)[p]
        lo = np.array([b[0] if b[0] is not None else 0 for b in bounds], np.int64)[p]
        has_hi = np.array([b[1] is not None for b in bounds], bool)[p]
        has_lo = np.array([b[0] is not None for b in bounds], bool)[p]

        def last_before(bound: np.ndarray, has: np.ndarray):
            at = np.searchsorted(composite, g * span + bound + offset, side="left") - 1
            safe = np.maximum(at, 0)
            ok = has & (at >= 0) & (gid[safe] == g) if len(gid) else np.zeros(len(g), bool)
            return (rid[safe] if len(rid) else np.zeros(len(g), np.int64)), ok

        e_rid, e_ok = last_before(hi, has_hi)
        s_rid, s_ok = last_before(lo, has_lo)
        found = pa.table({
            "gid": pa.array(g[e_ok], pa.int64()), "pidx": pa.array(p[e_ok], pa.int64()),
            "e_rid": pa.array(e_rid[e_ok], pa.int64()), "s_rid": pa.array(s_rid[e_ok], pa.int64(), mask=~s_ok[e_ok]),
        })
        source = name + "_src"
        self.con.register(source, found)
        try:
            return self.create(name, f"SELECT * FROM {source}")
        finally:
            self.con.unregister(source)

    # ------------------------------------------------------------------ events of the other entities

    def event_stats(self, name: str, source: str, window: str, shift: str = "") -> str:
        """Subquery: account_id, key, pidx, cnt (rows in the window), total (Σ value), last_day (the last
        row's day before the window end), for the pairs with rows in the window.

        ``source`` selects account_id, key (VARCHAR, never NULL), day (DATE), value (DOUBLE or NULL)
        and is named ``name`` (one running-total table per name). Like the orders, a window's
        numbers are the running totals at its end minus those at its start."""

        scope = self.scope

        def totals():
            daily = (f"SELECT account_id, key, day, count(*) AS c, sum(value::{EXACT}) AS v FROM ({source}) "
                     f"WHERE account_id IS NOT NULL AND day IS NOT NULL AND {self.in_scope('account_id')} "
                     "GROUP BY account_id, key, day")
            # gid numbers the (account_id, key) pairs: the running totals partition by it (the same
            # partitions as by the pair) and the as-of look-ups key on it.
            pairs = ("SELECT account_id, key, (row_number() OVER (ORDER BY account_id, key) - 1)::BIGINT AS gid "
                     "FROM (SELECT DISTINCT account_id, key FROM d)")
            return self.create(
                self.name("et", name) if scope is None else self.name("et", name, scope),
                f"WITH d AS MATERIALIZED ({daily}) "
                "SELECT d.account_id, d.key, p.gid, d.day, sum(d.c) OVER a AS cnt, sum(d.v) OVER a AS total "
                f"FROM d JOIN ({pairs}) p ON p.account_id = d.account_id AND p.key = d.key "
                "WINDOW a AS (PARTITION BY p.gid ORDER BY d.day ROWS UNBOUNDED PRECEDING)",
            )

        def build():
            table = self.once(("event_totals", name, scope), totals)
            # Per pair and period the running totals at the window's end and start (the rows
            # ``ASOF JOIN ... ON hi > day`` finds), looked up with numpy (see asof_rows).
            index = self.once(("asof_index", table), lambda: self._asof_index(
                f"SELECT gid, (day::DATE - DATE '1970-01-01')::BIGINT AS k, rowid AS rid, day AS o FROM {table}",
                order="gid, o"))
            groups = np.unique(index[0])
            found = self.asof_rows(self.name("etx", name, window, shift or "cur", *([scope] if scope else [])),
                                   index, groups, window, shift)
            return self.inline(
                "SELECT e.account_id, e.key, x.pidx, (e.cnt - coalesce(s.cnt, 0))::BIGINT AS cnt, "
                "(coalesce(e.total, 0) - coalesce(s.total, 0))::DOUBLE AS total, e.day AS last_day "
                f"FROM {found} x JOIN {table} e ON e.rowid = x.e_rid LEFT JOIN {table} s ON s.rowid = x.s_rid "
                "WHERE e.cnt - coalesce(s.cnt, 0) > 0",
            )

        return self.once(("event_stats", name, window, shift, scope), build)

    def rows_in_window(self, entity: str, window: str) -> str:
        """Table: the entity's rows (all columns) once per period whose window holds them, with
        pidx, w_hi and w_end; shared by the KPIs that need the rows themselves (medians)."""
        column = DATE_COLUMNS[entity]
        # Bounds of the column's own type: comparing a TIMESTAMP with a DATE casts every row.
        bound = "TIMESTAMP" if ENTITIES[entity].field(column).type == TIMESTAMP else "DATE"
        return self.once(("rows", entity, window), lambda: self.create(
            self.name("rw", entity, window),
            f"SELECT e.*, w.pidx, w.w_hi, w.w_end FROM {entity} e JOIN (SELECT pidx, w_hi, w_end, "
            f"w_lo::{bound} AS lo, w_hi::{bound} AS hi FROM {self.windows(window)}) w "
            f'ON e."{column}" >= w.lo AND e."{column}" < w.hi',
        ))

    # ------------------------------------------------------------------ orders

    def product_lines(self) -> list[str]:
        return self.once(("product_lines",), lambda: [r[0] for r in self.con.execute(
            "SELECT DISTINCT product_line FROM orders WHERE product_line IS NOT NULL ORDER BY 1").fetchall()])

    def product_mask_count(self) -> int:
        return -(-len(self.product_lines()) // 64)

    def _bucket_expression(self) -> str:
        """Day number of the bucket a "date" falls in: its month start, or the latest split point
        (a non-month-start window boundary) in its month on or before it."""
        month_start = '("date" - DATE \'1970-01-01\') - (day("date") - 1)'
        splits = set()
        for window in self._order_windows:
            for row in self.window_rows(window):
                for w in (row.current, row.prior, row.earlier):
                    if w is not None:
                        splits.update(d for d in (w.start, w.end) if d is not None and d.day != 1)
        if not splits:
            return month_start
        splits = sorted(splits)
        first, end = splits[0].replace(day=1), max(p.end for p in self.periods)
        # A constant list indexed by day is far cheaper per row than a CASE over the split points.
        table, day = [], first
        while day < end:
            i = bisect.bisect_right(splits, day)
            start = max(day.replace(day=1), splits[i - 1]) if i else day.replace(day=1)
            table.append(str(day_number(start)))
            day += timedelta(days=1)
        return (f'CASE WHEN "date" >= {date_lit(first)} AND "date" < {date_lit(end)} THEN '
                f'[{",".join(table)}][("date" - {date_lit(first)}) + 1] ELSE {month_start} END')

    def order_buckets(self) -> str:
        """Table: account_id, b (bucket start, day number), mo (year*12+month), amount, lines, margin,
        margin_amount, margin_lines, dmask (days of month with orders), first_day, last_day,
        pm0.. (product line masks) and the custom partial aggregates."""

        def build(partials: dict[str, str]) -> str:
            lines = self.product_lines()
            masks = []
            if lines:
                position = f"list_position([{', '.join(lit(p) for p in lines)}], product_line)"
                for k in range(self.product_mask_count()):
                    shift = f"({position} - {64 * k + 1})"
                    bit = f"(1::UBIGINT) << {shift}::UBIGINT"
                    if self.product_mask_count() > 1:  # 64 product lines per mask
                        bit = f"CASE WHEN {shift} BETWEEN 0 AND 63 THEN {bit} END"
                    masks.append(f"bit_or({bit}) AS pm{k}")
            custom = [f"{sql} AS {column}" for column, sql in partials.items()]
            end = max(p.end for p in self.periods)
            aggregate = (
                f"SELECT account_id, ({self._bucket_expression()})::INTEGER AS b, sum(amount::{EXACT}) AS amount, "
                f"count(*) AS lines, sum(coalesce(amount - cost, margin)::{EXACT}) AS margin, "
                f"sum(amount::{EXACT}) FILTER (WHERE cost IS NOT NULL OR margin IS NOT NULL) AS margin_amount, "
                "count(coalesce(cost, margin)) AS margin_lines, "
                'bit_or((1::UINTEGER) << (day("date") - 1)::UINTEGER) AS dmask, '
                'min("date") AS first_day, max("date") AS last_day'
                + "".join(", " + m for m in [*masks, *custom])
                + f' FROM orders WHERE account_id IS NOT NULL AND "date" < {date_lit(end)} GROUP BY ALL'
            )
            return self.create(self.name("ob"), f"SELECT *, year(first_day) * 12 + month(first_day) AS mo "
                                                f"FROM ({aggregate})")

        def build_or_fall_back() -> str:
            try:
                return build(self.order_partials)
            except duckdb.Error:
                if not self.order_partials:
                    raise
                self.order_partials = {}
                return build({})

        return self.once(("order_buckets",), build_or_fall_back)

    def order_totals(self) -> str:
        """Table: the running totals of each account's buckets (account_id, b, amount, lines, margin,
        margin_amount, margin_lines, days, first_day, last_day)."""
        return self.once(("order_totals",), lambda: self.create(
            self.name("ot"),
            "SELECT account_id, b, sum(amount) OVER a AS amount, sum(lines) OVER a AS lines, "
            "sum(margin) OVER a AS margin, sum(margin_amount) OVER a AS margin_amount, "
            "sum(margin_lines) OVER a AS margin_lines, sum(bit_count(dmask)) OVER a AS days, "
            "min(first_day) OVER a AS first_day, max(last_day) OVER a AS last_day "
            f"FROM {self.order_buckets()} WINDOW a AS (PARTITION BY account_id ORDER BY b ROWS UNBOUNDED PRECEDING)",
        ))

    def order_stats(self, window: str, shift: str = "") -> str:
        """Table: account_id, pidx and the order totals of the current window (shift ""), the prior
        window ("prior") or the same window a year earlier ("ye"): amount, lines, margin, margin_amount,
        margin_lines, days (distinct order days); first_day and last_day are the account's first and
        last order before the window end. Accounts without orders in the window have no row."""

        def build():
            totals = self.order_totals()
            diff = ", ".join([*(f"(e.{c} - coalesce(s.{c}, 0))::BIGINT AS {c}" for c in ("lines", "margin_lines", "days")),
                              *(f"(e.{c} - coalesce(s.{c}, 0))::DOUBLE AS {c}" for c in ("amount", "margin", "margin_amount"))])
            # The running totals at the window's end and start: per account the last bucket before each
            # bound (what ``ASOF JOIN ... ON g.hi > e.b`` finds), looked up with numpy (see asof_rows).
            index = self.once(("asof_index", "order_totals"), lambda: self._asof_index(
                f"SELECT a.aidx AS gid, o.b AS k, o.rowid AS rid FROM {totals} o JOIN {self.accounts()} a "
                "USING (account_id)"))
            found = self.asof_rows(self.name("osx", window, shift or "cur"), index,
                                   np.arange(self.account_count(), dtype=np.int64), window, shift)
            return self.create(
                self.name("os", window, shift or "cur"),
                f"SELECT a.account_id, x.pidx, {diff}, e.first_day, e.last_day "
                f"FROM {found} x JOIN {self.accounts()} a ON a.aidx = x.gid "
                f"JOIN {totals} e ON e.rowid = x.e_rid LEFT JOIN {totals} s ON s.rowid = x.s_rid "
                "WHERE e.lines - coalesce(s.lines, 0) > 0",
            )

        return self.once(("order_stats", window, shift), build)

    def in_window_buckets(self, window: str) -> str:
        """FROM clause: order buckets (alias ob) of the current scope's accounts joined with the windows
        (alias w) they lie in."""
        buckets = self.order_buckets()
        if self.scope is not None:
            buckets = f"(SELECT * FROM {buckets} WHERE {self.in_scope('account_id')})"
        return (f"{buckets} ob JOIN {self.windows(window)} w "
                "ON ob.b >= w.w_lo_i AND ob.b < w.w_hi_i")

    def order_months(self, window: str) -> str:
        """Subquery: account_id, pidx, months (calendar months with an order in the window)."""
        return self.once(("order_months", window, self.scope), lambda: self.inline(
            "SELECT account_id, pidx, count(*)::BIGINT AS months FROM "
            f"(SELECT DISTINCT ob.account_id, w.pidx, ob.mo FROM {self.in_window_buckets(window)}) "
            "GROUP BY account_id, pidx",
        ))

    def _product_count(self, alias: str) -> str:
        k = self.product_mask_count()
        return " + ".join(f"coalesce(bit_count(bit_or({alias}.pm{i})), 0)" for i in range(k)) or "0"

    def order_products(self, window: str) -> str:
        """Subquery: account_id, pidx, products (distinct product lines ordered in the window)."""
        return self.once(("order_products", window, self.scope), lambda: self.inline(
            f"SELECT ob.account_id, w.pidx, ({self._product_count('ob')})::BIGINT AS products "
            f"FROM {self.in_window_buckets(window)} GROUP BY ob.account_id, w.pidx",
        ))

    def offered_products(self, window: str) -> str:
        """Subquery: pidx, offered (distinct product lines in all orders before the window end)."""

        def build():
            k = self.product_mask_count()
            if not k:
                return self.inline(f"SELECT pidx, 0::BIGINT AS offered FROM {self.windows(window)}")
            per_bucket = (f"SELECT b{''.join(f', bit_or(pm{i}) AS pm{i}' for i in range(k))} "
                          f"FROM {self.order_buckets()} GROUP BY b")
            return self.inline(
                f"SELECT w.pidx, ({self._product_count('pb')})::BIGINT AS offered FROM {self.windows(window)} w "
                f"LEFT JOIN ({per_bucket}) pb ON pb.b < w.w_hi_i GROUP BY w.pidx",
            )

        return self.once(("offered", window), build)

    def first_day_amounts(self) -> str:
        """Table: account_id, first_day, first_amount (the orders of the account's first order day)."""

        def build():
            firsts = f"SELECT account_id, min(first_day) AS first_day FROM {self.order_buckets()} GROUP BY account_id"
            return self.create(
                self.name("fd"),
                f'SELECT f.account_id, f.first_day, sum(o.amount::{EXACT})::DOUBLE AS first_amount FROM orders o '
                f'JOIN ({firsts}) f '
                f'ON o.account_id = f.account_id AND o."date" = f.first_day WHERE o.amount IS NOT NULL '
                "GROUP BY f.account_id, f.first_day",
            )

        return self.once(("first_day",), build)
