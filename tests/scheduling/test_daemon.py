"""tick() with a frozen clock and a fake run: what is due runs once, skipped periods are reported,
partial periods come back, DST days give one run per job, and a stop request ends a run between emails."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from scheduling.conftest import FIXTURES, claims_of, ledger_of, utc

from reporter.clock import FixedClock
from reporter.config import load_project
from reporter.pipeline import RunSummary
from reporter.scheduling import daemon
from reporter.scheduling.daemon import EventLog, Interrupted, run_daemon, tick

HOLDER = "test:1"


def write_project(tmp_path: Path, schedules: dict[str, str]) -> Path:
    """The valid fixture with these reports (portfolio scorecards), each `schedule: <flow mapping>`."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "valid", project)
    lines = ["reports:"]
    for name, schedule in schedules.items():
        lines += [f"  {name}:", "    kind: portfolio_scorecard", "    audience: {recipients: [ceo@example.com]}",
                  f"    schedule: {schedule}"]
    (project / "configs" / "reports.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return project


class FakeRuns:
    """Stands in for pipeline.run_report: records (report, period, now) and returns the scripted state."""

    def __init__(self, state: str = "done"):
        self.calls: list[tuple[str, str, object]] = []
        self.state = state

    def __call__(self, project_dir, report, period, clock, *, progress=None, **_):
        self.calls.append((report, period, clock.now()))
        return RunSummary(report, period, self.state, 1, 1, ["ceo@example.com"] if self.state == "done" else [],
                          [], [], [] if self.state == "done" else [("ceo@example.com", "451 try later", 451)],
                          {}, [], Path("."), None)


class Events(list):
    def __call__(self, event, **fields):
        self.append({"event": event, **fields})


@pytest.fixture
def cached_configs(monkeypatch):
    """The daemon reads the configs on every tick; a thousand simulated ticks read them once."""
    cache: dict = {}

    def cached(project_dir):
        if str(project_dir) not in cache:
            cache[str(project_dir)] = load_project(project_dir)
        return cache[str(project_dir)]

    monkeypatch.setattr(daemon, "load_project", cached)


def mark_done(project: Path, report: str, period: str) -> None:
    seed = ledger_of(project)
    from reporter.scheduling.claims import Claims

    claims = Claims(seed.engine)
    assert claims.try_claim(report, period, "seed", 60, utc(2020, 1, 1))
    assert claims.finish(report, period, "seed", "done", utc(2020, 1, 1))
    seed.close()


def test_a_tick_runs_the_missed_period_once_and_the_next_tick_nothing(tmp_path):
    project = write_project(tmp_path, {"monthly": '{cron: "0 7 1 * *", timezone: Asia/Shanghai}'})
    mark_done(project, "monthly", "2026-09")
    runs, log = FakeRuns(), Events()
    assert tick(project, FixedClock(utc(2026, 10, 31, 22, 59)), HOLDER, log, run=runs) == []
    results = tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, log, run=runs)
    assert [(r.report, r.period, r.state) for r in results] == [("monthly", "2026-10", "done")]
    assert tick(project, FixedClock(utc(2026, 11, 3, 0, 1)), HOLDER, log, run=runs) == []
    assert [(r, p) for r, p, _ in runs.calls] == [("monthly", "2026-10")]
    assert [e["event"] for e in log] == ["claimed", "run_finished"]
    assert log[1]["counts"]["sent"] == 1 and log[1]["holder"] == HOLDER


def test_beyond_catch_up_is_reported_once_and_recorded_as_skipped(tmp_path):
    project = write_project(tmp_path, {"monthly": '{cron: "0 7 1 * *", timezone: Asia/Shanghai, catch_up: 2}'})
    mark_done(project, "monthly", "2026-07")
    runs, log = FakeRuns(), Events()
    results = tick(project, FixedClock(utc(2026, 11, 5)), HOLDER, log, run=runs)
    assert [(r.period, r.state) for r in results] == [("2026-08", "skipped"), ("2026-09", "done"), ("2026-10", "done")]
    assert [e["period"] for e in log if e["event"] == "skipped"] == ["2026-08"]
    assert tick(project, FixedClock(utc(2026, 11, 5, 0, 1)), HOLDER, log, run=runs) == []
    with ledger_of(project) as ledger:
        assert {p: r["state"] for (_, p), r in claims_of(ledger).items()} == {
            "2026-07": "done", "2026-08": "skipped", "2026-09": "done", "2026-10": "done"}


