"""Who runs which (report, period): one `claims` row each, in the ledger's database, unique in it.

Any number of schedulers (daemons, cron or Kubernetes starts, on one machine or many) share
one ledger. Before running a period a scheduler claims it; the database decides who wins:

- no row yet: INSERT; the UNIQUE(report, period) constraint lets exactly one INSERT through,
  the others get an IntegrityError and lose;
- a row exists: one conditional UPDATE takes it over only if it is `running` with its lease
  expired (the holder died) or `partial` with its retry time reached. Concurrent UPDATEs are
  serialised on the row, and the loser's WHERE no longer matches the winner's new lease.

States:

    (none) ──try_claim──► running ──finish──► done       never run again by the scheduler
                            │  ▲    └─finish──► partial   retried from lease_until (the retry time)
                            │  └────try_claim───┘
                            └─ lease_until passes without renew: the holder is presumed dead,
                               the next try_claim takes the period over
    (none) | partial ──skip──► skipped   beyond catch-up: reported once, never run by the scheduler

`lease_until` is the running holder's lease, or a partial period's earliest retry. Leases are
measured on the wall clock of the machines (pass a SystemClock's time), never on a simulated
`--now`: a backfill acting as if in 2030 must not hold a claim until 2030.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    CheckConstraint,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..deliver.ledger import UtcDateTime

CLAIM_STATES = ("running", "partial", "done", "skipped")
FINAL_STATES = ("partial", "done")


# One Table for every engine: statements compile once and are cached.
METADATA = MetaData()
CLAIMS = Table(
    "claims", METADATA,
    Column("id", Integer, primary_key=True),
    Column("report", String(200), nullable=False),
    Column("period", String(32), nullable=False),
    Column("holder", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("lease_until", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),  # claims taken, for the retry backoff
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("report", "period", name="uq_claims_report_period"),
    CheckConstraint(f"state IN ({', '.join(repr(s) for s in CLAIM_STATES)})", name="ck_claims_state"),
)


class Claims:
    """The claims table on an engine of the ledger's database (`Claims(ledger.engine)`); created if missing."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._claims = CLAIMS
        try:
            METADATA.create_all(engine)
        except DBAPIError:
            # Two schedulers starting at once on a fresh database both try CREATE TABLE; one
            # loses. Its second look finds the table.
            METADATA.create_all(engine)

    def try_claim(self, report: str, period: str, holder: str, lease_seconds: float, now: datetime) -> bool:
        """True if `holder` now runs (report, period) until now + lease_seconds (renew to keep it)."""
        until = now + timedelta(seconds=lease_seconds)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(self._claims).values(
                    report=report, period=period, holder=holder, state="running", lease_until=until,
                    attempts=1, updated_at=now))
            return True
        except IntegrityError:
            pass  # the row exists (or another scheduler inserted it just now): only a takeover can win
        c = self._claims.c
        with self.engine.begin() as conn:
            result = conn.execute(update(self._claims).where(
                c.report == report, c.period == period, c.state.in_(("running", "partial")), c.lease_until <= now,
            ).values(holder=holder, state="running", lease_until=until, attempts=c.attempts + 1, updated_at=now))
            return result.rowcount == 1

    def renew(self, report: str, period: str, holder: str, lease_seconds: float, now: datetime) -> bool:
        """Extend a running claim; False if `holder` no longer has it (its lease ran out and it was taken over)."""
        c = self._claims.c
        with self.engine.begin() as conn:
            result = conn.execute(update(self._claims).where(
                c.report == report, c.period == period, c.holder == holder, c.state == "running",
            ).values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now))
            return result.rowcount == 1

    def finish(self, report: str, period: str, holder: str, state: str, now: datetime,
               retry_at: datetime | None = None) -> bool:
        """done, or partial (claimable again from retry_at, default now). False if `holder` had lost the claim."""
        if state not in FINAL_STATES:
            raise ValueError(f'a claim finishes as one of {", ".join(FINAL_STATES)}, not "{state}"')
        c = self._claims.c
        with self.engine.begin() as conn:
            result = conn.execute(update(self._claims).where(
                c.report == report, c.period == period, c.holder == holder, c.state == "running",
            ).values(state=state, lease_until=retry_at or now, updated_at=now))
            return result.rowcount == 1

    def skip(self, report: str, period: str, holder: str, now: datetime) -> bool:
        """Record a period beyond catch-up as skipped; True if this call recorded it (so it is reported once).
        A partial period, or one whose holder's lease ran out, is given up too; a live run is left alone."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(self._claims).values(
                    report=report, period=period, holder=holder, state="skipped", lease_until=now,
                    attempts=0, updated_at=now))
            return True
        except IntegrityError:
            pass
        c = self._claims.c
        with self.engine.begin() as conn:
            result = conn.execute(update(self._claims).where(
                c.report == report, c.period == period,
                or_(c.state == "partial", and_(c.state == "running", c.lease_until <= now)),
            ).values(holder=holder, state="skipped", lease_until=now, updated_at=now))
            return result.rowcount == 1

    def rows(self, report: str | None = None) -> list[dict]:
        c = self._claims.c
        query = select(self._claims).order_by(c.report, c.period)
        if report is not None:
            query = query.where(c.report == report)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
