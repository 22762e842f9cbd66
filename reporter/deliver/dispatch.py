"""Send each envelope exactly once: the ledger row is claimed before sending and closed after.

A row left SENDING by a process that died is "in doubt": it is reported, never resent on
its own (the message may have reached the recipient); `--resend` sends it on purpose.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.headerregistry import Address

from . import recipient_key
from .audience import Envelope
from .compose import Composed
from .email import PermanentFailure, SendFailure, build_message, message_id_for, send_with_retry


@dataclass(frozen=True)
class Document:
    """One attachment: a rendered file of one account (or the portfolio) in one locale."""

    account_id: str | None
    locale: str
    filename: str
    data: bytes
    sha256: str
    mime: str


@dataclass
class Outcome:
    sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    in_doubt: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, int | None]] = field(default_factory=list)   # (recipient, why, SMTP code)
    attempts: dict[str, int] = field(default_factory=dict)


def sender_domain(sender: str) -> str:
    return Address(addr_spec=sender).domain or "reporter.local"


def message_id(report: str, period: str, envelope: Envelope, sender: str) -> str:
    return message_id_for(report, period, envelope.key, sender_domain(sender))


def dispatch(*, config, report_name: str, period: str, envelopes: list[Envelope], documents_for, compose_for,
             blocked: dict[str, str], ledger, transport, clock, resend: str | None = None,
             progress=None) -> Outcome:
    """documents_for(envelope) -> list[Document]; compose_for(envelope, documents, too_big) -> Composed.
    Attachments over the report's size limit stay in the archive and the email says where.
    blocked maps an envelope key to why it cannot be sent complete now (an account failed to render)."""
    report = config.reports[report_name]
    smtp = config.project.smtp
    outcome = Outcome()
    wanted = recipient_key(resend) if resend else None
    for done, envelope in enumerate(envelopes, 1):
        if progress:
            progress(done - 1, len(envelopes), envelope.email)
        mid = message_id(report_name, period, envelope, smtp.sender)
        if envelope.key in blocked:
            row = ledger.ensure_delivery(report_name, period, envelope.key, {}, mid)
            if row["state"] != "SENT":
                outcome.failed.append((envelope.email, blocked[envelope.key], None))
            continue
        documents = documents_for(envelope)
        hashes = {d.filename: d.sha256 for d in documents}
        row = ledger.ensure_delivery(report_name, period, envelope.key, hashes, mid)
        is_resend = wanted is not None and wanted in (envelope.key, recipient_key(envelope.email))
        if row["state"] == "SENT" and not is_resend:
            outcome.already.append(envelope.email)
            continue
        if row["state"] == "SENDING":
            outcome.in_doubt.append(envelope.email)
            continue
        if not ledger.begin_send(row["id"], resend=is_resend, artifact_hashes=hashes):
            (outcome.already if row["state"] == "SENT" else outcome.in_doubt).append(envelope.email)
            continue
        too_big = sum(len(d.data) for d in documents) > report.max_attachment_mb * 1024 * 1024
        composed: Composed = compose_for(envelope, documents, too_big)
        message = build_message(
            sender=smtp.sender, to=[(envelope.name, envelope.email)], cc=report.audience.cc,
            bcc=report.audience.bcc, subject=composed.subject, text=composed.text, html=composed.html,
            attachments=[] if too_big else [(d.filename, d.data, d.mime) for d in documents], message_id=mid, date=clock.now())
        envelope_to = [envelope.email, *report.audience.cc, *report.audience.bcc]
        try:
            result, attempts = send_with_retry(transport, message, envelope_to, smtp.max_attempts,
                                               base_delay=smtp.retry_delay)
        except SendFailure as exc:
            attempts = exc.attempts or 1
            ledger.mark_failed(row["id"], exc.code, exc.detail, attempts, permanent=isinstance(exc, PermanentFailure))
            outcome.failed.append((envelope.email, exc.detail, exc.code))
            outcome.attempts[envelope.email] = attempts
            continue
        ledger.mark_sent(row["id"], result.code, clock.now(), attempts=attempts, detail=result.detail)
        outcome.sent.append(envelope.email)
        outcome.attempts[envelope.email] = attempts
    if progress:
        progress(len(envelopes), len(envelopes), "")
    return outcome
