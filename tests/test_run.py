"""`reporter run` end to end against a real SMTP server on loopback: who gets what, exactly once, and the archive."""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pypdf import PdfReader

from deliver.conftest import Received, ScriptedHandler, SmtpServer
from helpers import edit

REPORTER = str(Path(sys.executable).with_name("reporter"))


class SlowHandler(ScriptedHandler):
    """Keeps each message it is given, but after the first one waits before answering: a client
    killed meanwhile has handed the message over without learning that it arrived."""

    delay_after_first: float = 0.0

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer))
        if self.delay_after_first and self.data_commands > 1:
            await asyncio.sleep(self.delay_after_first)
        return f"250 2.0.0 queued as Q{self.data_commands}"


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slow_smtp():
    server = SmtpServer()
    server.handler = SlowHandler()
    server.start()
    yield server
    server.stop()


def use_smtp(project: Path, server: SmtpServer, per_account: bool = False) -> None:
    edit(project / "configs" / "project.yaml", "admins: [admin@example.com]",
         "admins: [admin@example.com]\n"
         f"smtp: {{transport: smtp, host: 127.0.0.1, port: {server.port}, security: none, "
         "from: reports@example.com, max_attempts: 3, retry_delay: 0}")
    if per_account:
        edit(project / "configs" / "reports.yaml", "      account_owner: true", "      account_owner: true\n"
             "      one_email_per: account")


def messages(server: SmtpServer) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(r.content, policy=email.policy.default) for r in server.handler.received]


def to_of(message) -> str:
    return str(message["To"].addresses[0].addr_spec)


def pdf_text(part) -> str:
    import io

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(part.get_content())).pages)


