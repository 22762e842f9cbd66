"""Send each envelope exactly once: the ledger row is claimed before sending and closed after.

Envelopes are sent one by one as the caller has their documents ready (the pipeline sends an
owner's email as soon as that owner's reviews are rendered and archived, while the others render).

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


class Dispatcher:
    """Sends envelopes one at a time, in whatever order their documents become ready.

    ``compose_for(envelope, documents, too_big) -> Composed``. Attachments over the report's size
    limit stay in the archive and the email says where. What happened to each envelope is
    collected in ``outcome``.
    """

    def __init__(self, *, config, report_name: str, period: str, compose_for, ledger, transport, clock,
                 resend: str | None = None):
        self.report = config.reports[report_name]
        self.smtp = config.project.smtp
        self.report_name, self.period = report_name, period
        self.compose_for, self.ledger, self.transport, self.clock = compose_for, ledger, transport, clock
        self.wanted = recipient_key(resend) if resend else None
        self.outcome = Outcome()

    def block(self, envelope: Envelope, why: str) -> None:
        """The envelope cannot go out complete now (an account failed to render): a later run sends it."""
        mid = message_id(self.report_name, self.period, envelope, self.smtp.sender)
        row = self.ledger.ensure_delivery(self.report_name, self.period, envelope.key, {}, mid)
        if row["state"] != "SENT":
            self.outcome.failed.append((envelope.email, why, None))

    def send(self, envelope: Envelope, documents: list[Document]) -> None:
        """Claim the envelope's ledger row, send it, close the row; a SENT or in-doubt row is left alone."""
        mid = message_id(self.report_name, self.period, envelope, self.smtp.sender)
        hashes = {d.filename: d.sha256 for d in documents}
        row = self.ledger.ensure_delivery(self.report_name, self.period, envelope.key, hashes, mid)
        is_resend = self.wanted is not None and self.wanted in (envelope.key, recipient_key(envelope.email))
        if row["state"] == "SENT" and not is_resend:
            self.outcome.already.append(envelope.email)
            return
        if row["state"] == "SENDING":
            self.outcome.in_doubt.append(envelope.email)
            return
        if not self.ledger.begin_send(row["id"], resend=is_resend, artifact_hashes=hashes):
            (self.outcome.already if row["state"] == "SENT" else self.outcome.in_doubt).append(envelope.email)
            return
        message, envelope_to = self._message(envelope, documents, mid)
        try:
            result, attempts = send_with_retry(self.transport, message, envelope_to, self.smtp.max_attempts,
                                               base_delay=self.smtp.retry_delay)
        except SendFailure as exc:
            attempts = exc.attempts or 1
            self.ledger.mark_failed(row["id"], exc.code, exc.detail, attempts,
                                    permanent=isinstance(exc, PermanentFailure))
            self.outcome.failed.append((envelope.email, exc.detail, exc.code))
        else:
            self.ledger.mark_sent(row["id"], result.code, self.clock.now(), attempts=attempts, detail=result.detail)
            self.outcome.sent.append(envelope.email)
        self.outcome.attempts[envelope.email] = attempts

    def _message(self, envelope: Envelope, documents: list[Document], mid: str):
        report = self.report
        too_big = sum(len(d.data) for d in documents) > report.max_attachment_mb * 1024 * 1024
        composed: Composed = self.compose_for(envelope, documents, too_big)
        message = build_message(
            sender=self.smtp.sender, to=[(envelope.name, envelope.email)], cc=report.audience.cc,
            bcc=report.audience.bcc, subject=composed.subject, text=composed.text, html=composed.html,
            attachments=[] if too_big else [(d.filename, d.data, d.mime) for d in documents], message_id=mid,
            date=self.clock.now())
        return message, [envelope.email, *report.audience.cc, *report.audience.bcc]
