"""The temporary tables one compute_kpis() call shares between its KPI queries.

Everything lives for one call on the caller's DuckDB connection under a unique prefix
and is dropped afterwards:

* ``windows`` — per window name, one row per period: the window's bounds, its length
  in months and the bounds of the prior and year-earlier windows. KPIs compute every
  period in one query by joining against it.
* ``grid`` — accounts × periods of one window, so that every account gets a row (a derived table:
  the final query makes its few rows for less than storing them costs).
* ``scopes`` — optionally, named subsets of the accounts (the scorecard computes a KPI only for
  the accounts whose tier uses it). While ``Tables.scope`` names one, the grid and the event
  stats cover only its accounts; everything per account is computed exactly as without it.
* ``order buckets`` — the orders, scanned ONCE and summed per account and *bucket*: a
  calendar month, split again at every window boundary that is not a month start
  (trailing-90-day windows) and at any day the caller names (``order_splits``). Every window
  of every order KPI is an exact union of buckets, and so is every span of
  ``order_span_totals`` (the scorecard's portfolio revenue and warnings' order lines, which
  then need no scan of their own). Distinct purchase days and product lines survive as bit masks (day of
  month; product line index) so they can still be counted per window, and custom
  KPIs over orders whose aggregates can be combined (sum, count, min, max, avg) get
  their partial aggregates computed in the same scan.
* ``order stats`` — per window the totals of each account's buckets, from running sums
  (``Running``, numpy): the totals of any window are the running sums at its last bucket
  before the end minus those at its last bucket before the start (what ``ASOF JOIN``
  would find, located with a binary search), so no window ever re-reads the rows it
  covers. The small result is registered as a table for the KPI queries.
* ``event stats`` — the same for the other entities: rows counted, a value summed and the
  last day per account, key (say, department) and bucket (split for the windows of all the
  KPIs), read once per source for every account and scope. Those reads touch only the loaded
  tables, so they run on a second connection (a cursor) in a thread of their own while the
  caller goes on with the orders; ``settle()`` registers their tables before the KPI queries run.
  The CLV models' second look at the orders (the amounts of each account's first order day) runs
  there too, started as soon as the order buckets exist.
* ``rows in window`` — for the KPIs that need the rows themselves (ticket medians):
  each row once per window that holds it, shared by those KPIs.

Sums of money and scores are exact decimals, so the same data gives the same numbers
on every run (summing doubles in parallel does not); the running sums hold them as whole
millionths in int64, which is exact as well.
"""
from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config.entities import ENTITIES, TIMESTAMP
from .periods import Period, Window, prior_window, window_bounds, year_earlier
from .tables import unique_columns

EPOCH = date(1970, 1, 1)
EPOCH_SQL = "DATE '1970-01-01'"  # + a day number (INTEGER) is that DATE
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
# Amounts and values are cast row by row to the narrower type where they all fit (below 10^12): a much
# cheaper cast, and their sums are the same exact DECIMAL(38, 6).
NARROW_EXACT = "DECIMAL(18, 6)"

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


ORDER_SUMS = ("lines", "margin_lines", "days", "amount", "margin", "margin_amount")


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """A number per distinct value of a column without nulls (equal values, equal numbers)."""
    return pc.dictionary_encode(column).combine_chunks().indices.to_numpy().astype(np.int64)


