"""The ledger on SQLite and PostgreSQL: one row per (report, period, recipient), claimed once."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from reporter.clock import FixedClock
from reporter.deliver.ledger import Ledger, default_url
from reporter.errors import DeliveryError

from .conftest import T0

HASHES = {"acme-2026-04.pdf": "ab" * 32}
MID = "<0123456789abcdef0123456789abcdef@example.com>"


def new_row(ledger: Ledger, recipient="ann@example.com", report="account_review", period="2026-04") -> dict:
    return ledger.ensure_delivery(report, period, recipient, HASHES, MID)


def test_ensure_delivery_inserts_pending_once(ledger):
    row = new_row(ledger, "Ann@Example.com ")
    assert row["state"] == "PENDING" and row["recipient"] == "ann@example.com"
    assert (row["attempts"], row["resends"], row["retryable"]) == (0, 0, True)
    assert row["artifact_hashes"] == HASHES and row["message_id"] == MID
    assert row["created_at"] == T0 and row["created_at"].tzinfo is not None
    again = ledger.ensure_delivery("account_review", "2026-04", "ann@example.com", {"other.pdf": "cd" * 32}, MID)
    assert again == row
    assert len(ledger.deliveries()) == 1
    assert [e["event"] for e in ledger.events(row["id"])] == ["created"]


def test_ensure_delivery_reads_the_row_another_process_inserted_first(open_ledger, monkeypatch):
    first, second = open_ledger(), open_ledger()
    theirs = new_row(first)
    # `second` read before `first` inserted: its insert hits the unique constraint.
    real_find = second._find
    calls = []
    monkeypatch.setattr(second, "_find", lambda *a: calls.append(a) or (None if len(calls) == 1 else real_find(*a)))
    assert new_row(second) == theirs
    assert len(calls) == 2 and len(first.deliveries()) == 1


def test_a_sent_delivery_is_not_claimed_again_unless_resent(ledger):
    row = new_row(ledger)
    assert ledger.begin_send(row["id"]) is True
    assert ledger.begin_send(row["id"]) is False  # SENDING: someone holds it
    ledger.mark_sent(row["id"], 250, T0, attempts=3, detail="2.0.0 queued as Q1")
    sent = ledger.delivery(row["id"])
    assert (sent["state"], sent["last_code"], sent["sent_at"], sent["attempts"]) == ("SENT", 250, T0, 3)
    assert ledger.begin_send(row["id"]) is False  # rerun of a finished period: nothing
    assert ledger.begin_send(row["id"], resend=True) is True
    assert ledger.delivery(row["id"])["resends"] == 1
    ledger.mark_sent(row["id"], 250, T0 + timedelta(hours=1))
    resent = ledger.delivery(row["id"])
    assert (resent["state"], resent["resends"], resent["attempts"]) == ("SENT", 1, 4)
    events = ledger.events(row["id"])
    assert [e["event"] for e in events] == ["created", "claimed", "sent", "resend", "sent"]
    assert events[2]["code"] == 250 and events[2]["detail"] == "2.0.0 queued as Q1"


def test_a_temporary_failure_stays_retryable_for_a_later_run(ledger):
    row = new_row(ledger)
    ledger.begin_send(row["id"])
    ledger.mark_failed(row["id"], None, "connection refused", attempts=4, permanent=False)
    failed = ledger.delivery(row["id"])
    assert (failed["state"], failed["retryable"], failed["last_code"], failed["attempts"]) == ("FAILED", True, None, 4)
    assert ledger.begin_send(row["id"]) is True  # the next run
    ledger.mark_sent(row["id"], 250, T0, attempts=1)
    done = ledger.delivery(row["id"])
    assert (done["state"], done["attempts"], done["resends"], done["last_error"]) == ("SENT", 5, 0, None)


def test_a_permanent_failure_is_sent_again_only_on_purpose(ledger):
    row = new_row(ledger)
    ledger.begin_send(row["id"])
    ledger.mark_failed(row["id"], 550, "5.1.1 no such mailbox", attempts=1, permanent=True)
    failed = ledger.delivery(row["id"])
    assert (failed["state"], failed["retryable"], failed["last_code"]) == ("FAILED", False, 550)
    assert ledger.begin_send(row["id"]) is False
    assert ledger.begin_send(row["id"], resend=True) is True
    assert ledger.delivery(row["id"])["resends"] == 0  # nothing had been delivered
    assert [e["event"] for e in ledger.events(row["id"])][-2:] == ["failed_permanent", "claimed"]


def test_rows_left_sending_by_a_crashed_run_are_in_doubt_not_resent(open_ledger):
    crashed = open_ledger()
    rows = [new_row(crashed, f"u{n}@example.com") for n in range(3)]
    crashed.begin_send(rows[0]["id"])
    crashed.mark_sent(rows[0]["id"], 250, T0)
    crashed.begin_send(rows[1]["id"])  # ... and the process dies here
    crashed.close()

    rerun = open_ledger(FixedClock(T0 + timedelta(hours=1)))
    assert [r["recipient"] for r in rerun.in_flight("account_review", "2026-04")] == ["u1@example.com"]
    assert rerun.in_flight("account_review", "2026-03") == []
    claimed = {r["recipient"]: rerun.begin_send(r["id"]) for r in rerun.deliveries("account_review", "2026-04")}
    assert claimed == {"u0@example.com": False, "u1@example.com": False, "u2@example.com": True}
    assert rerun.begin_send(rows[1]["id"], resend=True) is False  # not even on purpose while in doubt

    assert rerun.release(rows[1]["id"], "operator: not in the mailbox") is True
    assert rerun.release(rows[1]["id"], "twice") is False
    assert rerun.in_flight("account_review", "2026-04") == [rerun.delivery(rows[2]["id"])]
    assert rerun.begin_send(rows[1]["id"]) is True


def test_runs_record_state_times_and_counts(open_ledger):
    ledger = open_ledger(FixedClock(datetime(2026, 5, 1, 15, 0, tzinfo=ZoneInfo("Asia/Shanghai"))))
    first = ledger.start_run("account_review", "2026-04")
    other = ledger.start_run("portfolio_scorecard", "2026-04")
    assert ledger.runs("account_review")[0]["state"] == "running"
    ledger.finish_run(first, "partial", {"sent": 3, "failed": 1}, error="1 delivery failed")
    [run] = ledger.runs("account_review")
    assert (run["id"], run["state"], run["counts"], run["error"]) == (first, "partial", {"sent": 3, "failed": 1},
                                                                      "1 delivery failed")
    assert run["started_at"] == datetime(2026, 5, 1, 7, 0, tzinfo=timezone.utc) == run["finished_at"]
    assert run["started_at"].utcoffset() == timedelta(0)
    assert [r["id"] for r in ledger.runs()] == [first, other]
    with pytest.raises(ValueError, match="done, partial, failed"):
        ledger.finish_run(other, "running")
    with pytest.raises(DeliveryError):
        ledger.finish_run(999_999, "done")


def test_deliveries_filter_by_report_and_period(ledger):
    new_row(ledger, "b@example.com")
    new_row(ledger, "a@example.com")
    new_row(ledger, "a@example.com", period="2026-03")
    new_row(ledger, "a@example.com", report="portfolio_scorecard")
    assert [(r["period"], r["recipient"]) for r in ledger.deliveries("account_review")] == [
        ("2026-03", "a@example.com"), ("2026-04", "a@example.com"), ("2026-04", "b@example.com")]
    assert len(ledger.deliveries("account_review", "2026-04")) == 2
    assert len(ledger.deliveries()) == 4


def test_begin_send_can_record_what_is_being_sent(ledger):
    row = new_row(ledger)
    assert ledger.begin_send(row["id"], artifact_hashes={"acme-2026-04.r2.pdf": "ef" * 32})
    assert ledger.delivery(row["id"])["artifact_hashes"] == {"acme-2026-04.r2.pdf": "ef" * 32}


def test_two_senders_claiming_the_same_row_exactly_one_wins(open_ledger):
    setup = open_ledger()
    rows = [new_row(setup, f"u{n}@example.com") for n in range(15)]
    senders = [open_ledger(), open_ledger()]  # own engines and connections, like two processes
    for row in rows:
        barrier = threading.Barrier(2)
        wins: list[bool] = []
        errors: list[BaseException] = []

        def claim(ledger, row_id=row["id"]):
            try:
                barrier.wait(timeout=10)
                wins.append(ledger.begin_send(row_id))
            except BaseException as exc:  # reported below, a thread would swallow it
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(s,)) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == [] and sorted(wins) == [False, True]
    assert {r["state"] for r in setup.deliveries()} == {"SENDING"}
    assert all([e["event"] for e in setup.events(r["id"])] == ["created", "claimed"] for r in rows)


def test_the_same_key_is_one_row_across_ledgers(open_ledger):
    rows = {open_ledger().ensure_delivery("r", "2026-04", "a@example.com", {}, MID)["id"] for _ in range(3)}
    assert len(rows) == 1


def test_naive_times_are_refused(open_ledger):
    ledger = open_ledger()
    row = new_row(ledger)
    ledger.begin_send(row["id"])
    with pytest.raises(Exception, match="aware"):
        ledger.mark_sent(row["id"], 250, datetime(2026, 5, 1, 7, 0))


def test_default_sqlite_ledger_lives_in_output_state_in_wal_mode(tmp_path):
    url = default_url(tmp_path / "output")
    assert url.endswith("output/state/ledger.sqlite")
    with Ledger(url, clock=FixedClock(T0)) as ledger:
        assert (tmp_path / "output" / "state" / "ledger.sqlite").exists()
        with ledger.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() > 0


def test_repr_hides_a_password_in_the_url(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", clock=FixedClock(T0))
    ledger.engine.url = ledger.engine.url.set(password="pw-secret")  # as if the URL carried one
    assert "pw-secret" not in repr(ledger)
    ledger.close()
