"""Email: message building, header injection, transports against a real SMTP server, retries."""
from __future__ import annotations

import random
import traceback
from email import message_from_bytes
from email.parser import BytesParser
from email.policy import default as default_policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reporter.config.models import Smtp
from reporter.deliver.email import (
    TRANSPORTS,
    OutboxTransport,
    PermanentFailure,
    SendResult,
    SmtpTransport,
    TemporaryFailure,
    build_message,
    clean_header,
    envelope_recipients,
    message_id_for,
    open_transport,
    send_with_retry,
)
from reporter.errors import DeliveryError

from .conftest import PASSWORD, T0, USERNAME

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
CSV = "account,health\r\nACME,82\n".encode()
INJECTION = "Acme\r\nBcc: evil@example.com =?UTF-8?Q?=0A?=Bcc: x@y"


def make_message(to=(("Ann Owner", "ann@example.com"),), cc=(), bcc=(), subject="Acme review, April 2026",
                 attachments=(("acme-2026-04.pdf", PDF, "application/pdf"),), recipient="ann@example.com"):
    return build_message(
        sender="reports@example.com", to=list(to), cc=list(cc), bcc=list(bcc), subject=subject,
        text="Health 82 (green).", html="<p>Health <b>82</b> (green).</p>", attachments=list(attachments),
        message_id=message_id_for("account_review", "2026-04", recipient, "example.com"), date=T0)


def transport_for(server, **kwargs) -> SmtpTransport:
    options = {"security": "none", "timeout": 5, **kwargs}
    return SmtpTransport(server.host, server.port, **options)


def no_sleep(_seconds):
    pass


# --------------------------------------------------------------------------- building

def test_message_is_alternative_inside_mixed_with_the_attachments():
    msg = make_message(attachments=[("acme.pdf", PDF, "application/pdf"), ("kpis.csv", CSV, "text/csv")])
    parsed = BytesParser(policy=default_policy).parsebytes(msg.as_bytes())
    assert parsed.get_content_type() == "multipart/mixed"
    body, *attachments = parsed.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True)) for a in attachments] == [
        ("acme.pdf", "application/pdf", PDF), ("kpis.csv", "text/csv", CSV)]
    assert parsed["Date"].datetime == T0
    assert parsed["Message-ID"] == message_id_for("account_review", "2026-04", "ann@example.com", "example.com")


def test_without_attachments_the_message_is_multipart_alternative():
    assert make_message(attachments=()).get_content_type() == "multipart/alternative"


def test_same_inputs_give_the_same_bytes():
    assert make_message().as_bytes() == make_message().as_bytes()


def test_message_id_is_deterministic_per_report_period_recipient():
    mid = message_id_for("account_review", "2026-04", "Ann@Example.com ", "Example.com")
    assert mid == message_id_for("account_review", "2026-04", "ann@example.com", "example.com")
    assert mid.startswith("<") and mid.endswith("@example.com>") and len(mid.split("@")[0]) == 33
    assert mid != message_id_for("account_review", "2026-03", "ann@example.com", "example.com")
    assert mid != message_id_for("portfolio_scorecard", "2026-04", "ann@example.com", "example.com")


def test_bcc_is_not_a_header_but_is_in_the_envelope():
    msg = make_message(cc=["cc@example.com"], bcc=["audit@example.com"])
    assert "Bcc" not in msg and "audit@example.com" not in msg.as_string()
    assert envelope_recipients([("Ann", "ann@example.com")], ["cc@example.com"], ["audit@example.com", "ANN@example.com"]) \
        == ["ann@example.com", "cc@example.com", "audit@example.com"]


@pytest.mark.parametrize("address", ["ann@example.com\r\nBcc: evil@example.com", "not an address", "ann@", ""])
def test_a_bad_address_is_refused(address):
    with pytest.raises(DeliveryError):
        make_message(to=[(None, address)])


