"""When is each report due, and for which period: croniter on local wall-clock times, zoneinfo for the offsets.

Fire times are generated as naive local times (so each wall-clock time occurs once even
when the clocks go back) and only then placed on the time line: a time that falls in a
spring-forward gap fires at the first minute after the jump.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

from ..compute.periods import Period, period_containing
from ..config.models import Schedule

PERIOD_KIND = {"previous_month": "month", "previous_quarter": "quarter", "previous_year": "year"}


@dataclass(frozen=True)
class Due:
    report: str
    period: Period
    fire_at: datetime  # aware, UTC


@dataclass(frozen=True)
class Plan:
    run: list[Due]       # oldest first
    skipped: list[Due]   # missed periods beyond catch_up: reported, not run


def place(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall time as an aware UTC instant; times in a DST gap move to just after the jump."""
    while True:
        aware = wall.replace(tzinfo=zone)
        back = aware.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None)
        if back == wall:  # exists (for repeated times fold=0: the first occurrence)
            return aware.astimezone(timezone.utc)
        wall = (wall + timedelta(minutes=1)).replace(second=0, microsecond=0)


def fire_times(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Fire instants (UTC) in (start, end], oldest first."""
    zone = ZoneInfo(schedule.timezone)
    # Step back a day so a gap-shifted fire just after `start` is not missed.
    wall = start.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
    found, seen = [], set()
    for local in croniter(schedule.cron, wall).all_next(datetime):
        instant = place(local, zone)
        if instant > end:
            break
        if instant > start and instant not in seen:
            seen.add(instant)
            found.append(instant)
    return found


def period_for(schedule: Schedule, fire_at: datetime, fiscal_year_start: int = 1) -> Period:
    """The period a run at fire_at reports on: the one before the period containing its local date."""
    local_day = fire_at.astimezone(ZoneInfo(schedule.timezone)).date()
    return period_containing(local_day, PERIOD_KIND[schedule.period], fiscal_year_start).previous()


def next_runs(schedule: Schedule, now: datetime, count: int = 3) -> list[datetime]:
    zone = ZoneInfo(schedule.timezone)
    runs, wall = [], now.astimezone(zone).replace(tzinfo=None)
    for local in croniter(schedule.cron, wall).all_next(datetime):
        instant = place(local, zone)
        if instant > now and instant not in runs:
            runs.append(instant)
        if len(runs) == count:
            return runs
    return runs


def due_periods(report: str, schedule: Schedule, now: datetime, fiscal_year_start: int = 1) -> list[Due]:
    """Every period whose run time has come by `now`, as far back as catch-up can reach; oldest first."""
    lookback = {"month": 400, "quarter": 1200, "year": 4000}[PERIOD_KIND[schedule.period]]
    dues: dict[str, Due] = {}
    for fire in fire_times(schedule, now - timedelta(days=lookback * max(1, schedule.catch_up)), now):
        period = period_for(schedule, fire, fiscal_year_start)
        dues.setdefault(period.label, Due(report, period, fire))
    return sorted(dues.values(), key=lambda d: d.period.start)


def plan(report: str, schedule: Schedule, now: datetime, done: set[str], fiscal_year_start: int = 1) -> Plan:
    """What to run now: every due period not done since the last done one, the newest `catch_up` of them.

    With no history at all only the latest due period runs: older ones are run on
    request (`reporter run --period`), never by surprise.
    """
    ordered = due_periods(report, schedule, now, fiscal_year_start)
    if not done:
        return Plan(run=ordered[-1:], skipped=[])
    latest_done = max((d.period.start for d in ordered if d.period.label in done), default=None)
    missed = [d for d in ordered if d.period.label not in done and (latest_done is None or d.period.start > latest_done)]
    keep = max(schedule.catch_up, 1)
    return Plan(run=missed[-keep:], skipped=missed[:-keep])
