"""The delivery ledger: what was sent to whom, exactly once, on SQLite or PostgreSQL.

One `deliveries` row per (report, period, recipient), unique in the database. A sender claims a
row with one conditional UPDATE (`begin_send`): whichever process's UPDATE changes the row owns
the send; everyone else gets False. So two runs, two shards or a rerun after a crash never send
the same report to the same recipient twice.

States:

    PENDING ──begin_send──► SENDING ──mark_sent──► SENT ──begin_send(resend=True)──► SENDING
                               │
                               └──mark_failed──► FAILED (retryable: temporary failure after the
                                                        last attempt; not: a 5xx)

- A FAILED row with `retryable` true is claimed again by the next run's begin_send, so a later run
  delivers what a server outage left undelivered; a permanent failure is only sent again with
  resend=True (after someone fixed the cause).
- A row left SENDING means a run died between claiming and recording the outcome: the message
  may or may not have gone out. Such rows are never sent again automatically; `in_flight` lists
  them so the run reports them as "in doubt", and `release` (an operator's decision) makes one
  retryable again.
- Every change appends a `delivery_events` row: the audit trail.

Every timestamp comes from the Clock given to the Ledger and is stored in UTC.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeDecorator

from ..clock import Clock
from ..errors import DeliveryError
from . import recipient_key

RUN_STATES = ("running", "done", "partial", "failed")
FINAL_RUN_STATES = ("done", "partial", "failed")
DELIVERY_STATES = ("PENDING", "SENDING", "SENT", "FAILED")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_url(output_dir: Path | str) -> str:
    """The SQLite ledger in `<output_dir>/state/ledger.sqlite`."""
    return f"sqlite:///{Path(output_dir) / 'state' / 'ledger.sqlite'}"


class UtcDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only; take them from the run's Clock")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _states(column: str, states: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(s) for s in states)})"


def _tables(schema: str | None) -> tuple[MetaData, Table, Table, Table]:
    metadata = MetaData(schema=schema)
    runs = Table(
        "runs", metadata,
        Column("id", Integer, primary_key=True),
        Column("report", String(200), nullable=False),
        Column("period", String(32), nullable=False),
        Column("state", String(16), nullable=False),
        Column("started_at", UtcDateTime, nullable=False),
        Column("finished_at", UtcDateTime),
        Column("counts", Text),  # JSON object
        Column("error", Text),
        CheckConstraint(_states("state", RUN_STATES), name="ck_runs_state"),
        Index("ix_runs_report_period", "report", "period"),
    )
    deliveries = Table(
        "deliveries", metadata,
        Column("id", Integer, primary_key=True),
        Column("report", String(200), nullable=False),
        Column("period", String(32), nullable=False),
        Column("recipient", String(320), nullable=False),
        Column("artifact_hashes", Text, nullable=False),  # JSON: file name -> sha256 of what is (to be) sent
        Column("state", String(16), nullable=False),
        Column("retryable", Boolean, nullable=False, default=True),
        Column("attempts", Integer, nullable=False, default=0),  # every SMTP attempt, over all runs
        Column("last_code", Integer),
        Column("last_error", Text),
        Column("message_id", String(300), nullable=False),
        Column("sent_at", UtcDateTime),
        Column("resends", Integer, nullable=False, default=0),
        Column("created_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        UniqueConstraint("report", "period", "recipient", name="uq_deliveries_report_period_recipient"),
        CheckConstraint(_states("state", DELIVERY_STATES), name="ck_deliveries_state"),
    )
    events = Table(
        "delivery_events", metadata,
        Column("id", Integer, primary_key=True),
        Column("delivery_id", Integer, ForeignKey(deliveries.c.id), nullable=False, index=True),
        Column("at", UtcDateTime, nullable=False),
        Column("event", String(32), nullable=False),
        Column("code", Integer),
        Column("detail", Text),
    )
    return metadata, runs, deliveries, events


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        # WAL: readers never block the writer; busy_timeout: a second writer waits instead of failing.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class Ledger:
    """`Ledger(url, clock=...)`; `url` is any SQLAlchemy URL (see default_url). `schema` puts the
    tables into a PostgreSQL schema, which must exist. Creates missing tables on open."""

    def __init__(self, url: str, *, clock: Clock, schema: str | None = None):
        self.clock = clock
        self.engine = _engine(url)
        self.metadata, self._runs, self._deliveries, self._events = _tables(schema)
        self.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:  # the URL may hold a password
        return f"Ledger({self.engine.url.render_as_string(hide_password=True)})"

    # ----------------------------------------------------------------------- runs

    def start_run(self, report: str, period: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(self._runs).values(
                report=report, period=period, state="running", started_at=self.clock.now()))
            return result.inserted_primary_key[0]

    def finish_run(self, run_id: int, state: str, counts: dict | None = None, error: str | None = None) -> None:
        if state not in FINAL_RUN_STATES:
            raise ValueError(f'a run finishes as one of {", ".join(FINAL_RUN_STATES)}, not "{state}"')
        with self.engine.begin() as conn:
            result = conn.execute(update(self._runs).where(self._runs.c.id == run_id).values(
                state=state, finished_at=self.clock.now(), counts=_dumps(counts or {}), error=error))
            if result.rowcount != 1:
                raise DeliveryError(f"run {run_id} is not in the ledger")

    def runs(self, report: str | None = None) -> list[dict]:
        query = select(self._runs).order_by(self._runs.c.started_at, self._runs.c.id)
        if report is not None:
            query = query.where(self._runs.c.report == report)
        with self.engine.connect() as conn:
            return [self._run_row(r) for r in conn.execute(query).mappings()]

    @staticmethod
    def _run_row(row) -> dict:
        out = dict(row)
        out["counts"] = json.loads(out["counts"]) if out["counts"] else {}
        return out

    # ----------------------------------------------------------------------- deliveries

    def ensure_delivery(self, report: str, period: str, recipient: str, artifact_hashes: dict,
                        message_id: str) -> dict:
        """The row for (report, period, recipient), inserted as PENDING if there is none yet.
        An existing row is returned as it is (its state decides what happens next)."""
        recipient = recipient_key(recipient)
        existing = self._find(report, period, recipient)
        if existing is not None:
            return existing
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                delivery_id = conn.execute(insert(self._deliveries).values(
                    report=report, period=period, recipient=recipient, artifact_hashes=_dumps(artifact_hashes),
                    state="PENDING", retryable=True, attempts=0, message_id=message_id, resends=0,
                    created_at=now, updated_at=now)).inserted_primary_key[0]
                self._event(conn, delivery_id, "created", None, message_id)
        except IntegrityError:
            # Another process inserted it between our read and our insert: theirs is the row.
            existing = self._find(report, period, recipient)
            if existing is None:
                raise
            return existing
        return self.delivery(delivery_id)

    def begin_send(self, delivery_id: int, resend: bool = False, artifact_hashes: dict | None = None) -> bool:
        """Claim the row for sending: True if this caller now owns the send, False if it is
        SENDING elsewhere, already SENT (without resend), or FAILED for good (without resend).

        resend=True also claims a SENT row (resends += 1) or a permanently FAILED one; never a
        SENDING one (see release). `artifact_hashes`, when given, replaces what the row records as
        being sent (a re-render since the row was created).
        """
        d = self._deliveries.c
        values: dict[str, Any] = {"state": "SENDING", "updated_at": self.clock.now()}
        if artifact_hashes is not None:
            values["artifact_hashes"] = _dumps(artifact_hashes)
        claims = []
        if resend:
            claims.append(("resend", d.state == "SENT", {"resends": d.resends + 1}))
        retryable = or_(d.state == "PENDING", and_(d.state == "FAILED", d.retryable.is_(True)))
        claims.append(("claimed", or_(retryable, d.state == "FAILED") if resend else retryable, {}))
        with self.engine.begin() as conn:
            for name, condition, extra in claims:
                # One UPDATE decides: the database serialises concurrent ones on the row, and the
                # loser's WHERE no longer matches once the winner's change is visible.
                result = conn.execute(update(self._deliveries)
                                      .where(d.id == delivery_id, condition).values(**values, **extra))
                if result.rowcount == 1:
                    self._event(conn, delivery_id, name, None, None)
                    return True
        return False

    def mark_sent(self, delivery_id: int, code: int, sent_at: datetime, attempts: int = 1, detail: str = "") -> None:
        """The server accepted the message; `detail` is its reply (often the queue id)."""
        d = self._deliveries.c
        with self.engine.begin() as conn:
            self._update(conn, delivery_id, state="SENT", retryable=False, last_code=code, last_error=None,
                         sent_at=sent_at, attempts=d.attempts + attempts, updated_at=self.clock.now())
            self._event(conn, delivery_id, "sent", code, detail or None)

    def mark_failed(self, delivery_id: int, code: int | None, error: str, attempts: int, permanent: bool) -> None:
        """FAILED; a temporary failure (retries exhausted) stays retryable for a later run."""
        d = self._deliveries.c
        with self.engine.begin() as conn:
            self._update(conn, delivery_id, state="FAILED", retryable=not permanent, last_code=code,
                         last_error=error, attempts=d.attempts + attempts, updated_at=self.clock.now())
            self._event(conn, delivery_id, "failed_permanent" if permanent else "failed_temporary", code, error)

    def release(self, delivery_id: int, reason: str) -> bool:
        """An operator's call on an in-doubt row: SENDING -> FAILED (retryable), so the next
        run (or a resend) may send it. False if the row was not SENDING."""
        d = self._deliveries.c
        with self.engine.begin() as conn:
            result = conn.execute(update(self._deliveries).where(d.id == delivery_id, d.state == "SENDING").values(
                state="FAILED", retryable=True, last_error=f"in doubt, released: {reason}",
                updated_at=self.clock.now()))
            if result.rowcount != 1:
                return False
            self._event(conn, delivery_id, "released", None, reason)
            return True

    def in_flight(self, report: str, period: str | None = None) -> list[dict]:
        """Rows left SENDING (by a run that crashed mid-send, or one still running): in doubt."""
        d = self._deliveries.c
        query = select(self._deliveries).where(d.report == report, d.state == "SENDING").order_by(d.recipient)
        if period is not None:
            query = query.where(d.period == period)
        return self._select(query)

    def deliveries(self, report: str | None = None, period: str | None = None) -> list[dict]:
        d = self._deliveries.c
        query = select(self._deliveries).order_by(d.report, d.period, d.recipient)
        if report is not None:
            query = query.where(d.report == report)
        if period is not None:
            query = query.where(d.period == period)
        return self._select(query)

    def delivery(self, delivery_id: int) -> dict:
        rows = self._select(select(self._deliveries).where(self._deliveries.c.id == delivery_id))
        if not rows:
            raise DeliveryError(f"delivery {delivery_id} is not in the ledger")
        return rows[0]

    def events(self, delivery_id: int) -> list[dict]:
        e = self._events.c
        query = select(self._events).where(e.delivery_id == delivery_id).order_by(e.id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ----------------------------------------------------------------------- helpers

    def _find(self, report: str, period: str, recipient: str) -> dict | None:
        d = self._deliveries.c
        rows = self._select(select(self._deliveries).where(
            d.report == report, d.period == period, d.recipient == recipient))
        return rows[0] if rows else None

    def _select(self, query) -> list[dict]:
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for row in rows:
            row["artifact_hashes"] = json.loads(row["artifact_hashes"])
        return rows

    def _update(self, conn: Connection, delivery_id: int, **values) -> None:
        result = conn.execute(update(self._deliveries).where(self._deliveries.c.id == delivery_id).values(**values))
        if result.rowcount != 1:
            raise DeliveryError(f"delivery {delivery_id} is not in the ledger")

    def _event(self, conn: Connection, delivery_id: int, name: str, code: int | None, detail: str | None) -> None:
        conn.execute(insert(self._events).values(
            delivery_id=delivery_id, at=self.clock.now(), event=name, code=code, detail=detail))