def test_a_naive_date_is_refused():
    with pytest.raises(ValueError, match="aware"):
        build_message(sender="r@example.com", to=["a@example.com"], subject="s", text="t", html="h",
                      message_id="<x@example.com>", date=T0.replace(tzinfo=None))


@given(st.text())
def test_clean_header_leaves_no_line_break_control_character_or_encoded_word(value):
    cleaned = clean_header(value)
    assert "=?" not in cleaned
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in cleaned)


# --------------------------------------------------------------------------- header injection, over SMTP

def test_header_injection_adds_no_header_and_no_recipient(smtp_server):
    to = [(INJECTION, "ann@example.com")]
    bcc = ["audit@example.com"]
    msg = build_message(
        sender="reports@example.com", to=to, cc=[], bcc=bcc, subject=f"Review: {INJECTION}",
        text="text", html="<p>html</p>",
        attachments=[(f"{INJECTION}.pdf", PDF, "application/pdf"), ("kpis.csv", CSV, "text/csv")],
        message_id=message_id_for("account_review", "2026-04", "ann@example.com", "example.com"), date=T0)
    with transport_for(smtp_server) as transport:
        result = transport.send(msg, envelope_recipients(to, [], bcc))
    assert result.code == 250 and "queued as" in result.detail

    [received] = smtp_server.handler.received
    assert received.rcpt_tos == ["ann@example.com", "audit@example.com"]
    assert received.mail_from == "reports@example.com"
    parsed = BytesParser(policy=default_policy).parsebytes(received.content)
    names = [name.lower() for name in parsed.keys()]
    assert "bcc" not in names
    assert sorted(names) == ["content-type", "date", "from", "message-id", "mime-version", "subject", "to"]
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ann@example.com"]
    assert "\n" not in parsed["To"].addresses[0].display_name
    assert "\n" not in str(parsed["Subject"]) and "Bcc:" in str(parsed["Subject"])  # inert text, kept visible
    for part in parsed.walk():
        assert "bcc" not in [name.lower() for name in part.keys()]
    assert parsed["Message-ID"] == message_id_for("account_review", "2026-04", "ann@example.com", "example.com")
    attachments = [(a.get_filename(), a.get_payload(decode=True)) for a in parsed.iter_attachments()]
    assert [data for _, data in attachments] == [PDF, CSV]
    assert "\n" not in attachments[0][0] and "=?" not in attachments[0][0]


# --------------------------------------------------------------------------- SMTP replies and retries

@pytest.mark.parametrize("stage", ["rcpt_replies", "data_replies"])
def test_451_451_250_is_one_delivery_after_three_attempts(smtp_server, stage):
    getattr(smtp_server.handler, stage).extend(["451 4.3.0 try later", "451 4.3.0 try later"])
    sleeps = []
    with transport_for(smtp_server) as transport:
        result, attempts = send_with_retry(transport, make_message(), ["ann@example.com"], max_attempts=4,
                                           sleep=sleeps.append, rng=random.Random(1))
    assert (result.code, attempts) == (250, 3)
    assert len(smtp_server.handler.received) == 1
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0


@pytest.mark.parametrize("stage", ["rcpt_replies", "data_replies"])
def test_550_fails_at_once_without_retry(smtp_server, stage):
    getattr(smtp_server.handler, stage).append("550 5.1.1 no such mailbox")
    sleeps = []
    with transport_for(smtp_server) as transport:
        with pytest.raises(PermanentFailure) as caught:
            send_with_retry(transport, make_message(), ["ann@example.com"], max_attempts=4, sleep=sleeps.append)
        # The connection survives a refusal: the next message goes through on it.
        assert transport.send(make_message(), ["ann@example.com"]).code == 250
    assert (caught.value.code, caught.value.attempts, sleeps) == (550, 1, [])
    assert "no such mailbox" in str(caught.value)
    assert len(smtp_server.handler.received) == 1


