"""The claims table: one winner per (report, period), leases that expire, partial periods retried later."""
from __future__ import annotations

import threading
from datetime import timedelta

from scheduling.conftest import utc

from reporter.clock import FixedClock
from reporter.deliver.ledger import Ledger
from reporter.scheduling.claims import Claims

T0 = utc(2026, 11, 1, 0, 0)


def claims(url: str) -> Claims:
    """Claims on the ledger's database with its own engine, as another process would have them."""
    return Claims(Ledger(url, clock=FixedClock(T0)).engine)


def test_the_first_claim_wins_and_a_live_lease_is_respected(ledger_url):
    a, b = claims(ledger_url), claims(ledger_url)
    assert a.try_claim("r", "2026-10", "a", 60, T0)
    assert not b.try_claim("r", "2026-10", "b", 60, T0 + timedelta(seconds=59))
    assert b.try_claim("r", "2026-09", "b", 60, T0), "another period is another claim"


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it(ledger_url):
    a, b = claims(ledger_url), claims(ledger_url)
    assert a.try_claim("r", "2026-10", "a", 60, T0)
    assert a.renew("r", "2026-10", "a", 60, T0 + timedelta(seconds=50))
    assert not b.try_claim("r", "2026-10", "b", 60, T0 + timedelta(seconds=100)), "renewed until +110 s"
    assert b.try_claim("r", "2026-10", "b", 60, T0 + timedelta(seconds=111))
    assert not a.renew("r", "2026-10", "a", 60, T0 + timedelta(seconds=112))
    assert not a.finish("r", "2026-10", "a", "done", T0 + timedelta(seconds=113))
    [row] = b.rows("r")
    assert (row["holder"], row["state"], row["attempts"]) == ("b", "running", 2)


def test_done_is_never_claimed_again_and_partial_only_from_its_retry_time(ledger_url):
    c = claims(ledger_url)
    assert c.try_claim("r", "2026-09", "a", 60, T0)
    assert c.finish("r", "2026-09", "a", "done", T0)
    assert not c.try_claim("r", "2026-09", "b", 60, T0 + timedelta(days=400))
    assert c.try_claim("r", "2026-10", "a", 60, T0)
    assert c.finish("r", "2026-10", "a", "partial", T0, retry_at=T0 + timedelta(minutes=15))
    assert not c.try_claim("r", "2026-10", "b", 60, T0 + timedelta(minutes=14))
    assert c.try_claim("r", "2026-10", "b", 60, T0 + timedelta(minutes=15))


def test_skipped_is_recorded_once_and_never_over_a_live_run(ledger_url):
    c = claims(ledger_url)
    assert c.skip("r", "2026-07", "a", T0)
    assert not c.skip("r", "2026-07", "b", T0), "reported once"
    assert not c.try_claim("r", "2026-07", "b", 60, T0)
    assert c.try_claim("r", "2026-08", "a", 60, T0)
    assert not c.skip("r", "2026-08", "b", T0 + timedelta(seconds=30)), "a live run is left alone"
    assert c.finish("r", "2026-08", "a", "partial", T0 + timedelta(seconds=40))
    assert c.skip("r", "2026-08", "b", T0 + timedelta(seconds=50)), "an unfinished period beyond catch-up is given up"
    assert {r["period"]: r["state"] for r in c.rows("r")} == {"2026-07": "skipped", "2026-08": "skipped"}


def test_racing_claimants_on_separate_connections_have_exactly_one_winner(ledger_url):
    contenders = [claims(ledger_url) for _ in range(8)]
    for round_ in range(5):
        start = threading.Barrier(len(contenders))
        wins: list[str] = []

        def contend(i: int, c: Claims) -> None:
            start.wait()
            if c.try_claim("r", f"2026-0{round_ + 1}", f"h{i}", 60, T0):
                wins.append(f"h{i}")

        threads = [threading.Thread(target=contend, args=(i, c)) for i, c in enumerate(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1, wins
    for c in contenders:
        c.engine.dispose()


def test_the_table_sits_next_to_the_ledger(tmp_path):
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", clock=FixedClock(T0)) as ledger:
        Claims(ledger.engine)
        from sqlalchemy import inspect

        assert {"runs", "deliveries", "claims"} <= set(inspect(ledger.engine).get_table_names())