def _millionths(column: pa.ChunkedArray) -> np.ndarray:
    """A decimal column of scale 6 without nulls as whole millionths: its unscaled 128-bit integers,
    read from the Arrow buffer as int64 (float64 if one does not fit)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.type.scale != 6 or array.null_count:
        raise ValueError(f"expected exact decimals of scale 6 without nulls, got {array.type}")
    if not len(array):
        return np.zeros(0, np.int64)
    words = np.frombuffer(array.buffers()[1], np.int64)[2 * array.offset:2 * (array.offset + len(array))]
    low, high = words[0::2], words[1::2]
    if np.array_equal(high, low >> 63):
        return low.copy()
    return high.astype(np.float64) * 2.0**64 + low.view(np.uint64).astype(np.float64)


def _radix_order(group: np.ndarray, key: np.ndarray) -> np.ndarray | None:
    """The rows in group and key order, by stable sorts of 16-bit digits: the key's, then the group's
    (numpy sorts 16-bit integers stably by radix, several times faster than a quicksort of int64).
    None when the keys span 2^16 days or more (the caller sorts the composite)."""
    if not len(key):
        return None
    lowest = key.min()
    if key.max() - lowest >= 1 << 16 or group.min() < -1 or group.max() >= (1 << 32) - 1:
        return None
    order = np.argsort((key - lowest).astype(np.uint16), kind="stable")
    shifted = group[order] + 1  # groups from -1 (rows never looked up) on
    for shift in (0, 16):
        digit = (shifted >> shift) & 0xFFFF
        if shift and not digit.any():
            break
        by_digit = np.argsort(digit.astype(np.uint16), kind="stable")
        order, shifted = order[by_digit], shifted[by_digit]
    return order


class Running:
    """The rows of a table in group and key (a day number) order, with running sums of some columns.

    The sums run on across groups: the total of a group's rows in a window is the running sum at its
    last row before the window's end minus the one at its last row before the start, which is the
    last row of an earlier group when the group has none (the difference then counts from the
    group's first row). Integer columns (counts, money in millionths) are summed exactly as int64
    unless the sum could overflow it. Positions are in the sorted order; the table itself stays
    unsorted (only the rows that are output get taken from it).
    """

    # Group and key share one sortable int64: the key in the low 32 bits (day numbers of the years 1
    # to 9999 lie within ±2^22), the group above.
    SHIFT = 32
    NO_KEY = -(1 << 31)  # a key before every day number
    MAX_GROUP = 1 << 31  # groups below it keep the composite within int64

    def __init__(self, table: pa.Table, group: np.ndarray, sums: tuple[str, ...]):
        key = table["k"].to_numpy().astype(np.int64)
        group = np.asarray(group, np.int64)
        self.table = table
        composite = (group << self.SHIFT) + key
        self.order = _radix_order(group, key)
        if self.order is None:
            # One sort of the composite is lexsort((key, group)) at a fraction of the cost. Not a stable one: ties
            # (rows with the same group and key) come only from groups that are never looked up (orders of ids
            # missing from accounts), the callers' rows being one per group and key, and numpy's quicksort of
            # integers (SIMD) is several times faster than its stable sort of int64.
            self.order = np.argsort(composite)
        self.group, self.key = group[self.order], key[self.order]
        self._composite = composite[self.order]
        self._sums: dict[str, np.ndarray] = {}
        for column in sums:
            self.add_sum(column, self.column(column))

    def add_sum(self, name: str, values: np.ndarray) -> None:
        """Running sums of ``values`` (one per row, in sorted order) under ``name``."""
        if values.dtype.kind in "iub":
            values = values.astype(np.int64 if float(np.abs(values).sum()) < 2.0**62 else np.float64)
        self._sums[name] = np.concatenate([np.zeros(1, values.dtype), np.cumsum(values)])

    def exact(self, name: str) -> bool:
        """Whether the running sums of ``name`` are exact integers (not float64, for fear of overflow)."""
        return self._sums[name].dtype.kind == "i"

    def last_before(self, groups: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """Positions of the last row before ``bounds`` in each group (or of the row before the group)."""
        return np.searchsorted(self._composite, (groups << self.SHIFT) + bounds, side="left") - 1

    def distinct_groups(self) -> np.ndarray:
        """The groups that have rows, ascending: np.unique without its sort, the rows being sorted by group."""
        first = np.ones(len(self.group), bool)
        np.not_equal(self.group[1:], self.group[:-1], out=first[1:])
        return self.group[first]

    def first_row(self, groups: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._composite, (groups << self.SHIFT) + self.NO_KEY, side="left")

    def between(self, column: str, end: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Σ ``column`` over the rows after position ``start`` up to position ``end``."""
        sums = self._sums[column]
        return sums[end + 1] - sums[start + 1]

    def column(self, name: str) -> np.ndarray:
        """A column in sorted order; exact decimals (scale 6) as whole millionths."""
        values = self.table[name]
        return (_millionths(values) if pa.types.is_decimal(values.type) else values.to_numpy())[self.order]

    def take(self, column: str, rows: np.ndarray) -> pa.Array:
        return self.table[column].take(pa.array(self.order[rows]))


class Tables:
    """Creates (once, on first use) and finally drops the shared temporary tables of one call."""

    def __init__(self, con: duckdb.DuckDBPyConnection, periods: list[Period], fiscal_year_start: int,
                 order_windows: set[str], order_partials: dict[str, str] | None = None,
                 clv_discount_rate: float = 0.01, event_windows: set[str] | None = None,
                 order_splits: Iterable[date] = ()):
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
        # Days the order buckets are split at besides the order windows' bounds (see order_span_totals).
        self._order_splits = set(order_splits)
        # The windows event_stats may be asked for (their bounds split the event buckets): all by default.
        self._event_windows = set(WINDOW_PHRASES if event_windows is None else event_windows)
        # Named account subsets (see the module docstring) and the one the KPI being built uses.
        self.scopes: dict[str, list[str]] = {}
        self.scope: str | None = None
        # The scorecard reads only the last period's note: lean KPI queries leave the others NULL.
        self.lean = False
        # Whether first_day_amounts will be asked for: its rows are then read as soon as the buckets exist.
        self.wants_first_days = False
        self._created: list[str] = []
        self._registered: list[str] = []  # Arrow tables the KPI queries read in place
        # Event totals are read on a second connection in a thread of their own (see event_stats); the
        # tables made from them are registered by settle(), before the KPI queries run.
        self._side: ThreadPoolExecutor | None = None
        self._side_con: duckdb.DuckDBPyConnection | None = None
        self._pending: list[Callable[[], None]] = []
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

    def settle(self) -> None:
        """Register the tables whose rows are still being read on the side connection (see event_stats)."""
        while self._pending:
            self._pending.pop(0)()

    def in_background(self, work: Callable[[duckdb.DuckDBPyConnection], object]) -> Future:
        """``work(side connection)`` on the side thread: one at a time, in the order given."""
        if self._side is None:
            self._side_con = self.con.cursor()
            self._side = ThreadPoolExecutor(max_workers=1)
        return self._side.submit(work, self._side_con)

    def drop_all(self) -> None:
        self._pending.clear()
        if self._side is not None:
            self._side.shutdown(wait=True)
            self._side_con.close()
            self._side = self._side_con = None
        for name in reversed(self._created):
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
        self._created.clear()
        for name in self._registered:
            self.con.unregister(name)
        self._registered.clear()

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

    def unique_keys(self, entity: str) -> set[str]:
        """The columns of a loaded table that the loader kept unique (see tables.unique_columns)."""
        return self.once(("unique_keys", entity), lambda: unique_columns(self.con, entity))

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

    def account_ids(self) -> pa.Array:
        """The account_id of each aidx."""
        return self.once(("account_ids",), lambda: pa.array(self.scope_ids(None), pa.string()))

    def grid(self, window: str) -> str:
        """Subquery: every account (of the current scope) × every period with the window columns, and gidx
        (the output order: aidx × periods + pidx)."""
        n_periods = len(self.periods)
        scope = self.scope
        accounts = self.accounts() if scope is None else self.scope_accounts(scope)
        return self.once(("grid", window, scope), lambda: self.inline(
            f"SELECT a.account_id, a.since, a.aidx * {n_periods} + w.pidx AS gidx, w.* "
            f"FROM {accounts} a CROSS JOIN {self.windows(window)} w",
        ))

    # ------------------------------------------------------------------ scopes

    def _account_rows(self) -> pa.Table:
        """The rows of ``accounts()`` in aidx order."""
        return self.once(("account_rows",), lambda: self.con.sql(
            f"SELECT account_id, aidx, since FROM {self.accounts()} ORDER BY aidx").to_arrow_table())

    def _scope_rows(self, scope: str | None) -> pa.Table:
        """The rows of ``scope_accounts(scope)`` (None: of ``accounts()``) in aidx order."""

        def build():
            rows = self._account_rows()
            ids = pa.array(sorted(set(self.scopes[scope])), rows["account_id"].type)
            rows = rows.filter(pc.is_in(rows["account_id"], value_set=ids))
            # Still in account_id order: the positions are the scope's aidx.
            return rows.set_column(1, "aidx", pa.array(np.arange(rows.num_rows, dtype=np.int64)))

        return self._account_rows() if scope is None else self.once(("scope_rows", scope), build)

    def scope_accounts(self, scope: str) -> str:
        """Table: account_id, aidx (position in account_id order within the scope), since: the accounts
        of ``accounts()`` that are in the scope."""
        return self.once(("scope_accounts", scope),
                         lambda: self._register(self.name("sa", scope), self._scope_rows(scope)))

    def scope_ids(self, scope: str | None) -> list[str]:
        """The account ids of a scope (None: all accounts) in aidx order."""
        return self.once(("scope_ids", scope), lambda: self._scope_rows(scope)["account_id"].to_pylist())

    def in_scope(self, column: str) -> str:
        """SQL condition: ``column`` (an account_id) is in the current scope."""
        if self.scope is None:
            return "true"
        return f"{column} IN (SELECT account_id FROM {self.scope_accounts(self.scope)})"

    # ------------------------------------------------------------------ running totals

    def _register(self, name: str, table: pa.Table) -> str:
        """An Arrow table under ``name``, read in place by the KPI queries (copying it into a table
        would cost more than the small reads), until drop_all."""
        self.con.register(name, table)
        self._registered.append(name)
        return name

    @staticmethod
    def _fetch_exact(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
        """The rows of ``sql``, whose ``{exact}`` is the type values are cast to, row by row, before being
        summed: the narrow exact decimal, or the wide one when a value does not fit the narrow."""
        try:
            return con.sql(sql.format(exact=NARROW_EXACT)).to_arrow_table()
        except (duckdb.OutOfRangeException, duckdb.ConversionException):
            return con.sql(sql.format(exact=EXACT)).to_arrow_table()

    def window_ends(self, running: Running, groups: np.ndarray, window: str, shift: str = ""):
        """For each group of ``groups`` and period: (group, pidx, end, start), end and start being the row
        positions in ``running`` of the group's last row before the window's end and before its start (see
        Running.between). Only pairs with a row before the end; ``shift`` picks the window as in
        ``windows`` (current, prior, ye). The rows ``ASOF JOIN ... ON hi > key`` would find."""
        which = {"": 0, "prior": 2, "ye": 4}[shift]
        bounds = [_bounds(row)[which:which + 2] for row in self.window_rows(window)]
        if not len(running.group):
            groups = groups[:0]
        g = np.repeat(groups.astype(np.int64), len(bounds))
        p = np.tile(np.arange(len(bounds), dtype=np.int64), len(groups))
        # No start (lifetime): before every row; no end (no prior window): no row at all.
        lo = np.array([Running.NO_KEY if b is None else day_number(b) for b, _ in bounds], np.int64)[p]
        hi = np.array([Running.NO_KEY if b is None else day_number(b) for _, b in bounds], np.int64)[p]
        end, start = running.last_before(g, hi), running.last_before(g, lo)
        found = (hi != Running.NO_KEY) & (end >= 0) & (running.group[np.maximum(end, 0)] == g)
        return g[found], p[found], end[found], start[found]

    # ------------------------------------------------------------------ events of the other entities

    def event_stats(self, name: str, source: str, window: str, shift: str = "") -> str:
        """Table: account_id, key, pidx, cnt (rows in the window), total (Σ value), last_day (the last
        row's day before the window end), for the pairs with rows in the window.

        ``source`` selects account_id, key (VARCHAR, never NULL), day (DATE), value (DOUBLE or NULL)
        and is named ``name`` (one set of running totals per name). Like the orders, a window's
        numbers are the running totals at its end minus those at its start.

        The source's rows are read and summed up, and the window's table made, on the side thread while
        the caller goes on (the orders scan, the Python between queries); settle() registers the table."""

        scope = self.scope
        # For every account: a scope only picks groups (see build), so the scopes share one scan.
        # Per bucket (like the orders, see _bucket_expression), not per day: far fewer rows.
        bucket = self._bucket_expression("day", self._event_windows)
        sql = (f"SELECT account_id, key, ({bucket})::BIGINT AS k, count(*) AS cnt, "
               "coalesce(sum(value::{exact}), 0) AS total, max(day) AS last_day "
               f"FROM ({source}) WHERE account_id IS NOT NULL AND day IS NOT NULL GROUP BY ALL")

        def totals(con: duckdb.DuckDBPyConnection) -> Running:
            table = self._fetch_exact(con, sql)
            # One group per (account_id, key) pair; numpy sorts integer codes far faster than SQL sorts text.
            # The pair's number is the group (ranked only if too large for Running): the same order either way.
            accounts, keys = _codes(table["account_id"]), _codes(table["key"])
            pair = accounts * (int(keys.max(initial=0)) + 1) + keys
            group = pair if pair.max(initial=0) < Running.MAX_GROUP else np.unique(pair, return_inverse=True)[1]
            return Running(table, group, ("cnt", "total"))

        if window not in self._event_windows:
            raise ValueError(f"event_stats for {window}: not among the windows the event buckets are split for")
        table_name = self.name("es", name, window, shift or "cur", *([scope] if scope else []))

        def build(running: Running) -> pa.Table:
            groups = running.distinct_groups()
            if scope is not None:
                first_ids = running.take("account_id", running.first_row(groups))
                groups = groups[pc.is_in(first_ids, pa.array(self.scopes[scope], pa.string())).to_numpy(
                    zero_copy_only=False)]
            _, p, end, start = self.window_ends(running, groups, window, shift)
            cnt, total = running.between("cnt", end, start), running.between("total", end, start)
            keep = cnt > 0
            end = end[keep]
            return pa.table({"account_id": running.take("account_id", end), "key": running.take("key", end),
                             "pidx": p[keep], "cnt": cnt[keep], "total": total[keep] / 1e6,
                             "last_day": running.take("last_day", end)})

        def start() -> str:
            running = self.once(("event_totals", name), lambda: self.in_background(totals))
            self.window_rows(window)  # cached now: the side thread only reads it
            # Queued after the totals on the one side thread, so waiting for them there cannot block.
            rows = self.in_background(lambda con: build(running.result()))
            self._pending.append(lambda: self._register(table_name, rows.result()))
            return table_name

        return self.once(("event_stats", name, window, shift, scope), start)

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
        return self.read_product_lines().result()

    def read_product_lines(self) -> Future:
        """The distinct product lines (the orders scan needs them), read on the side connection: asked
        for early, the read runs while the caller prepares the first KPIs."""
        return self.once(("product_lines",), lambda: self.in_background(lambda con: [r[0] for r in con.execute(
            "SELECT DISTINCT product_line FROM orders WHERE product_line IS NOT NULL ORDER BY 1").fetchall()]))

    def product_mask_count(self) -> int:
        return -(-len(self.product_lines()) // 64)

    def _bucket_expression(self, column: str, windows: set[str], extra_splits: Iterable[date] = ()) -> str:
        """Day number of the bucket a DATE ``column`` falls in: its month start, or the latest split point
        (a bound of one of ``windows`` or a day of ``extra_splits`` that is not a month start) in its month on
        or before it. Every such window is then an exact union of buckets."""
        month_start = f'("{column}" - DATE \'1970-01-01\') - (day("{column}") - 1)'
        splits = {d for d in extra_splits if d.day != 1}
        for window in windows:
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
        return (f'CASE WHEN "{column}" >= {date_lit(first)} AND "{column}" < {date_lit(end)} THEN '
                f'[{",".join(table)}][("{column}" - {date_lit(first)}) + 1] ELSE {month_start} END')

    @staticmethod
    def _bucket_days() -> str:
        """first_day, last_day of an order bucket (columns b, dmask): a bucket lies within one month, so they
        are its month start plus the lowest and the highest day bit of dmask. Cheaper on the buckets than
        min("date") and max("date") over every order row, and the same days."""
        month_start = f"(b - day({EPOCH_SQL} + b)::INTEGER + 1)"
        mask = "dmask::BIGINT"
        lowest = f"bit_count(({mask} & -({mask})) - 1)::INTEGER"  # trailing zeros
        highest = f"(strlen(bin({mask}))::INTEGER - 1)"          # binary digits - 1
        return (f"{EPOCH_SQL} + ({month_start} + {lowest}) AS first_day, "
                f"{EPOCH_SQL} + ({month_start} + {highest}) AS last_day")

    def order_buckets(self) -> str:
        """Table: account_id, b (bucket start, day number), mo (year*12+month), amount, lines, margin,
        margin_amount, margin_lines, dmask (days of month with orders), first_day, last_day,
        pm0.. (product line masks) and the custom partial aggregates."""

        def build(partials: dict[str, str], exact: str) -> str:
            lines = self.product_lines()
            masks = []
            for k in range(self.product_mask_count()):
                # 64 product lines per mask, each its bit; a CASE costs less per row than a list_position.
                bits = " ".join(f"WHEN {lit(line)} THEN {1 << i}::UBIGINT"
                                for i, line in enumerate(lines[64 * k:64 * (k + 1)]))
                masks.append(f"bit_or(CASE product_line {bits} END) AS pm{k}")
            custom = [f"{sql} AS {column}" for column, sql in partials.items()]
            end = max(p.end for p in self.periods)
            bucket = self._bucket_expression("date", self._order_windows, self._order_splits)
            aggregate = (
                f"SELECT account_id, ({bucket})::INTEGER AS b, sum(amount::{exact}) AS amount, "
                f"count(*) AS lines, sum(coalesce(amount - cost, margin)::{exact}) AS margin, "
                f"sum(amount::{exact}) FILTER (WHERE cost IS NOT NULL OR margin IS NOT NULL) AS margin_amount, "
                "count(coalesce(cost, margin)) AS margin_lines, "
                'bit_or((1::UINTEGER) << (day("date") - 1)::UINTEGER) AS dmask'
                + "".join(", " + m for m in [*masks, *custom])
                + f' FROM orders WHERE account_id IS NOT NULL AND "date" < {date_lit(end)} GROUP BY ALL'
            )
            rest = "".join(f", {c}" for c in [*(f"pm{k}" for k in range(len(masks))), *partials])
            return self.create(
                self.name("ob"), "SELECT account_id, b, amount, lines, margin, margin_amount, margin_lines, dmask, "
                f"{self._bucket_days()}{rest}, year({EPOCH_SQL} + b) * 12 + month({EPOCH_SQL} + b) AS mo "
                f"FROM ({aggregate})")

        def build_or_fall_back() -> str:
            # A custom partial aggregate that fails on the data is dropped (its KPI aggregates the rows).
            attempts = [(self.order_partials, NARROW_EXACT), (self.order_partials, EXACT)]
            if self.order_partials:
                attempts.append(({}, EXACT))
            for i, (partials, exact) in enumerate(attempts):
                try:
                    table = build(partials, exact)
                except duckdb.Error:
                    if i == len(attempts) - 1:
                        raise
                    continue
                self.order_partials = partials
                return table

        table = self.once(("order_buckets",), build_or_fall_back)
        if self.wants_first_days:
            self.once(("first_day_rows",), lambda: self._first_day_rows(table))
        return table

    def order_totals(self) -> Running:
        """The buckets of the accounts of ``accounts()`` (group: aidx; key: b) with running sums of lines,
        margin_lines, days, amount, margin and margin_amount (the money in millionths) and months
        (calendar months with an order, see order_stats)."""

        def build():
            table = self.con.sql(
                "SELECT account_id, b::BIGINT AS k, lines, margin_lines, bit_count(dmask)::BIGINT AS days, "
                + "".join(f"coalesce({c}, 0) AS {c}, " for c in ("amount", "margin", "margin_amount"))
                + f"first_day, last_day, mo FROM {self.order_buckets()}").to_arrow_table()
            # Orders of an account_id missing from accounts get group -1, which is never looked up.
            aidx = pc.fill_null(pc.index_in(table["account_id"], value_set=self.account_ids()), -1)
            running = Running(table, aidx.to_numpy(), ORDER_SUMS)
            # 1 on an account's first bucket of each calendar month (a month may hold several buckets)
            month, group = running.column("mo"), running.group
            new_month = np.ones(len(group), np.int64)
            new_month[1:] = (group[1:] != group[:-1]) | (month[1:] != month[:-1])
            running.add_sum("months", new_month)
            return running

        return self.once(("order_totals",), build)

    def order_stats(self, window: str, shift: str = "") -> str:
        """Table: account_id, pidx and the order totals of the current window (shift ""), the prior
        window ("prior") or the same window a year earlier ("ye"): amount, lines, margin, margin_amount,
        margin_lines, days (distinct order days), months (calendar months with an order); first_day and
        last_day are the account's first and last order before the window end. Accounts without orders
        in the window have no row."""

        def build():
            running = self.order_totals()
            ids = self.account_ids()
            g, p, end, start = self.window_ends(running, np.arange(self.account_count(), dtype=np.int64),
                                                window, shift)
            diff = {c: running.between(c, end, start) for c in (*ORDER_SUMS, "months")}
            keep = diff["lines"] > 0
            end, start, first = end[keep], start[keep], running.first_row(g[keep])
            # The window's first bucket starts a month for the window even when an earlier bucket of
            # its month (before the window) started it for the account.
            months = diff["months"][keep] + (running.between("months", start + 1, start) == 0)
            columns = {"account_id": ids.take(pa.array(g[keep])), "pidx": p[keep],
                       **{c: diff[c][keep] for c in ("lines", "margin_lines", "days")}, "months": months,
                       **{c: diff[c][keep] / 1e6 for c in ("amount", "margin", "margin_amount")},
                       "first_day": running.take("first_day", first), "last_day": running.take("last_day", end)}
            return self._register(self.name("os", window, shift or "cur"), pa.table(columns))

        return self.once(("order_stats", window, shift), build)

    def has_order_totals(self) -> bool:
        """Whether the orders were scanned into running totals (some KPI asked for them)."""
        return ("order_totals",) in self._cache

    def order_span_totals(self, spans: Sequence[tuple[date, date]]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """For each account of ``accounts()`` (aidx order) and each span ``[lo, hi)``: Σ amount in whole
        millionths and the order lines, from the running order totals (no further scan of the orders).

        Every bound must be a bucket bound: a month start, or a day given as ``order_splits``.
        Returns (account_id per aidx, amounts (accounts × spans), lines (accounts × spans))."""
        bounds = [d for span in spans for d in span]
        loose = sorted({d for d in bounds if d.day != 1} - self._order_splits)
        if loose:
            raise ValueError(f"order totals from {loose[0]}: not a month start or an order_splits day")
        running = self.order_totals()
        groups = np.arange(self.account_count(), dtype=np.int64)
        amounts = np.zeros((len(groups), len(spans)), np.int64 if running.exact("amount") else np.float64)
        lines = np.zeros((len(groups), len(spans)), np.int64)
        for i, (lo, hi) in enumerate(spans):
            # An account without rows before hi has start == end: its difference is 0 (see Running.between).
            end = running.last_before(groups, np.full(len(groups), day_number(hi), np.int64))
            start = running.last_before(groups, np.full(len(groups), day_number(lo), np.int64))
            amounts[:, i] = running.between("amount", end, start)
            lines[:, i] = running.between("lines", end, start)
        return self.account_ids(), amounts, lines

    def in_window_buckets(self, window: str) -> str:
        """FROM clause: order buckets (alias ob) of the current scope's accounts joined with the windows
        (alias w) they lie in."""
        buckets = self.order_buckets()
        if self.scope is not None:
            buckets = f"(SELECT * FROM {buckets} WHERE {self.in_scope('account_id')})"
        return (f"{buckets} ob JOIN {self.windows(window)} w "
                "ON ob.b >= w.w_lo_i AND ob.b < w.w_hi_i")

    def _product_count(self, alias: str) -> str:
        k = self.product_mask_count()
        # bit_count is a TINYINT: summed over masks it would overflow past 127 product lines
        return " + ".join(f"coalesce(bit_count(bit_or({alias}.pm{i}))::BIGINT, 0)" for i in range(k)) or "0"

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
        buckets = self.order_buckets()  # with wants_first_days, this started the rows' reading already
        rows = self.once(("first_day_rows",), lambda: self._first_day_rows(buckets))
        return self.once(("first_day",), lambda: self._register(self.name("fd"), rows.result()))

    def _first_day_rows(self, buckets: str) -> Future:
        """The rows of first_day_amounts, read on the side connection: another scan of the orders, which
        then runs alongside the work that comes before the CLV models."""
        firsts = self.con.sql(f"SELECT account_id, min(first_day) AS first_day FROM {buckets} "
                              "GROUP BY account_id").to_arrow_table()
        name = self.name("fd", "firsts")

        def read(con: duckdb.DuckDBPyConnection) -> pa.Table:
            con.register(name, firsts)
            try:
                return con.sql(
                    f'SELECT f.account_id, f.first_day, sum(o.amount::{EXACT})::DOUBLE AS first_amount FROM orders o '
                    f'JOIN {name} f ON o.account_id = f.account_id AND o."date" = f.first_day '
                    "WHERE o.amount IS NOT NULL GROUP BY f.account_id, f.first_day").to_arrow_table()
            finally:
                con.unregister(name)

        return self.in_background(read)