def test_temporary_failures_up_to_max_attempts_raise_the_last_one(smtp_server):
    smtp_server.handler.data_replies.extend(["452 4.2.2 mailbox full"] * 3)
    with transport_for(smtp_server) as transport, pytest.raises(TemporaryFailure) as caught:
        send_with_retry(transport, make_message(), ["ann@example.com"], max_attempts=3, sleep=no_sleep)
    assert (caught.value.code, caught.value.attempts) == (452, 3)
    assert smtp_server.handler.received == []


def test_server_down_is_a_temporary_failure_without_code_after_max_attempts(smtp_server):
    smtp_server.stop()
    sleeps = []
    with transport_for(smtp_server) as transport, pytest.raises(TemporaryFailure) as caught:
        send_with_retry(transport, make_message(), ["ann@example.com"], max_attempts=3, sleep=sleeps.append)
    assert (caught.value.code, caught.value.attempts, len(sleeps)) == (None, 3, 2)
    assert f"{smtp_server.port}" in caught.value.detail


def test_a_lost_connection_is_reopened_on_the_next_attempt(smtp_server):
    with transport_for(smtp_server) as transport:
        assert transport.send(make_message(), ["ann@example.com"]).code == 250
        smtp_server.stop()   # the batch's connection dies with the server
        smtp_server.start()
        result, attempts = send_with_retry(transport, make_message(), ["ann@example.com"], max_attempts=3,
                                           sleep=no_sleep)
    assert (result.code, attempts) == (250, 2)
    assert len(smtp_server.handler.received) == 2


def test_server_back_between_attempts(smtp_server):
    smtp_server.stop()
    with transport_for(smtp_server) as transport:
        result, attempts = send_with_retry(transport, make_message(), ["ann@example.com"], max_attempts=3,
                                           sleep=lambda _s: smtp_server.start())
    assert (result.code, attempts) == (250, 2)


def test_one_connection_carries_a_batch(smtp_server):
    with transport_for(smtp_server) as transport:
        for n in range(5):
            transport.send(make_message(recipient=f"u{n}@example.com"), [f"u{n}@example.com"])
    assert len({r.peer for r in smtp_server.handler.received}) == 1
    assert [r.rcpt_tos for r in smtp_server.handler.received] == [[f"u{n}@example.com"] for n in range(5)]


def test_some_recipients_refused_is_a_delivery_that_names_them(smtp_server):
    smtp_server.handler.rcpt_replies.extend(["250 OK", "550 5.1.1 unknown"])
    with transport_for(smtp_server) as transport:
        result = transport.send(make_message(), ["ann@example.com", "gone@example.com"])
    assert result.code == 250 and list(result.refused) == ["gone@example.com"]
    assert result.refused["gone@example.com"][0] == 550


def test_login_with_the_right_password_delivers(smtp_auth_server):
    with transport_for(smtp_auth_server, username=USERNAME, password=PASSWORD) as transport:
        assert transport.send(make_message(), ["ann@example.com"]).code == 250
    assert len(smtp_auth_server.handler.received) == 1


def test_a_refused_login_is_permanent_and_never_shows_the_password(smtp_auth_server):
    wrong = "wr0ng-" + PASSWORD
    transport = transport_for(smtp_auth_server, username=USERNAME, password=wrong)
    with transport, pytest.raises(PermanentFailure) as caught:
        send_with_retry(transport, make_message(), ["ann@example.com"], max_attempts=3, sleep=no_sleep)
    assert caught.value.code == 535 and caught.value.attempts == 1
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + repr(transport)
    assert wrong not in shown and USERNAME in str(caught.value)


def test_starttls_against_a_server_without_it_is_permanent(smtp_server):
    with transport_for(smtp_server, security="starttls") as transport, pytest.raises(PermanentFailure) as caught:
        transport.send(make_message(), ["ann@example.com"])
    assert "STARTTLS" in str(caught.value)


def test_the_password_is_redacted_from_connection_errors():
    secret = "hunter2-secret"
    transport = SmtpTransport(f"{secret}.invalid", 25, "none", "u", secret, timeout=2)
    with pytest.raises(TemporaryFailure) as caught:
        transport.send(make_message(), ["ann@example.com"])
    assert caught.value.code is None
    assert secret not in "".join(traceback.format_exception(caught.value))


