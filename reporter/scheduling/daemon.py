"""The scheduler: on every tick, run each (report, period) that is due and not done, exactly once
across every scheduler sharing the ledger.

A tick (`tick`) reads the configs, asks the planner what each scheduled report owes and runs it:

    claim (claims.py) ─► pipeline.run_report ─► finish the claim (done | partial)

What counts as done — the planner's `done` set — is a period with a ledger run in state `done`
(so a manual `reporter run --period` counts too) or a claim in state `done` or `skipped`.
A period that ended `partial` is not done: it is retried (claim `partial`, retried from its
retry time: 15 minutes after the first partial run, doubling per attempt up to a day) for as
long as it is one of the newest `catch_up` due periods. Each retry renders again and sends only
what the ledger still has pending, so nothing is sent twice; an email "in doubt" stays with the
operator (`reporter deliveries`, `reporter run --resend`).

Stopping (SIGTERM/SIGINT sets `stop`): the run in flight finishes the delivery it is sending,
then stops before the next one (the check sits in the pipeline's progress callback); its ledger
run is closed as `partial`, its claim released as `partial` due at once, so the next start
completes the period. `run_daemon` then returns and the command exits 0.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import schedule as schedule_lib
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from .. import pipeline
from ..clock import Clock, SystemClock
from ..config import load_project
from ..deliver.ledger import Ledger, default_url
from ..errors import DeliveryError, RunInterrupted
from .claims import Claims
from .planner import Due, due_periods, plan

DEFAULT_LEASE_SECONDS = 300
DEFAULT_RETRY_SECONDS = 900
MAX_RETRY_SECONDS = 86_400
FAILING_STATES = ("partial", "failed", "lost")

Log = Callable[..., None]


@dataclass
class TickResult:
    report: str
    period: str
    state: str          # done | partial | stopped | failed | lost | skipped | busy
    counts: dict = field(default_factory=dict)
    error: str | None = None


class Interrupted(RunInterrupted):
    """Raised between two steps of a run (never inside a delivery) when it has to stop."""


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- logs

class EventLog:
    """log(event, **fields): one JSON object per line with format="json", else one readable line."""

    def __init__(self, format: str = "text", stream=None, wall: Clock | None = None):
        if format not in ("text", "json"):
            raise ValueError(f"log format is text or json, not {format!r}")
        self.format = format
        self.stream = stream
        self.wall = wall or SystemClock()
        self._lock = threading.Lock()  # the heartbeat thread logs too

    def __call__(self, event: str, **fields) -> None:
        ts = self.wall.now().astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        record = {"ts": ts, "event": event, **{k: _plain(v) for k, v in fields.items() if v is not None}}
        line = json.dumps(record, ensure_ascii=False) if self.format == "json" else _text_line(record)
        with self._lock:
            print(line, file=self.stream or sys.stdout, flush=True)


def _plain(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def _text_line(record: dict) -> str:
    fields = dict(record)
    parts = [fields.pop("ts"), fields.pop("event")]
    if "report" in fields:
        parts.append(f"{fields.pop('report')} {fields.pop('period', '')}".rstrip())
    line = " ".join(parts)
    if "state" in fields:
        line += f": {fields.pop('state')}"
    counts = fields.pop("counts", None)
    if counts:
        line += " (" + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) + ")"
    error = fields.pop("error", None)
    line += "".join(f" {k}={v}" for k, v in fields.items())
    return line + (f"; {error}" if error else "")


# --------------------------------------------------------------------------- one tick

def tick(project_dir: Path | str, clock: Clock, holder: str, log: Log, *, run=None, wall: Clock | None = None,
         lease_seconds: float = DEFAULT_LEASE_SECONDS, retry_seconds: float = DEFAULT_RETRY_SECONDS,
         stop: threading.Event | None = None) -> list[TickResult]:
    """Run everything due at clock.now(); returns what happened to each period it touched.

    `run` is pipeline.run_report unless a test injects another; `wall` times the leases (see claims.py).
    Config errors raise (ConfigError); a failing run is logged and returned, never raised.
    """
    run = run or pipeline.run_report
    wall = wall or SystemClock()
    stop = stop or threading.Event()
    config = load_project(project_dir)
    now = clock.now()
    ledger = _open_ledger(config.project.ledger_url or default_url(config.output_dir), clock)
    results: list[TickResult] = []
    try:
        claims = Claims(ledger.engine)
        for name, report in config.reports.items():
            if report.schedule is None or stop.is_set():
                continue
            rows = {r["period"]: r for r in claims.rows(name)}
            due, skipped = _due(name, report.schedule, now, ledger, rows, config.project.fiscal_year_start)
            for d in skipped:
                if claims.skip(name, d.period.label, holder, wall.now()):
                    log("skipped", report=name, period=d.period.label, state="skipped", holder=holder,
                        reason=f"more than catch_up={report.schedule.catch_up} periods missed; "
                               f"run it with `reporter run --report {name} --period {d.period.label}`")
                    results.append(TickResult(name, d.period.label, "skipped"))
            for d in due:
                if stop.is_set():
                    break
                row = rows.get(d.period.label)
                if row is not None and row["state"] == "partial" and row["lease_until"] > wall.now():
                    continue  # its retry time has not come yet
                results.append(_run_one(project_dir, name, d.period.label, clock, holder, log, claims, run,
                                        wall, lease_seconds, retry_seconds, stop))
    finally:
        ledger.close()
    return results


def _open_ledger(url: str, clock: Clock) -> Ledger:
    try:
        try:
            return Ledger(url, clock=clock)
        except DBAPIError:
            # Two schedulers starting at once on a fresh database both create the tables; one
            # loses, and its second look finds them.
            return Ledger(url, clock=clock)
    except DBAPIError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DeliveryError(f"cannot open the ledger at {where}: {reason}") from None


def _due(name: str, schedule, now: datetime, ledger: Ledger, rows: dict, fiscal_year_start: int):
    """(periods to run now, oldest first; periods to report as skipped)."""
    done = {r["period"] for r in ledger.runs(name) if r["state"] == "done"}
    done |= {period for period, row in rows.items() if row["state"] in ("done", "skipped")}
    planned = plan(name, schedule, now, done, fiscal_year_start)
    # Unfinished periods (partial, or whose holder died) within catch-up reach are retried even
    # when a newer period has finished since.
    window = due_periods(name, schedule, now, fiscal_year_start)[-max(schedule.catch_up, 1):]
    unfinished = [d for d in window if d.period.label not in done
                  and rows.get(d.period.label, {}).get("state") in ("running", "partial")]
    due: dict[str, Due] = {d.period.label: d for d in [*unfinished, *planned.run]}
    return sorted(due.values(), key=lambda d: d.period.start), planned.skipped


def _run_one(project_dir, name: str, period: str, clock: Clock, holder: str, log: Log, claims: Claims,
             run, wall: Clock, lease_seconds: float, retry_seconds: float,
             stop: threading.Event) -> TickResult:
    if not claims.try_claim(name, period, holder, lease_seconds, wall.now()):
        row = next((r for r in claims.rows(name) if r["period"] == period), {})
        log("busy", report=name, period=period, holder=holder, claimed_by=row.get("holder"),
            lease_until=row.get("lease_until"))
        return TickResult(name, period, "busy")
    log("claimed", report=name, period=period, holder=holder)
    lost = threading.Event()
    check = _StopCheck(stop, lost)
    heartbeat = _Heartbeat(claims, name, period, holder, lease_seconds, wall, lost, log)
    heartbeat.start()
    try:
        summary = run(project_dir, name, period, clock, progress=check)
        state = "done" if summary.state in ("done", "nothing_to_do") else "partial"
        result = TickResult(name, period, state, summary.counts, summary.error)
    except Interrupted as exc:
        # The pipeline has recorded its ledger run as partial (RunInterrupted).
        result = TickResult(name, period, "lost" if lost.is_set() else "stopped", check.counts(), str(exc))
    except Exception as exc:  # one report's failure must not stop the scheduler or the other reports
        error = " ".join(str(exc).split()) or type(exc).__name__
        result = TickResult(name, period, "failed", check.counts(), error)  # the ledger run: failed
    finally:
        heartbeat.stop()
    if lost.is_set():
        result.state = "lost"
    else:
        _finish_claim(claims, name, period, holder, result.state, wall.now(), retry_seconds)
    log("run_finished", report=name, period=period, state=result.state, counts=result.counts, holder=holder,
        error=result.error)
    return result


def _finish_claim(claims: Claims, name: str, period: str, holder: str, state: str, now: datetime,
                  retry_seconds: float) -> None:
    if state == "done":
        claims.finish(name, period, holder, "done", now)
    elif state == "stopped":
        claims.finish(name, period, holder, "partial", now, retry_at=now)  # the next start goes on at once
    else:
        attempts = next(r["attempts"] for r in claims.rows(name) if r["period"] == period)
        delay = min(retry_seconds * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)
        claims.finish(name, period, holder, "partial", now, retry_at=now + timedelta(seconds=delay))


class _StopCheck:
    """The pipeline's progress callback: raises Interrupted at the next step once a stop is asked for
    (or the claim was lost) — between two deliveries, never inside one, and never after the last."""

    def __init__(self, stop: threading.Event, lost: threading.Event):
        self.stop, self.lost = stop, lost
        self.delivered, self.envelopes = 0, 0

    def __call__(self, stage: str, done: int, total: int, label: str = "") -> None:
        if stage == "deliver":
            self.delivered, self.envelopes = done, total
            if done >= total:
                return
        if self.lost.is_set():
            raise Interrupted("another scheduler took this period over: our lease ran out")
        if self.stop.is_set():
            raise Interrupted(f"stopped by a signal after {self.delivered} of {self.envelopes} deliveries; "
                              "the next start completes the period")

    def counts(self) -> dict:
        return {"envelopes": self.envelopes, "processed": self.delivered} if self.envelopes else {}


class _Heartbeat(threading.Thread):
    """Renews the claim every lease/3 while the run goes on; sets `lost` if the claim was taken over."""

    def __init__(self, claims: Claims, report: str, period: str, holder: str, lease_seconds: float, wall: Clock,
                 lost: threading.Event, log: Log):
        super().__init__(name=f"heartbeat {report} {period}", daemon=True)
        self.claims, self.report, self.period, self.holder = claims, report, period, holder
        self.lease_seconds, self.wall, self.lost, self.log = lease_seconds, wall, lost, log
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.lease_seconds / 3):
            try:
                if not self.claims.renew(self.report, self.period, self.holder, self.lease_seconds, self.wall.now()):
                    self.lost.set()
                    self.log("claim_lost", report=self.report, period=self.period, holder=self.holder)
                    return
            except DBAPIError as exc:  # a database hiccup: the lease outlasts two missed beats
                self.log("renew_failed", report=self.report, period=self.period, holder=self.holder,
                         error=str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__)

    def stop(self) -> None:
        self._done.set()
        self.join()


# --------------------------------------------------------------------------- the daemon

def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` (the run in flight finishes its current delivery); a second one
    ends the process at once, like a kill (the email in flight is then in doubt). Main thread only."""
    def handler(signum, _frame):
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_daemon(project_dir: Path | str, clock: Clock, *, every_seconds: float = 60, stop: threading.Event,
               holder: str, log: Log, **tick_options) -> None:
    """Tick now, then every `every_seconds` (the `schedule` library's own Scheduler) until `stop` is set.

    A broken config at start raises (the service fails to start); on later ticks every error is
    logged and the daemon goes on (the next tick may find the config fixed).
    """
    scheduler = schedule_lib.Scheduler()

    def job() -> None:
        try:
            tick(project_dir, clock, holder, log, stop=stop, **tick_options)
        except Exception as exc:
            log("tick_failed", holder=holder, error=" ".join(str(exc).split()) or type(exc).__name__)

    log("started", holder=holder, every_seconds=every_seconds)
    tick(project_dir, clock, holder, log, stop=stop, **tick_options)
    scheduler.every(every_seconds).seconds.do(job)
    while not stop.is_set():
        scheduler.run_pending()
        idle = scheduler.idle_seconds
        stop.wait(max(0.0, idle if idle is not None else every_seconds))
    log("stopped", holder=holder)
