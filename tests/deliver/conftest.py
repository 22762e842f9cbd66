"""Fixtures of the deliver tests: a real SMTP server on loopback with scripted replies, and
ledgers on SQLite and on the PostgreSQL server of this machine."""
from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from reporter.clock import FixedClock
from reporter.deliver.ledger import Ledger

T0 = datetime(2026, 5, 1, 7, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- SMTP

@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: tuple


@dataclass
class ScriptedHandler:
    """Answers RCPT and DATA from scripts (one reply consumed per command; "250 ..." accepts),
    then with 250. Keeps what it accepted."""

    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    data_commands: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.pop(0) if self.rcpt_replies else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        reply = self.data_replies.pop(0) if self.data_replies else f"250 2.0.0 queued as Q{self.data_commands}"
        if reply.startswith("250"):
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer))
        return reply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


USERNAME, PASSWORD = "reporter", "s3cret-Pa55word"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USERNAME.encode() \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, **server_kwargs):
        self.handler = ScriptedHandler()
        self.host, self.port = "127.0.0.1", free_port()
        self.server_kwargs = server_kwargs
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname=self.host, port=self.port, **self.server_kwargs)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_auth_server():
    server = SmtpServer(authenticator=authenticator, auth_require_tls=False)
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- ledgers

PG_URL = os.environ.get("REPORTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres():
    """(engine, schema name prefix) for this test session; its schemas are dropped at the end."""
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        where = make_url(PG_URL).render_as_string(hide_password=True)
        reason = f"PostgreSQL at {where} does not answer: {str(exc.orig).splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so the PostgreSQL ledger tests must run)")
        pytest.skip(f"{reason}; CI is unset, so the PostgreSQL ledger tests are skipped")
    prefix = f"reporter_test_{os.getpid()}_{os.urandom(3).hex()}"
    yield engine, prefix
    with engine.begin() as conn:
        leftovers = conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                                 {"p": prefix + "%"}).scalars().all()
        for schema in leftovers:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


_schema_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request, tmp_path):
    """(url, schema) of an empty ledger: a SQLite file, or a fresh schema in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}", None
        return
    engine, prefix = request.getfixturevalue("postgres")
    schema = f"{prefix}_{next(_schema_numbers)}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield PG_URL, schema
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def open_ledger(ledger_target):
    """open_ledger(clock=None) -> a new Ledger (own engine, like another process) on the same database."""
    url, schema = ledger_target
    opened: list[Ledger] = []

    def make(clock=None) -> Ledger:
        ledger = Ledger(url, clock=clock or FixedClock(T0), schema=schema)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger) -> Ledger:
    return open_ledger()