# --------------------------------------------------------------------------- backoff

class Flaky:
    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def send(self, message, envelope_to):
        self.calls += 1
        if self.calls <= self.failures:
            raise TemporaryFailure(None, "connection refused")
        return SendResult(250, "ok")


def test_backoff_is_exponential_with_full_jitter_and_capped():
    sleeps = []
    result, attempts = send_with_retry(Flaky(5), None, ["a@example.com"], max_attempts=6, base_delay=2.0,
                                       sleep=sleeps.append, rng=random.Random(7), max_delay=10.0)
    expected_rng = random.Random(7)
    assert sleeps == [expected_rng.uniform(0, min(10.0, 2.0 * 2 ** n)) for n in range(5)]
    assert (result.code, attempts) == (250, 6)


# --------------------------------------------------------------------------- outbox and registry

def test_outbox_writes_one_rfc5322_file_per_message_id_atomically(tmp_path):
    outbox = OutboxTransport(tmp_path / "outbox")
    msg = make_message(bcc=["audit@example.com"])
    with outbox:
        result = outbox.send(msg, ["ann@example.com", "audit@example.com"])
        outbox.send(msg, ["ann@example.com"])  # the same message again: same file, replaced
    [written] = (tmp_path / "outbox").iterdir()
    assert result.code == 250 and written.suffix == ".eml" and str(written) in result.detail
    assert written == outbox.path_for(msg["Message-ID"])
    data = written.read_bytes()
    assert data == msg.as_bytes() and b"\r\n" in data and b"audit@example.com" not in data
    assert message_from_bytes(data, policy=default_policy)["Message-ID"] == msg["Message-ID"]


def test_transports_are_registered_by_name(tmp_path):
    assert set(TRANSPORTS) == {"outbox", "smtp"}
    outbox = open_transport(Smtp(), tmp_path)
    assert isinstance(outbox, OutboxTransport) and outbox.directory == tmp_path / "outbox"
    smtp = open_transport(Smtp(transport="smtp", host="mail.example.com", port=465, security="tls",
                               username="u", password="pw-xyz"), tmp_path)
    assert isinstance(smtp, SmtpTransport) and (smtp.host, smtp.port, smtp.security) == ("mail.example.com", 465, "tls")
    assert "pw-xyz" not in repr(smtp)


def test_message_bytes_are_exactly_the_standard_generators():
    """The faster generator must not change a byte: non-ASCII names, every line ending, a big attachment."""
    import os as _os

    from reporter.deliver.email import POLICY, message_bytes

    msg = build_message(
        sender="reports@example.com", to=[("王小明", "wang@example.com")], subject="长城 review\r\nline two",
        text="Line one\r\nline two\rline three\nend", html="<p>健康 <b>82</b></p>\n",
        attachments=[("长城-2026-04.pdf", _os.urandom(300_000), "application/pdf"),
                     ("empty.csv", b"", "text/csv")],
        message_id=message_id_for("account_review", "2026-04", "wang@example.com", "example.com"), date=T0)
    assert message_bytes(msg) == msg.as_bytes(policy=POLICY)


def test_attachments_are_encoded_as_the_library_would():
    import os as _os

    from email.message import EmailMessage

    from reporter.deliver.email import POLICY, _attach

    data = _os.urandom(100_001)
    ours, theirs = EmailMessage(policy=POLICY), EmailMessage(policy=POLICY)
    ours.set_content("x")
    theirs.set_content("x")
    _attach(ours, data, "application", "pdf", "长城 2026.pdf")
    theirs.add_attachment(data, maintype="application", subtype="pdf", filename="长城 2026.pdf")
    ours.set_boundary("=_test")
    theirs.set_boundary("=_test")
    assert ours.as_bytes() == theirs.as_bytes()
    assert next(ours.iter_attachments()).get_content() == data
