"""deliver stage: email (messages and transports), the exactly-once ledger, the audit archive.

- `email`: build a safe MIME message, send it through a named transport (`outbox`, `smtp`), retry
  4xx and connection errors with backoff, fail 5xx at once.
- `ledger`: one row per (report, period, recipient) with a conditional claim, so that no
  recipient gets a report twice, even with several processes sharing one database.
- `archive`: every artifact kept once, never overwritten, listed in a hash-chained manifest
  that `verify` checks.
"""
from __future__ import annotations


def recipient_key(address: str) -> str:
    """The form a recipient is keyed by (ledger rows, Message-IDs): trimmed and lower-cased,
    so that "Ann@Example.com" and "ann@example.com" are one recipient and get one message."""
    return address.strip().lower()
