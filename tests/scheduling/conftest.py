"""Fixtures of the scheduling tests: the small valid project with only its `leadership` report
scheduled (one PDF per run, three recipients), a real SMTP server on loopback, and ledgers on
SQLite or on a fresh PostgreSQL schema."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from deliver.conftest import PG_URL, SmtpServer, postgres  # noqa: F401  (postgres is a fixture)
from helpers import edit
from test_run import SlowHandler, messages, to_of, use_smtp  # noqa: F401

from reporter.clock import FixedClock
from reporter.deliver.ledger import Ledger, default_url
from reporter.scheduling.claims import Claims

FIXTURES = Path(__file__).parent.parent / "fixtures"
REPORTER = str(Path(sys.executable).with_name("reporter"))
RECIPIENTS = ["ceo@example.com", "cfo@example.com", "coo@example.com"]
UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def scheduled_project(tmp_path: Path, server: SmtpServer, *, catch_up: int | None = None,
                      ledger_url_from_env: bool = False, name: str = "project") -> Path:
    """tests/fixtures/valid with SMTP on loopback; only `leadership` (portfolio, three recipients) is scheduled,
    monthly on day 1 at 07:00 Asia/Shanghai (23:00 UTC the day before)."""
    project = tmp_path / name
    shutil.copytree(FIXTURES / "valid", project)
    use_smtp(project, server)
    reports = project / "configs" / "reports.yaml"
    edit(reports, "recipients: [ceo@example.com]", f"recipients: [{', '.join(RECIPIENTS)}]")
    edit(reports, '    schedule:\n      cron: "0 7 1 * *"\n      timezone: Asia/Shanghai\n', "")
    if catch_up is not None:
        edit(reports, "schedule: monthly on day 1 at 07:00 Asia/Shanghai",
             f'schedule: {{cron: "0 7 1 * *", timezone: Asia/Shanghai, catch_up: {catch_up}}}')
    if ledger_url_from_env:
        with (project / "configs" / "project.yaml").open("a", encoding="utf-8") as f:
            f.write("ledger_url: ${REPORTER_LEDGER_URL}\n")
    return project


def schedule_once(project: Path, now: datetime, *args: str, env: dict | None = None,
                  **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([REPORTER, "schedule", "-p", str(project), "--once", "--now", iso(now), *args],
                          capture_output=True, text=True, env=env, **kwargs)


def start_schedule_once(project: Path, now: datetime, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([REPORTER, "schedule", "-p", str(project), "--once", "--now", iso(now), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def ledger_of(project: Path, url: str | None = None) -> Ledger:
    return Ledger(url or default_url(project / "output"), clock=FixedClock(utc(2026, 1, 1)))


def seed_done_run(project: Path, report: str, period: str, url: str | None = None) -> None:
    """A finished run in the ledger, as an earlier `reporter run` or scheduler would have left it."""
    with ledger_of(project, url) as ledger:
        ledger.finish_run(ledger.start_run(report, period), "done", {"sent": 3})


def claims_of(ledger: Ledger) -> dict[tuple[str, str], dict]:
    return {(r["report"], r["period"]): r for r in Claims(ledger.engine).rows()}


def per_recipient(server: SmtpServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in messages(server):
        counts[to_of(message)] = counts.get(to_of(message), 0) + 1
    return counts


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slow_smtp():
    server = SmtpServer()
    server.handler = SlowHandler()
    server.start()
    yield server
    server.stop()


_schemas = itertools.count(1)


def _pg_target(request) -> str:
    engine, prefix = request.getfixturevalue("postgres")
    schema = f"{prefix}_sched_{next(_schemas)}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    request.addfinalizer(lambda: _drop(engine, schema))
    # Every connection of this URL (in this process or a subprocess) works in the fresh schema.
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"


def _drop(engine, schema: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def pg_ledger_url(request) -> str:
    """The URL of an empty ledger database: a fresh PostgreSQL schema, dropped afterwards."""
    return _pg_target(request)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}"
    return _pg_target(request)


@pytest.fixture
def subprocess_env(pg_ledger_url) -> dict:
    return {**os.environ, "REPORTER_LEDGER_URL": pg_ledger_url}
