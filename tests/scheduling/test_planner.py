"""Due periods and fire times: catch-up, first runs, and DST in both directions."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reporter.config.models import Schedule, schedule_from_text
from reporter.scheduling.planner import due_periods, fire_times, next_runs, plan

UTC = timezone.utc
MONTHLY = Schedule(cron="0 7 1 * *", timezone="Asia/Shanghai", period="previous_month", catch_up=3)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_shorthand_means_the_same_schedule_as_cron():
    assert schedule_from_text("monthly on day 1 at 07:00 Asia/Shanghai") == Schedule(
        cron="0 7 1 * *", timezone="Asia/Shanghai", period="previous_month")


def test_first_run_ever_runs_only_the_latest_period():
    result = plan("r", MONTHLY, utc(2026, 11, 3), done=set())
    assert [d.period.label for d in result.run] == ["2026-10"]
    assert result.skipped == []


def test_down_over_the_first_runs_the_missed_period_once():
    # 07:00 Shanghai on 1 November is 23:00 UTC on 31 October; we come back on the 3rd.
    result = plan("r", MONTHLY, utc(2026, 11, 3), done={"2026-08", "2026-09"})
    assert [d.period.label for d in result.run] == ["2026-10"]
    assert result.run[0].fire_at == utc(2026, 10, 31, 23, 0)
    again = plan("r", MONTHLY, utc(2026, 11, 3, 0, 1), done={"2026-08", "2026-09", "2026-10"})
    assert again.run == []


def test_not_due_before_the_fire_time():
    result = plan("r", MONTHLY, utc(2026, 10, 31, 22, 59), done={"2026-09"})
    assert result.run == []


def test_three_missed_months_with_catch_up_two_runs_the_latest_two_and_reports_the_oldest():
    schedule = MONTHLY.model_copy(update={"catch_up": 2})
    result = plan("r", schedule, utc(2026, 11, 5), done={"2026-07"})
    assert [d.period.label for d in result.run] == ["2026-09", "2026-10"]
    assert [d.period.label for d in result.skipped] == ["2026-08"]


def test_quarterly_reports_the_previous_quarter():
    schedule = schedule_from_text("quarterly on day 2 at 06:00 UTC")
    result = plan("r", schedule, utc(2026, 10, 2, 6, 0), done={"2026-Q2"})
    assert [d.period.label for d in result.run] == ["2026-Q3"]


# Clocks change: London 2026-03-29 01:00 GMT -> 02:00 BST and 2026-10-25 02:00 BST -> 01:00 GMT;
# New York 2026-03-08 02:00 EST -> 03:00 EDT and 2026-11-01 02:00 EDT -> 01:00 EST.
DST_CASES = [
    ("Europe/London", "30 1 * * *", (2026, 3, 29), utc(2026, 3, 29, 1, 0)),    # skipped hour: 02:00 BST
    ("Europe/London", "30 2 * * *", (2026, 3, 29), utc(2026, 3, 29, 1, 30)),   # 02:30 BST
    ("Europe/London", "30 1 * * *", (2026, 10, 25), utc(2026, 10, 25, 0, 30)),  # first 01:30 (BST) only
    ("Europe/London", "30 2 * * *", (2026, 10, 25), utc(2026, 10, 25, 2, 30)),  # 02:30 GMT
    ("America/New_York", "30 1 * * *", (2026, 3, 8), utc(2026, 3, 8, 6, 30)),   # 01:30 EST
    ("America/New_York", "30 2 * * *", (2026, 3, 8), utc(2026, 3, 8, 7, 0)),    # skipped: 03:00 EDT
    ("America/New_York", "30 1 * * *", (2026, 11, 1), utc(2026, 11, 1, 5, 30)),  # first 01:30 (EDT) only
    ("America/New_York", "30 2 * * *", (2026, 11, 1), utc(2026, 11, 1, 7, 30)),  # 02:30 EST
]


@pytest.mark.parametrize("zone,cron,day,expected", DST_CASES)
def test_one_run_per_day_at_the_documented_time_on_dst_days(zone, cron, day, expected):
    schedule = Schedule(cron=cron, timezone=zone)
    start = utc(*day) - (utc(2026, 1, 2) - utc(2026, 1, 1))  # from the day before, UTC
    fires = [f for f in fire_times(schedule, start, utc(*day, 23, 59)) if f.date() == expected.date()
             or abs((f - expected).total_seconds()) < 86400 / 2]
    assert fires == [expected]


def test_next_runs_are_in_order_and_in_the_future():
    now = utc(2026, 11, 22, 12)
    runs = next_runs(MONTHLY, now)
    assert runs == [utc(2026, 11, 30, 23), utc(2026, 12, 31, 23), utc(2027, 1, 31, 23)]


def test_due_periods_are_every_period_whose_run_time_has_come_oldest_first():
    schedule = MONTHLY.model_copy(update={"catch_up": 1})
    dues = due_periods("r", schedule, utc(2026, 11, 3))
    assert [d.period.label for d in dues][-3:] == ["2026-08", "2026-09", "2026-10"]
    assert dues[-1].fire_at == utc(2026, 10, 31, 23, 0)
    assert due_periods("r", schedule, utc(2026, 10, 31, 22, 59))[-1].period.label == "2026-09"