def test_a_manual_run_counts_as_done(tmp_path):
    project = write_project(tmp_path, {"monthly": '{cron: "0 7 1 * *", timezone: Asia/Shanghai}'})
    with ledger_of(project) as ledger:
        ledger.finish_run(ledger.start_run("monthly", "2026-10"), "done", {})
    assert tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, Events(), run=FakeRuns()) == []


def test_a_partial_period_is_retried_after_its_retry_time_even_once_a_newer_one_is_done(tmp_path):
    project = write_project(tmp_path, {"monthly": '{cron: "0 7 1 * *", timezone: Asia/Shanghai}'})
    mark_done(project, "monthly", "2026-09")
    wall = FixedClock(utc(2026, 11, 1))
    failing = FakeRuns("partial")
    [first] = tick(project, FixedClock(utc(2026, 11, 1)), HOLDER, Events(), run=failing, wall=wall, retry_seconds=600)
    assert first.state == "partial"
    runs = FakeRuns()
    assert tick(project, FixedClock(utc(2026, 12, 2)), HOLDER, Events(), run=runs, wall=wall) != []
    assert [p for _, p, _ in runs.calls] == ["2026-11"], "2026-10 waits for its retry time"
    wall.at += timedelta(seconds=600)
    results = tick(project, FixedClock(utc(2026, 12, 2)), HOLDER, Events(), run=runs, wall=wall)
    assert [(r.period, r.state) for r in results] == [("2026-10", "done")]
    with ledger_of(project) as ledger:
        row = claims_of(ledger)[("monthly", "2026-10")]
    assert (row["state"], row["attempts"]) == ("done", 2)


def test_a_second_partial_waits_twice_as_long(tmp_path):
    project = write_project(tmp_path, {"monthly": '{cron: "0 7 1 * *", timezone: Asia/Shanghai}'})
    wall, failing = FixedClock(utc(2026, 11, 3)), FakeRuns("partial")
    for _ in range(2):
        tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, Events(), run=failing, wall=wall, retry_seconds=600)
        wall.at += timedelta(seconds=600)
    assert len(failing.calls) == 2
    tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, Events(), run=failing, wall=wall, retry_seconds=600)
    assert len(failing.calls) == 2, "the second retry comes 20 minutes after the second partial run"
    wall.at += timedelta(seconds=600)
    tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, Events(), run=failing, wall=wall, retry_seconds=600)
    assert len(failing.calls) == 3


def test_a_failing_report_is_logged_and_does_not_stop_the_others(tmp_path):
    project = write_project(tmp_path, {"broken": '{cron: "0 7 1 * *", timezone: UTC}',
                                       "fine": '{cron: "0 7 1 * *", timezone: UTC}'})

    def run(project_dir, report, period, clock, **kwargs):
        if report == "broken":
            raise RuntimeError("disk full")
        return FakeRuns()(project_dir, report, period, clock, **kwargs)

    log = Events()
    results = tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, log, run=run)
    assert [(r.report, r.state) for r in results] == [("broken", "failed"), ("fine", "done")]
    assert next(e for e in log if e.get("report") == "broken" and e["event"] == "run_finished")["error"] == "disk full"


# Clocks change: London 2026-03-29 01:00 GMT -> 02:00 BST and 2026-10-25 02:00 BST -> 01:00 GMT;
# New York 2026-03-08 02:00 EST -> 03:00 EDT and 2026-11-01 02:00 EDT -> 01:00 EST.
# Each job runs on that day only (cron "30 1 29 3 *"), so its period (the previous month) is
# new that day; the documented times are those of tests/scheduling/test_planner.py.
DST_DAYS = [
    ("Europe/London", (2026, 3, 29), {"01:30": utc(2026, 3, 29, 1, 0), "02:30": utc(2026, 3, 29, 1, 30)}),
    ("Europe/London", (2026, 10, 25), {"01:30": utc(2026, 10, 25, 0, 30), "02:30": utc(2026, 10, 25, 2, 30)}),
    ("America/New_York", (2026, 3, 8), {"01:30": utc(2026, 3, 8, 6, 30), "02:30": utc(2026, 3, 8, 7, 0)}),
    ("America/New_York", (2026, 11, 1), {"01:30": utc(2026, 11, 1, 5, 30), "02:30": utc(2026, 11, 1, 7, 30)}),
]


