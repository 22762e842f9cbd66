"""The compute benchmark: the full scorecard of one month against the floor, one scan of every table.

In one measuring process (a fresh child, so neither data generation nor other benchmarks count
towards its memory):

1. load: ``load_project`` + ``load_sources`` (every Parquet source into the embedded DuckDB);
2. floor: one DuckDB scan of every loaded entity table, reading every column once
   (``SELECT count(*), sum(hash(<all columns>))``); for information, the same over the Parquet
   files on a fresh connection;
3. scorecard: ``build_scorecard(con, config, period)``: every tier KPI over 12 trend periods,
   CLV (BG/NBD + Gamma-Gamma), health, percentiles, early warnings, portfolio KPIs.

Targets (issue 3): scorecard / floor <= 3 and peak RSS <= 4 GiB on 2 cores. Peak RSS is the
process's high-water mark (VmHWM), reset before each step where the kernel allows it, so every
step reports its own peak; the figure checked is the highest of them (what one
`reporter scorecard` run needs). DuckDB runs with 2 threads.

Then, unless --no-breakdown, one more (untimed for the targets) scorecard run with timers around
its steps: the SQL statements of every KPI and shared table, the CLV fits, scoring, warnings and
portfolio KPIs. That run wraps module functions and the connection from outside; reporter/ is
not changed. The scorecard runs some work on side threads (each with its own cursor): their time is
listed apart, as it overlaps the main thread's.

    python -m bench compute [--scale 0.1] [--accounts N] [--orders N] [--seed S] [--period 2026-10]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from .generate import add_size_options, ensure_data, sizes_from

GIB = 2**30
RATIO_TARGET = 3.0
RSS_TARGET_GIB = 4.0
THREADS = 2
FLOOR_RUNS = 3
ENTITY_NAMES = ("accounts", "orders", "surveys", "tickets", "interactions", "contacts", "opportunities", "costs")


# --------------------------------------------------------------------------- memory

def _vm_hwm() -> int | None:
    """Peak resident set of this process in bytes since start or the last reset (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    hwm = _vm_hwm()
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class Step:
    """Wall time, CPU time (all threads) and peak RSS of one step."""

    def __init__(self, name: str, reset: bool):
        self.name, self.reset = name, reset
        self.wall = self.cpu = 0.0
        self.peak = 0

    def __enter__(self):
        if self.reset:
            _reset_peak()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.peak = _peak_rss()
        return False


@contextlib.contextmanager
def duckdb_threads(threads: int):
    """Connections opened inside get ``threads`` threads. load_sources opens its own connection
    and locks its configuration, so the setting has to be there from the start."""
    import duckdb

    original = duckdb.connect

    def connect(database=":memory:", read_only=False, config=None, **kwargs):
        return original(database, read_only, {"threads": threads, **(config or {})}, **kwargs)

    duckdb.connect = connect
    try:
        yield
    finally:
        duckdb.connect = original


# --------------------------------------------------------------------------- the floor

def _scan_sql(source: str, columns: list[str]) -> str:
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    return f"SELECT count(*), sum(hash({quoted})) FROM {source}"


def floor_scan(con) -> dict[str, float]:
    """Seconds per entity table for one scan that reads every column."""
    seconds = {}
    for name in ENTITY_NAMES:
        columns = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        t0 = time.perf_counter()
        con.execute(_scan_sql(name, columns)).fetchall()
        seconds[name] = time.perf_counter() - t0
    return seconds


def parquet_scan(root: Path, threads: int) -> dict[str, float]:
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    seconds = {}
    try:
        for name in ENTITY_NAMES:
            path = (root / "data" / f"{name}.parquet").as_posix().replace("'", "''")
            source = f"read_parquet('{path}')"
            columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
            t0 = time.perf_counter()
            con.execute(_scan_sql(source, columns)).fetchall()
            seconds[name] = time.perf_counter() - t0
    finally:
        con.close()
    return seconds


# --------------------------------------------------------------------------- the breakdown

class Timers:
    """Seconds and calls per label; ``stage`` is the innermost timed function (statements are charged to it).
    Each thread has its own stack of timed functions (the scorecard runs some queries on a second thread)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def stack(self) -> list[str]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def add(self, label: str, seconds: float) -> None:
        with self._lock:
            self.seconds[label] += seconds
            self.calls[label] += 1

    @contextlib.contextmanager
    def timing(self, label: str):
        self.stack.append(label)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(label, time.perf_counter() - t0)
            self.stack.pop()


# The side thread waits for the KPI library's order totals before it works: its own time is its parts'.
SIDE = "side thread: facts + portfolio KPIs, with its wait"
SIDE_PARTS = ("warnings: facts (SQL)", "portfolio_kpis", "portfolio: revenue scan (SQL)")
KPI_SIDE = "KPI side thread"
_KPI_ID = re.compile(r"'([A-Za-z0-9_]+)' AS kpi\b")
_TEMP_TABLE = re.compile(r"CREATE TEMP TABLE (_kpi_[0-9a-f]+)_(\S+)")


def _statement_label(sql: str) -> str:
    head = sql.lstrip()[:200]
    if m := _KPI_ID.search(sql[:4000]):
        if head.startswith(("INSERT", "CREATE")):
            return f"kpi {m[1]}"
    if m := _TEMP_TABLE.match(head):
        name = m[2]
        return "kpi results" if name == "results" else f"shared table {name}"
    if head.upper().startswith("SELECT KIDX") or "FROM _kpi_" in head and "ORDER BY kidx" in sql:
        return "collect KPI frame"
    return "other SQL: " + " ".join(head.split())[:60]


class _TimedRelation:
    def __init__(self, relation, timers: Timers, label: str):
        self._relation, self._timers, self._label = relation, timers, label

    def __getattr__(self, name):
        attr = getattr(self._relation, name)
        if name.startswith(("to_", "fetch", "df", "arrow", "pl")) and callable(attr):
            def timed(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return attr(*args, **kwargs)
                finally:
                    self._timers.add(self._label, time.perf_counter() - t0)
            return timed
        return attr


class TimedConnection:
    """A DuckDB connection that charges each statement to ``<stage> > <statement label>``; a cursor's
    statements outside any timed function (the KPI tables' side thread) to ``KPI_SIDE``."""

    def __init__(self, con, timers: Timers, stage: str = "scorecard"):
        self._con, self._timers, self._stage = con, timers, stage

    def _label(self, sql: str) -> str:
        stage = self._timers.stack[-1] if self._timers.stack else self._stage
        return f"{stage} > {_statement_label(sql)}"

    def execute(self, sql, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            self._con.execute(sql, *args, **kwargs)
        finally:
            self._timers.add(self._label(sql), time.perf_counter() - t0)
        return self  # so .fetchone() / .fetchall() go through us and the real connection

    def sql(self, query, *args, **kwargs):
        return _TimedRelation(self._con.sql(query, *args, **kwargs), self._timers, self._label(query))

    def cursor(self):
        return TimedConnection(self._con.cursor(), self._timers, KPI_SIDE)

    def __getattr__(self, name):
        return getattr(self._con, name)


@contextlib.contextmanager
def _wrapped(timers: Timers, targets: list[tuple[object, str, str]]):
    """Replace module attributes by timed versions for the duration of the block. A target that no
    longer exists is an error: silently skipping it would leave its time in the wrong area."""
    missing = [f"{module.__name__}.{attr}" for module, attr, _ in targets if not hasattr(module, attr)]
    if missing:
        raise AttributeError(f"the breakdown wraps {', '.join(missing)}, which no longer exist: update bench/compute/run.py")
    saved = []
    for module, attr, label in targets:
        original = getattr(module, attr)

        def timed(*args, __original=original, __label=label, **kwargs):
            if __label in timers.stack:  # a recursive call: the outermost one is timed
                return __original(*args, **kwargs)
            with timers.timing(__label):
                return __original(*args, **kwargs)

        saved.append((module, attr, original))
        setattr(module, attr, timed)
    try:
        yield
    finally:
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)


def breakdown(con, config, period) -> tuple[float, list[tuple[str, float, int]]]:
    """One instrumented scorecard run: (total seconds, [(label, seconds, calls)])."""
    from reporter.compute import clv, kpis, scorecard

    timers = Timers()
    targets = [
        (scorecard, "compute_kpi_cells", "compute_kpis"),  # the scorecard's entry to the KPI library
        (scorecard, "_accounts", "scorecard: read accounts"),
        (scorecard, "assign_tiers", "scorecard: assign tiers"),
        (scorecard, "score_accounts", "scorecard: score accounts (status, health, percentiles)"),
        (scorecard, "early_warnings", "early_warnings"),
        (scorecard, "portfolio_kpis", "portfolio_kpis"),
        (scorecard, "_tier_summaries", "scorecard: tier summaries"),
        # p_alive and clv_predicted: the RFM summary, the fits and the scoring, run inside compute_kpis
        (kpis, "_model_query", "clv: RFM + fits + scoring"),
        (kpis, "_formula_arrays", "kpi formulas (numpy)"),
        (clv, "fit_bgnbd", "clv: fit BG/NBD"),
        (clv, "fit_gamma_gamma", "clv: fit Gamma-Gamma"),
        (clv, "p_alive", "clv: p_alive"),
        (clv, "predicted_clv", "clv: predicted_clv"),
        # warnings' facts and the portfolio KPIs, on a second connection and thread while the KPIs are computed
        (scorecard, "_side_facts", SIDE),
        (scorecard, "Facts", "warnings: facts (SQL)"),
        (scorecard, "revenue_by_account", "portfolio: revenue scan (SQL)"),  # only without the KPIs' order totals
    ]
    timed_con = TimedConnection(con, timers)
    with _wrapped(timers, targets):
        t0 = time.perf_counter()
        scorecard.build_scorecard(timed_con, config, period)
        total = time.perf_counter() - t0
    rows = sorted(((label, s, timers.calls[label]) for label, s in timers.seconds.items()), key=lambda r: -r[1])
    return total, rows


def areas(total: float, rows: list[tuple[str, float, int]]) -> list[tuple[str, float]]:
    """The breakdown folded into a few areas that add up to the total, then (not in the sum) the side
    threads, which run alongside the KPIs; the main thread's waits for them are in the area that waits
    (compute_kpis' Python for the KPI side thread, "other" for the scorecard's)."""
    seconds = {label: s for label, s, _ in rows}

    def prefixed(prefix: str) -> float:
        return sum(s for label, s in seconds.items() if label.startswith(prefix))

    # Statements are charged to the innermost timed function: SQL run inside the CLV models is under
    # "clv: ...", not "compute_kpis > ...", and the CLV total (SQL and Python) is part of compute_kpis.
    kpi_sql = prefixed("compute_kpis > ")
    collect = seconds.get("compute_kpis > collect KPI frame", 0.0)
    clv_total = seconds.get("clv: RFM + fits + scoring", 0.0)
    clv_sql = prefixed("clv: RFM + fits + scoring > ")
    clv_math = sum(seconds.get(k, 0.0) for k in ("clv: fit BG/NBD", "clv: fit Gamma-Gamma", "clv: p_alive",
                                                  "clv: predicted_clv"))
    kpis_python = seconds.get("compute_kpis", 0.0) - kpi_sql - clv_total
    scoring = seconds.get("scorecard: score accounts (status, health, percentiles)", 0.0)
    warnings_py = seconds.get("early_warnings", 0.0)
    out = [
        ("KPI SQL: order buckets, running-total inputs, grids", kpi_sql - collect),
        ("KPI SQL: every KPI's query, collected in one statement", collect),
        ("CLV: RFM SQL (lifetime order stats)", clv_sql),
        ("CLV: BG/NBD + Gamma-Gamma fits and scoring", clv_math),
        ("CLV: other Python", clv_total - clv_sql - clv_math),
        ("compute_kpis: Python (running totals, arrays, formulas)", kpis_python),
        ("scorecard: status, health, percentiles (Python)", scoring),
        ("warnings: Python", warnings_py),
    ]
    out.append(("other", total - sum(s for _, s in out)))
    out.append(("(alongside: warnings' facts + portfolio KPIs)", sum(seconds.get(k, 0.0) for k in SIDE_PARTS)))
    out.append(("(alongside: KPI event totals, product lines, first days)", prefixed(f"{KPI_SIDE} > ")))
    return out


# --------------------------------------------------------------------------- measuring

def measure(root: Path, period_text: str, threads: int, with_breakdown: bool) -> dict:
    import duckdb

    from reporter.compute.periods import add_months, parse_period
    from reporter.compute.scorecard import build_scorecard
    from reporter.config import load_project
    from reporter.sources import load_sources

    resets = _reset_peak()
    steps: dict[str, Step] = {}

    with Step("load", resets) as step:
        t0 = time.perf_counter()
        config = load_project(root)
        config_seconds = time.perf_counter() - t0
        period = parse_period(period_text, config.project.fiscal_year_start)
        horizon = (add_months(period.end, -config.project.history_months), period.end)
        with duckdb_threads(threads):
            data = load_sources(config.sources, config.root, horizon)
    steps["load"] = step
    con = data.con
    used_threads = con.execute("SELECT current_setting('threads')").fetchone()[0]

    # The floor is cheap, so it runs three times and the median run counts (the first one also
    # pays for first-touch memory, which the VM makes noisy).
    floor_runs = []
    for _ in range(FLOOR_RUNS):
        with Step("floor", resets) as step:
            per_table = floor_scan(con)
        floor_runs.append((step, per_table))
    step, per_table = sorted(floor_runs, key=lambda r: r[0].wall)[FLOOR_RUNS // 2]
    step.peak = max(s.peak for s, _ in floor_runs)
    steps["floor"] = step

    with Step("scorecard", resets) as step:
        card = build_scorecard(con, config, period)
    steps["scorecard"] = step

    with Step("parquet", resets) as step:
        per_file = parquet_scan(root, threads)
    steps["parquet"] = step

    peak = max(steps[s].peak for s in ("load", "floor", "scorecard")) if resets else steps["scorecard"].peak
    ratio = steps["scorecard"].wall / steps["floor"].wall
    accounts = card["accounts"]
    result = {
        "period": period.label,
        "duckdb_version": duckdb.__version__,
        "threads": used_threads,
        "rows": dict(data.counts),
        "duckdb_memory_gib": _duckdb_memory(con),
        "per_step_peaks": resets,
        "config_s": config_seconds,
        "steps": {name: {"wall_s": s.wall, "cpu_s": s.cpu, "peak_rss_gib": s.peak / GIB} for name, s in steps.items()},
        "floor_tables_s": per_table,
        "floor_runs_s": [s.wall for s, _ in floor_runs],
        "parquet_files_s": per_file,
        "ratio": ratio,
        "peak_rss_gib": peak / GIB,
        "ratio_pass": ratio <= RATIO_TARGET,
        "rss_pass": peak / GIB <= RSS_TARGET_GIB,
        "scorecard": {
            "accounts": len(accounts),
            "with_warnings": sum(1 for a in accounts if a["warnings"]),
            "warnings": sum(len(a["warnings"]) for a in accounts),
            "warnings_by_code": dict(sorted(Counter(w["code"] for a in accounts for w in a["warnings"]).items())),
            "health_distribution": card["portfolio"].get("health_distribution"),
        },
    }
    if with_breakdown:
        total, rows = breakdown(con, config, period)
        result["breakdown"] = {"total_s": total, "rows": rows, "areas": areas(total, rows)}
    return result


def _duckdb_memory(con) -> float | None:
    try:
        return con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0] / GIB
    except Exception:  # an older DuckDB without duckdb_memory()
        return None


# --------------------------------------------------------------------------- printing

def print_report(result: dict, sizes: dict, seed: int, generate_s: float | None) -> None:
    s = result["steps"]
    rows = ", ".join(f"{k} {v:,}" for k, v in result["rows"].items())
    print(f"\ncompute benchmark · period {result['period']} · seed {seed} · DuckDB {result['duckdb_version']}, "
          f"{result['threads']} threads")
    print(f"  rows: {rows}")
    print(f"  {'step':<46}{'wall s':>9}{'cpu s':>9}{'peak RSS GiB':>14}")
    gen = "cached" if generate_s is None else f"{generate_s:.1f}"
    print(f"  {'generate data (not in the measuring process)':<46}{gen:>9}")

    def line(label: str, step: dict) -> None:
        print(f"  {label:<46}{step['wall_s']:>9.2f}{step['cpu_s']:>9.2f}{step['peak_rss_gib']:>14.2f}")

    line("load (load_project + load_sources)", s["load"])
    print(f"  {'  of which load_project':<46}{result['config_s']:>9.2f}")
    line("floor: one scan of every loaded table", s["floor"])
    line("scorecard (build_scorecard)", s["scorecard"])
    line("info: one scan of every Parquet file", s["parquet"])
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"  ratio scorecard / floor: {result['ratio']:.1f}  (target ≤ {RATIO_TARGET:g})  "
          f"{verdict(result['ratio_pass'])}")
    scope = "highest step peak (load, floor, scorecard)" if result["per_step_peaks"] else "process peak"
    print(f"  peak RSS: {result['peak_rss_gib']:.2f} GiB, {scope}  (target ≤ {RSS_TARGET_GIB:g} GiB)  "
          f"{verdict(result['rss_pass'])}")
    if result.get("duckdb_memory_gib") is not None:
        print(f"  DuckDB memory after the run: {result['duckdb_memory_gib']:.2f} GiB")
    sc = result["scorecard"]
    print(f"  scorecard: {sc['accounts']:,} accounts, {sc['warnings']:,} warnings on {sc['with_warnings']:,} "
          f"accounts {sc['warnings_by_code']}")
    print(f"  health: {sc['health_distribution']}")
    floor = " · ".join(f"{k} {v:.2f}" for k, v in result["floor_tables_s"].items())
    runs = ", ".join(f"{v:.2f}" for v in result["floor_runs_s"])
    print(f"  floor runs (s): {runs} (the median counts); per table: {floor}")
    if "breakdown" in result:
        b = result["breakdown"]
        print(f"\n  where the scorecard time goes (one instrumented run, {b['total_s']:.2f} s):")
        for label, seconds in b["areas"]:
            print(f"  {label:<56}{seconds:>8.2f}{100 * seconds / b['total_s']:>6.1f}%")
        print("\n  in detail (nested rows are also counted in their parents; 'a > b' = statement b run inside a):")
        print(f"  {'step':<78}{'s':>8}{'%':>7}{'calls':>7}")
        for label, seconds, calls in b["rows"]:
            if seconds < 0.005 * b["total_s"]:
                continue
            print(f"  {label[:78]:<78}{seconds:>8.2f}{100 * seconds / b['total_s']:>6.1f}%{calls:>7}")


# --------------------------------------------------------------------------- entry points

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench compute", description=__doc__.split("\n\n")[0])
    add_size_options(parser)
    parser.add_argument("--period", default="2026-10")
    parser.add_argument("--threads", type=int, default=THREADS, help="DuckDB threads (default 2)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the instrumented run")
    parser.add_argument("--measure", metavar="PROJECT", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    sizes = sizes_from(args.scale, args.accounts, args.orders)

    if args.measure:
        result = measure(Path(args.measure), args.period, args.threads, not args.no_breakdown)
        (Path(args.measure) / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        return result

    root, generate_s = ensure_data(sizes, args.seed)
    if generate_s is not None:
        print(f"  generated {root} in {generate_s:.1f} s", flush=True)
    results = root / "results.json"
    results.unlink(missing_ok=True)
    child = [sys.executable, "-m", "bench.compute.run", "--measure", str(root), "--period", args.period,
             "--threads", str(args.threads), *(["--no-breakdown"] if args.no_breakdown else [])]
    cwd = Path(__file__).resolve().parents[2]
    subprocess.run(child, check=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(cwd)})
    result = json.loads(results.read_text())
    result.update(sizes=asdict(sizes), seed=args.seed, generate_s=generate_s, project=str(root))
    print_report(result, asdict(sizes), args.seed, generate_s)
    return result


def summary(result: dict) -> str:
    s = result["steps"]
    return (f"compute: load {s['load']['wall_s']:.1f} s · floor {s['floor']['wall_s']:.2f} s · "
            f"scorecard {s['scorecard']['wall_s']:.2f} s · ratio {result['ratio']:.1f} "
            f"({'PASS' if result['ratio_pass'] else 'FAIL'} ≤ {RATIO_TARGET:g}) · peak RSS "
            f"{result['peak_rss_gib']:.2f} GiB ({'PASS' if result['rss_pass'] else 'FAIL'} ≤ {RSS_TARGET_GIB:g})")


if __name__ == "__main__":
    main()
