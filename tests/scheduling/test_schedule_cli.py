"""`reporter schedule` and `reporter next` as processes: a frozen clock (--now), the real ledger
(SQLite, or PostgreSQL shared by two schedulers) and a real SMTP server on loopback.

The project is tests/fixtures/valid with only `leadership` scheduled (monthly on day 1 at 07:00
Asia/Shanghai, i.e. 23:00 UTC the day before) and sent to three recipients, one PDF per run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from scheduling.conftest import (
    RECIPIENTS,
    REPORTER,
    claims_of,
    ledger_of,
    per_recipient,
    schedule_once,
    scheduled_project,
    seed_done_run,
    start_schedule_once,
    utc,
)
from helpers import edit

EVERYONE_ONCE = {r: 1 for r in RECIPIENTS}


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), "timed out"


def test_down_over_the_first_the_next_start_runs_the_missed_period_once(tmp_path, smtp):
    project = scheduled_project(tmp_path, smtp)
    seed_done_run(project, "leadership", "2026-09")
    early = schedule_once(project, utc(2026, 10, 31, 22, 0))  # 06:00 on the 1st in Shanghai: not yet
    assert early.returncode == 0, early.stderr
    assert "nothing_due" in early.stdout
    result = schedule_once(project, utc(2026, 11, 3), "--log-format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    finished = [e for e in events(result.stdout) if e["event"] == "run_finished"]
    assert [(e["report"], e["period"], e["state"], e["counts"]["sent"]) for e in finished] == [
        ("leadership", "2026-10", "done", 3)]
    assert per_recipient(smtp) == EVERYONE_ONCE
    again = schedule_once(project, utc(2026, 11, 3, 0, 5))
    assert again.returncode == 0 and "nothing_due" in again.stdout
    assert per_recipient(smtp) == EVERYONE_ONCE
    with ledger_of(project) as ledger:
        assert [(r["period"], r["state"]) for r in ledger.runs("leadership")] == [("2026-09", "done"), ("2026-10", "done")]


def test_three_missed_months_with_catch_up_two_run_the_latest_two_and_report_the_oldest(tmp_path, smtp):
    project = scheduled_project(tmp_path, smtp, catch_up=2)
    seed_done_run(project, "leadership", "2026-07")
    result = schedule_once(project, utc(2026, 11, 5), "--log-format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    log = events(result.stdout)
    assert [(e["period"], e["state"]) for e in log if e["event"] in ("skipped", "run_finished")] == [
        ("2026-08", "skipped"), ("2026-09", "done"), ("2026-10", "done")]
    assert "reporter run --report leadership --period 2026-08" in log[0]["reason"]
    with ledger_of(project) as ledger:
        assert sorted({(d["period"], d["state"]) for d in ledger.deliveries("leadership")}) == [
            ("2026-09", "SENT"), ("2026-10", "SENT")]
        assert claims_of(ledger)[("leadership", "2026-08")]["state"] == "skipped"
    assert per_recipient(smtp) == {r: 2 for r in RECIPIENTS}
    later = schedule_once(project, utc(2026, 11, 20))
    assert later.returncode == 0 and "nothing_due" in later.stdout, "the skipped month is not run later"


def test_two_schedulers_on_one_postgresql_ledger_over_a_month_run_once(tmp_path, smtp, pg_ledger_url,
                                                                        subprocess_env):
    project = scheduled_project(tmp_path, smtp, ledger_url_from_env=True)
    seed_done_run(project, "leadership", "2026-09", url=pg_ledger_url)
    month = [utc(2026, 10, 31, 22), utc(2026, 10, 31, 23), utc(2026, 10, 31, 23, 1), utc(2026, 11, 1, 12),
             utc(2026, 11, 8), utc(2026, 11, 15), utc(2026, 11, 22), utc(2026, 11, 30, 22, 59)]
    log = []
    for now in month:
        both = [start_schedule_once(project, now, "--log-format", "json", "--holder", f"scheduler-{i}",
                                    env=subprocess_env) for i in (1, 2)]
        for process in both:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, out + err
            log += events(out)
    assert [(e["holder"], e["period"]) for e in log if e["event"] == "claimed"] in (
        [("scheduler-1", "2026-10")], [("scheduler-2", "2026-10")])
    assert per_recipient(smtp) == EVERYONE_ONCE
    with ledger_of(project, pg_ledger_url) as ledger:
        assert [(r["period"], r["state"]) for r in ledger.runs("leadership")] == [("2026-09", "done"), ("2026-10", "done")]
        assert sorted(d["state"] for d in ledger.deliveries("leadership", "2026-10")) == ["SENT"] * 3
        assert claims_of(ledger)[("leadership", "2026-10")]["state"] == "done"


def test_a_killed_claimant_is_taken_over_after_its_lease_and_nobody_gets_two_emails(tmp_path, slow_smtp):
    smtp = slow_smtp
    project = scheduled_project(tmp_path, smtp)
    seed_done_run(project, "leadership", "2026-09")
    smtp.handler.delay_after_first = 30.0  # the second email is handed over, then the server keeps quiet
    now, lease = utc(2026, 11, 3), 8
    first = start_schedule_once(project, now, "--lease", str(lease), "--holder", "first")
    wait_for(lambda: smtp.handler.data_commands >= 2)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    killed_at = time.monotonic()
    early = schedule_once(project, now, "--lease", str(lease), "--holder", "second", "--log-format", "json")
    if time.monotonic() - killed_at < lease * 2 / 3 - 0.5:  # renewed every lease/3: surely still held
        assert early.returncode == 0, early.stderr
        assert [e["event"] for e in events(early.stdout)] == ["busy"]
        assert events(early.stdout)[0]["claimed_by"] == "first"
    smtp.handler.delay_after_first = 0
    time.sleep(max(0.0, killed_at + lease + 0.5 - time.monotonic()))
    later = schedule_once(project, now, "--lease", str(lease), "--holder", "second", "--log-format", "json")
    assert later.returncode == 1, "the email in flight when the first was killed is in doubt: partial"
    [finished] = [e for e in events(later.stdout) if e["event"] == "run_finished"]
    assert (finished["holder"], finished["state"], finished["counts"]["in_doubt"]) == ("second", "partial", 1)
    assert per_recipient(smtp) == EVERYONE_ONCE
    with ledger_of(project) as ledger:
        assert sorted(d["state"] for d in ledger.deliveries("leadership", "2026-10")) == ["SENDING", "SENT", "SENT"]
        claim = claims_of(ledger)[("leadership", "2026-10")]
    assert (claim["holder"], claim["state"], claim["attempts"]) == ("second", "partial", 2)


def test_sigterm_during_delivery_exits_cleanly_and_the_next_start_completes_the_period(tmp_path, slow_smtp):
    smtp = slow_smtp
    project = scheduled_project(tmp_path, smtp)
    seed_done_run(project, "leadership", "2026-09")
    smtp.handler.delay_after_first = 3.0
    now = utc(2026, 11, 3)
    first = start_schedule_once(project, now, "--log-format", "json", "--holder", "first")
    wait_for(lambda: smtp.handler.data_commands >= 2)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    log = events(out)
    [finished] = [e for e in log if e["event"] == "run_finished"]
    assert finished["state"] == "stopped" and finished["counts"] == {"envelopes": 3, "processed": 2}
    assert log[-1]["event"] == "stopped"
    assert sum(per_recipient(smtp).values()) == 2, "the email in flight was finished, the third not begun"
    with ledger_of(project) as ledger:
        assert sorted(d["state"] for d in ledger.deliveries("leadership", "2026-10")) == ["SENT", "SENT"]
        [run] = [r for r in ledger.runs("leadership") if r["period"] == "2026-10"]
        assert run["state"] == "partial" and "stopped by a signal" in run["error"]
    smtp.handler.delay_after_first = 0
    second = schedule_once(project, now, "--holder", "second")
    assert second.returncode == 0, second.stdout + second.stderr
    assert per_recipient(smtp) == EVERYONE_ONCE
    with ledger_of(project) as ledger:
        assert sorted(d["state"] for d in ledger.deliveries("leadership", "2026-10")) == ["SENT"] * 3
        assert [r["state"] for r in ledger.runs("leadership") if r["period"] == "2026-10"] == ["partial", "done"]
        assert claims_of(ledger)[("leadership", "2026-10")]["state"] == "done"


def test_the_daemon_stops_on_sigterm_while_waiting(tmp_path, smtp):
    project = scheduled_project(tmp_path, smtp)
    edit(project / "configs" / "reports.yaml", "    schedule: monthly on day 1 at 07:00 Asia/Shanghai\n", "")
    daemon = subprocess.Popen([REPORTER, "schedule", "-p", str(project), "--every", "1", "--log-format", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [daemon.stdout.readline()]  # "started", printed once the first tick is about to run
    time.sleep(1.5)
    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert [e["event"] for e in events("".join(lines) + out)] == ["started", "stopped"]


def test_now_needs_once_and_a_broken_config_fails_once_with_its_location(tmp_path, smtp, cli):
    project = scheduled_project(tmp_path, smtp)
    code, _, err = cli("schedule", "-p", project, "--now", "2026-11-03T00:00:00Z")
    assert code == 2 and "--once" in err
    edit(project / "configs" / "reports.yaml", "monthly on day 1 at 07:00", "monthly on day 31 at 07:00")
    code, _, err = cli("schedule", "-p", project, "--once", "--now", "2026-11-03T00:00:00Z")
    assert code == 2 and "reports.yaml" in err and "1-28" in err


def test_next_lists_upcoming_runs_in_the_report_time_zone_with_their_periods(tmp_path, smtp, cli):
    project = scheduled_project(tmp_path, smtp)
    code, out, err = cli("next", "-p", project, "--now", "2026-11-22T12:00:00Z", "--count", "2")
    assert code == 0, err
    rows = [line for line in out.splitlines() if "leadership" in line or "reviews" in line]
    assert "2026-12-01 07:00 CST" in rows[0] and "2026-11" in rows[0]
    assert "2027-01-01 07:00 CST" in rows[1] and "2026-12" in rows[1]
    assert "reviews" in rows[2] and "not scheduled" in rows[2]


def test_an_unreachable_ledger_is_one_clear_error_without_the_password(tmp_path, smtp, cli):
    project = scheduled_project(tmp_path, smtp)
    with (project / "configs" / "project.yaml").open("a", encoding="utf-8") as f:
        f.write("ledger_url: postgresql+psycopg://reporter:s3cret@127.0.0.1:1/reporter\n")
    code, _, err = cli("schedule", "-p", project, "--once", "--now", "2026-11-03T00:00:00Z")
    assert code == 2
    assert "cannot open the ledger at postgresql+psycopg://reporter:***@127.0.0.1:1/reporter" in err
    assert "s3cret" not in err