@pytest.mark.parametrize("zone,day,expected", DST_DAYS, ids=[f"{z}-{d[1]}" for z, d, _ in DST_DAYS])
def test_ticking_every_minute_through_a_dst_day_runs_each_job_once_at_its_documented_time(
        tmp_path, cached_configs, zone, day, expected):
    year, month, dom = day
    jobs = {f"at_{t.replace(':', '')}": f'{{cron: "{t[3:]} {int(t[:2])} {dom} {month} *", timezone: {zone}}}'
            for t in expected}
    project = write_project(tmp_path, jobs)
    for name in jobs:  # last year's run of the same job: so today's is an ordinary due run, not a first one
        mark_done(project, name, f"{year - 1}-{month - 1:02d}")
    runs = FakeRuns()
    local_midnight = datetime(year, month, dom, tzinfo=ZoneInfo(zone))
    at = local_midnight.astimezone(timezone.utc)
    while at < (local_midnight + timedelta(days=1)).astimezone(timezone.utc):
        tick(project, FixedClock(at), HOLDER, Events(), run=runs)
        # every minute through the night's clock change, then every half hour
        at += timedelta(minutes=1 if at < local_midnight + timedelta(hours=4) else 30)
    assert sorted((report, period, at) for report, period, at in runs.calls) == sorted(
        (f"at_{t.replace(':', '')}", f"{year}-{month - 1:02d}", at) for t, at in expected.items())


def test_a_stop_request_ends_the_run_between_two_deliveries_and_releases_the_period(tmp_path):
    project = write_project(tmp_path, {"monthly": '{cron: "0 7 1 * *", timezone: UTC}'})
    stop, sent = threading.Event(), []

    def run(project_dir, report, period, clock, *, progress, **_):
        for i, who in enumerate(["a", "b", "c"]):
            progress("deliver", i, 3, who)
            sent.append(who)
            stop.set()  # SIGTERM arrives while "a" is being sent
        progress("deliver", 3, 3, "")
        raise AssertionError("not reached")

    wall = FixedClock(utc(2026, 11, 3))
    [result] = tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, Events(), run=run, wall=wall, stop=stop)
    assert sent == ["a"], "the delivery in flight finished, the next one never started"
    assert result.state == "stopped" and result.counts == {"envelopes": 3, "processed": 1}
    with ledger_of(project) as ledger:
        row = claims_of(ledger)[("monthly", "2026-10")]
    assert (row["state"], row["lease_until"]) == ("partial", wall.now()), "due again at once"
    runs = FakeRuns()
    tick(project, FixedClock(utc(2026, 11, 3)), HOLDER, Events(), run=runs, wall=wall)
    assert [p for _, p, _ in runs.calls] == ["2026-10"]


def test_the_last_progress_call_never_interrupts():
    stop, lost = threading.Event(), threading.Event()
    stop.set()
    check = daemon._StopCheck(stop, lost)
    check("deliver", 3, 3, "")
    with pytest.raises(Interrupted):
        check("deliver", 2, 3, "x")


def test_json_logs_are_one_object_per_line(capsys):
    log = EventLog("json", wall=FixedClock(utc(2026, 11, 3, 7)))
    log("run_finished", report="leadership", period="2026-10", state="done", counts={"sent": 3}, holder="h:1",
        error=None)
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert json.loads(line) == {"ts": "2026-11-03T07:00:00Z", "event": "run_finished", "report": "leadership",
                                "period": "2026-10", "state": "done", "counts": {"sent": 3}, "holder": "h:1"}


def test_text_logs_read_as_a_sentence(capsys):
    EventLog("text", wall=FixedClock(utc(2026, 11, 3, 7)))(
        "run_finished", report="leadership", period="2026-10", state="partial", counts={"sent": 2, "in_doubt": 1},
        holder="h:1", error="cfo@example.com: in doubt")
    assert capsys.readouterr().out == ("2026-11-03T07:00:00Z run_finished leadership 2026-10: partial "
                                       "(2 sent, 1 in doubt) holder=h:1; cfo@example.com: in doubt\n")


def test_the_daemon_ticks_at_start_and_stops_when_asked(tmp_path, cached_configs):
    project = write_project(tmp_path, {"monthly": '{cron: "0 7 1 * *", timezone: UTC}'})
    stop, runs, log = threading.Event(), FakeRuns(), Events()
    thread = threading.Thread(target=run_daemon, args=(project, FixedClock(utc(2026, 11, 3))),
                              kwargs={"every_seconds": 1, "stop": stop, "holder": HOLDER, "log": log, "run": runs})
    thread.start()
    try:
        deadline = threading.Event()
        for _ in range(50):
            if runs.calls:
                break
            deadline.wait(0.1)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [p for _, p, _ in runs.calls] == ["2026-10"]
    assert [e["event"] for e in log][0] == "started" and log[-1]["event"] == "stopped"