def reporter(project: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([REPORTER, *args, "-p", str(project)], capture_output=True, text=True, **kwargs)


def test_each_owner_gets_exactly_their_accounts_once(project, smtp):
    use_smtp(project, smtp)
    result = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert result.returncode == 0, result.stderr
    received = {to_of(m): m for m in messages(smtp)}
    assert sorted(received) == ["ann@example.com", "bo@example.com"]
    ann_files = sorted(p.get_filename() for p in received["ann@example.com"].iter_attachments())
    bo_files = sorted(p.get_filename() for p in received["bo@example.com"].iter_attachments())
    assert ann_files == ["A1-acme-corp.pdf", "A3-globex-ltd.pdf"]
    assert bo_files == ["A2.pdf"]
    bo_pdf = next(received["bo@example.com"].iter_attachments())
    assert "长城精密制造有限公司" in pdf_text(bo_pdf)
    assert "Acme" not in pdf_text(bo_pdf)

    again = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert again.returncode == 0, again.stderr
    assert len(smtp.handler.received) == 2, "a finished period must send nothing"
    assert "2 already sent earlier" in again.stdout


def test_resend_sends_again_on_purpose_and_is_recorded(project, smtp):
    use_smtp(project, smtp)
    assert reporter(project, "run", "--report", "reviews", "--period", "2026-10").returncode == 0
    result = reporter(project, "run", "--report", "reviews", "--period", "2026-10", "--resend", "bo@example.com")
    assert result.returncode == 0, result.stderr
    assert [to_of(m) for m in messages(smtp)].count("bo@example.com") == 2
    rows = json.loads(reporter(project, "deliveries", "--format", "json").stdout)
    bo = next(r for r in rows if r["recipient"] == "bo@example.com")
    assert (bo["state"], bo["resends"]) == ("SENT", 1)


def test_temporary_failures_are_retried(project, smtp):
    use_smtp(project, smtp)
    edit(project / "configs" / "reports.yaml", "      account_owner: true", "      account_owner: true\n"
         "    filter: {accounts: [A2]}")
    smtp.handler.data_replies = ["451 4.3.0 try later", "451 4.3.0 try later"]
    result = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert result.returncode == 0, result.stderr
    assert [to_of(m) for m in messages(smtp)] == ["bo@example.com"]
    rows = json.loads(reporter(project, "deliveries", "--format", "json").stdout)
    assert [(r["recipient"], r["state"], r["attempts"]) for r in rows] == [("bo@example.com", "SENT", 3)]


def test_permanent_failure_is_not_retried_and_admins_are_told(project, smtp):
    use_smtp(project, smtp)
    edit(project / "configs" / "reports.yaml", "      account_owner: true", "      account_owner: true\n"
         "    filter: {accounts: [A2]}")
    smtp.handler.data_replies = ["550 5.1.1 mailbox unavailable"]
    result = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert result.returncode == 1
    assert "partial" in result.stdout and "550" in result.stdout
    assert smtp.handler.data_commands == 2  # the failed one, once, and the admins' summary
    assert [to_of(m) for m in messages(smtp)] == ["admin@example.com"]
    assert "bo@example.com" in messages(smtp)[0].get_body(("plain",)).get_content()
    rows = json.loads(reporter(project, "deliveries", "--format", "json").stdout)
    assert [(r["state"], r["attempts"], r["last_code"]) for r in rows] == [("FAILED", 1, 550)]


def test_server_down_then_a_later_run_delivers_the_rest(project, smtp):
    use_smtp(project, smtp)
    smtp.stop()
    down = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert down.returncode == 1
    assert "partial" in down.stdout
    smtp.start()
    later = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert later.returncode == 0, later.stderr
    assert sorted(to_of(m) for m in messages(smtp)) == ["ann@example.com", "bo@example.com"]


def test_header_injection_in_data_adds_no_header(project, smtp):
    use_smtp(project, smtp)
    edit(project / "data" / "accounts.csv", "bo@example.com,Bo Wang", 'bo@example.com,"=?UTF-8?Q?=0A?=Bcc: x@y"')
    assert reporter(project, "run", "--report", "reviews", "--period", "2026-10").returncode == 0
    for received in smtp.handler.received:
        assert "x@y" not in received.rcpt_tos
        headers = email.message_from_bytes(received.content, policy=email.policy.default)
        assert headers.get_all("Bcc") is None


def test_archive_is_verified_and_tampering_is_caught(project, smtp):
    use_smtp(project, smtp)
    assert reporter(project, "run", "--report", "leadership", "--period", "2026-10").returncode == 0
    ok = reporter(project, "verify")
    assert ok.returncode == 0, ok.stderr
    manifest = project / "output" / "archive" / "manifest.jsonl"
    entry = json.loads(manifest.read_text(encoding="utf-8").splitlines()[0])
    assert entry["recipients"] == ["ceo@example.com"] and len(entry["config_sha256"]) == 64
    pdf = project / "output" / "archive" / entry["path"]
    reader = PdfReader(pdf)
    assert "/AF" in reader.trailer["/Root"] or reader.attachments, "the archive copy is PDF/A-3b with attachments"
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 0x01
    pdf.write_bytes(bytes(data))
    bad = reporter(project, "verify")
    assert bad.returncode == 2
    assert "tampered" in bad.stderr


def test_sigkill_mid_run_then_rerun_sends_each_recipient_one_message(project, slow_smtp):
    """Killed after the first of three deliveries: the rerun sends the rest; the one in flight stays marked."""
    smtp = slow_smtp
    use_smtp(project, smtp, per_account=True)
    smtp.handler.delay_after_first = 30.0
    process = subprocess.Popen([REPORTER, "run", "-p", str(project), "--report", "reviews", "--period", "2026-10"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while smtp.handler.data_commands < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert smtp.handler.data_commands >= 2, "the run never reached its second delivery"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    smtp.handler.delay_after_first = 0
    rerun = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert rerun.returncode == 1, "the in-flight delivery is reported as in doubt"
    assert "in doubt" in rerun.stdout
    per_recipient: dict[str, int] = {}
    for m in messages(smtp):
        key = (to_of(m), tuple(p.get_filename() for p in m.iter_attachments()))
        per_recipient[key] = per_recipient.get(key, 0) + 1
    assert all(count == 1 for count in per_recipient.values()), per_recipient
    rows = json.loads(reporter(project, "deliveries", "--format", "json").stdout)
    states = sorted(r["state"] for r in rows)
    assert states == ["SENDING", "SENT", "SENT"]


def test_render_writes_the_documents_and_sends_nothing(project, cli):
    code, out, err = cli("render", "-p", project, "--report", "reviews", "--period", "2026-10",
                         "--account", "A2", "--locale", "zh_CN")
    assert code == 0, err
    folder = project / "output" / "reports" / "reviews" / "2026-10"
    assert sorted(p.name for p in folder.iterdir()) == ["A2.html", "A2.pdf"]
    text = "\n".join(page.extract_text() for page in PdfReader(folder / "A2.pdf").pages)
    assert "长城精密制造有限公司" in text
    assert not (project / "output" / "outbox").exists() and not (project / "output" / "state").exists()


def test_render_rejects_an_unknown_account(project, cli):
    code, _, err = cli("render", "-p", project, "--report", "reviews", "--period", "2026-10", "--account", "A22")
    assert code == 2
    assert '--account: no account "A22" in the data; did you mean "A2"?' in err.splitlines()


def test_plan_lists_recipients_files_and_missing_commentary(project, cli):
    notes = project / "notes" / "2026-10"
    notes.mkdir(parents=True)
    (notes / "A1.md").write_text("## Highlights\n- Renewal signed\n", encoding="utf-8")
    code, out, err = cli("plan", "-p", project, "--report", "reviews", "--period", "2026-10")
    assert code == 0, err
    assert "ann@example.com" in out and "A1-acme-corp.pdf" in out and "A2.pdf" in out
    assert "no commentary yet (notes/2026-10/<account>.md) for: A2, A3" in out
    assert not (project / "output" / "state").exists(), "plan sends and records nothing"


def test_unknown_report_name_is_a_located_error(project, cli):
    code, _, err = cli("run", "-p", project, "--report", "review", "--period", "2026-10")
    assert code == 2
    assert ('no report "review" in configs/reports.yaml; did you mean "reviews"?; reports: leadership, reviews'
            in err.splitlines())
    assert not (project / "output").exists()


def break_account_review_for(project: Path, account_id: str) -> None:
    """A project template that fails to render for one account only (a name its context lacks)."""
    from reporter.config import BUILTIN_TEMPLATES

    source = (BUILTIN_TEMPLATES / "account_review.html").read_text(encoding="utf-8")
    marker = "<h1>{{ account.name }}</h1>"
    assert marker in source
    broken = source.replace(marker, marker + f'{{% if account.account_id == "{account_id}" %}}{{{{ no_such_name }}}}'
                                     "{% endif %}")
    (project / "report_templates").mkdir(exist_ok=True)
    (project / "report_templates" / "account_review.html").write_text(broken, encoding="utf-8")


def test_one_account_failing_to_render_holds_back_only_its_owners_email(project, smtp):
    use_smtp(project, smtp)
    break_account_review_for(project, "A3")  # one of ann's two accounts
    result = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert result.returncode == 1, result.stderr
    assert "partial" in result.stdout and "account A3" in result.stdout and "no_such_name" in result.stdout
    assert sorted(to_of(m) for m in messages(smtp)) == ["admin@example.com", "bo@example.com"]
    rows = {r["recipient"]: r["state"] for r in json.loads(reporter(project, "deliveries", "--format",
                                                                    "json").stdout)}
    assert rows["bo@example.com"] == "SENT" and rows["ann@example.com"] != "SENT"

    (project / "report_templates" / "account_review.html").unlink()
    later = reporter(project, "run", "--report", "reviews", "--period", "2026-10")
    assert later.returncode == 0, later.stderr
    ann = [m for m in messages(smtp) if to_of(m) == "ann@example.com"]
    assert len(ann) == 1
    assert sorted(p.get_filename() for p in ann[0].iter_attachments()) == ["A1-acme-corp.pdf", "A3-globex-ltd.pdf"]


def test_an_owners_email_goes_out_before_the_other_reviews_are_rendered(project, smtp):
    """ann's reviews (A1, A3) are rendered first; her email is sent before bo's A2 is rendered."""
    from reporter.clock import FixedClock
    from reporter.pipeline import run_report

    use_smtp(project, smtp)
    events = []

    def progress(stage, done, total, label=""):
        events.append((stage, done, label))
        if stage == "render" and label == "A2" and done:
            events.append(("ann's messages at A2", len(smtp.handler.received), ""))

    summary = run_report(project, "reviews", "2026-10", FixedClock(datetime(2026, 11, 2, tzinfo=timezone.utc)),
                         progress=progress)
    assert summary.state == "done" and sorted(summary.sent) == ["ann@example.com", "bo@example.com"]
    rendered = [label for stage, done, label in events if stage == "render" and done and label]
    assert rendered == ["A1", "A3", "A2"]
    assert ("ann's messages at A2", 1, "") in events
    delivered = [label for stage, _, label in events if stage == "deliver" and label]
    assert delivered == ["ann@example.com", "bo@example.com"]


class Exploding:
    """A transport that fails in a way no retry covers: the run must still record how it ended."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def send(self, message, envelope_to):
        raise RuntimeError("the transport broke")


def test_a_run_that_stops_on_an_unexpected_error_is_recorded_as_failed(project, cli):
    from reporter.clock import FixedClock
    from reporter.pipeline import run_report

    clock = FixedClock(datetime(2026, 11, 2, tzinfo=timezone.utc))
    with pytest.raises(RuntimeError, match="the transport broke"):
        run_report(project, "reviews", "2026-10", clock, transport=Exploding())
    code, out, err = cli("runs", "-p", project, "--format", "json")
    assert code == 0, err
    [run] = json.loads(out)
    assert run["state"] == "failed" and "the transport broke" in run["error"]
