"""One linear pipeline: validate -> load -> compute (-> render -> archive -> deliver).

Every command that needs data goes through here, so the stages are always called in
the same order with the same inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .clock import Clock
from .compute.periods import Period, add_months, last_complete_period, parse_period
from .config import ProjectConfig, load_project
from .errors import ConfigError, Issue, RunInterrupted
from .sources import LoadResult, load_sources, write_quality_report


@dataclass
class Loaded:
    config: ProjectConfig
    data: LoadResult
    period: Period


def resolve_period(config: ProjectConfig, text: str | None, clock: Clock, kind: str = "month") -> Period:
    """--period as given, or the last complete period in the project's time zone."""
    fiscal = config.project.fiscal_year_start
    if text:
        try:
            return parse_period(text, fiscal)
        except ValueError as exc:
            raise ConfigError([Issue(f"--period: {exc}")]) from None
    return last_complete_period(clock.now(), config.project.timezone, kind, fiscal)


def load(project_dir: Path | str, period_text: str | None, clock: Clock, report_name: str | None = None) -> Loaded:
    """Validate the configs and load every source; blocking problems raise before anything is computed."""
    config = load_project(project_dir)
    if report_name is not None:
        _report(config, report_name)  # a misspelt --report fails before any data is read
    period = resolve_period(config, period_text, clock)
    horizon = (add_months(period.end, -config.project.history_months), period.end)
    data = load_sources(config.sources, config.root, horizon)
    if data.rejected:
        write_quality_report(data, config.output_dir / "data_quality" / "rejected_rows.csv")
    return Loaded(config, data, period)


def compute_scorecard(loaded: Loaded) -> dict:
    from .compute.scorecard import build_scorecard

    return build_scorecard(loaded.data.con, loaded.config, loaded.period)


# --------------------------------------------------------------------------- the monthly cycle

@dataclass
class RunSummary:
    report: str
    period: str
    state: str                      # done | partial | dry_run | nothing_to_do
    run_id: int | None
    envelopes: int
    sent: list[str]
    already: list[str]
    in_doubt: list[str]
    failed: list[tuple[str, str, int | None]]
    render_failures: dict[str, str]   # account_id -> why
    archived: list[str]
    archive_dir: Path
    outbox_dir: Path | None

    @property
    def exit_code(self) -> int:
        return 1 if self.state == "partial" else 0

    @property
    def counts(self) -> dict[str, int]:
        return {"envelopes": self.envelopes, "sent": len(self.sent), "already": len(self.already),
                "failed": len(self.failed), "in_doubt": len(self.in_doubt),
                "render_failures": len(self.render_failures)}

    @property
    def error(self) -> str | None:
        """What went wrong (None when nothing did): the ledger keeps it with the run, the scheduler logs it."""
        problems = [f"{who}: {why}" for who, why, _ in self.failed]
        problems += [f"account {a}: {why}" for a, why in self.render_failures.items()]
        problems += [f"{who}: in doubt (check the mailbox, then `reporter run --resend`)" for who in self.in_doubt]
        return "; ".join(problems) or None


def run_report(project_dir, report_name: str, period_text: str | None, clock: Clock, *, dry_run: bool = False,
               resend: str | None = None, progress=None, transport=None) -> RunSummary:
    """validate -> load -> compute -> render -> archive -> deliver, for one report and period.

    Blocking config or data errors raise before anything is rendered or sent. Rendering, archiving
    and sending overlap: each document is archived as soon as it is rendered, and each envelope
    is sent as soon as all its documents are archived, while the rest still render. One account
    that fails to render is reported and its envelopes wait for a later run; the others go out.
    """
    from .deliver.ledger import Ledger, default_url

    step = progress or (lambda stage, done, total, label="": None)
    step("load", 0, 1)
    loaded = load(project_dir, period_text, clock, report_name)
    config = loaded.config
    _report(config, report_name)
    step("load", 1, 1)
    step("compute", 0, 1)
    scorecard = compute_scorecard(loaded)
    step("compute", 1, 1)
    if dry_run:
        return _dry_run(loaded, report_name, scorecard, clock.now().replace(microsecond=0), step)
    ledger = Ledger(config.project.ledger_url or default_url(config.output_dir), clock=clock)
    run_id = None
    try:
        run_id = ledger.start_run(report_name, loaded.period.label)
        generated_at = _generated_at(ledger, report_name, loaded.period.label, clock)
        summary = _render_and_deliver(loaded, report_name, scorecard, generated_at, ledger, run_id, clock,
                                      resend, transport, step)
        ledger.finish_run(run_id, summary.state, summary.counts, summary.error)
        return summary
    except BaseException as exc:
        # The run's row must not stay "running" for ever: say how it ended. Stopped on purpose
        # (a signal, Ctrl-C) is partial, as a later run completes the period; anything else failed.
        if run_id is not None:
            stopped = isinstance(exc, (RunInterrupted, KeyboardInterrupt))
            ledger.finish_run(run_id, "partial" if stopped else "failed", {}, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        ledger.close()


def _render_and_deliver(loaded, report_name, scorecard, generated_at, ledger, run_id, clock, resend, transport,
                        step) -> RunSummary:
    from contextlib import nullcontext

    from . import __version__
    from .deliver.archive import Archive
    from .deliver.compose import compose
    from .deliver.dispatch import Dispatcher
    from .deliver.email import open_transport

    config, period = loaded.config, loaded.period.label
    plan = _plan(loaded, report_name, scorecard)
    archive_dir = config.output_dir / "archive"

    def compose_for(envelope, docs, too_big):
        note = str(archive_dir / report_name / period) if too_big else None
        return compose(config, report_name, envelope, scorecard, [d.filename for d in docs], note)

    meta = {"generated_at": generated_at, "config_sha256": config.config_sha256,
            "data_sha256": loaded.data.data_sha256, "code_version": __version__}
    opened = nullcontext(transport) if transport else open_transport(config.project.smtp, config.output_dir)
    with opened as transport:
        dispatcher = Dispatcher(config=config, report_name=report_name, period=period, compose_for=compose_for,
                                ledger=ledger, transport=transport, clock=clock, resend=resend)
        delivery = _Delivery(Archive(archive_dir), config, report_name, period, plan.envelopes, meta, dispatcher,
                             step)
        _, failures = _render_documents(loaded, report_name, scorecard, plan, generated_at, step, delivery.ready)
        outcome = dispatcher.outcome
        if outcome.failed or failures:
            _notify_admins(config, report_name, period, outcome, failures, transport, clock, run_id)
    state = "partial" if outcome.failed or failures or outcome.in_doubt else "done"
    return RunSummary(report_name, period, state, run_id, len(plan.envelopes), outcome.sent, outcome.already,
                      outcome.in_doubt, outcome.failed, failures, sorted(delivery.archived), archive_dir,
                      config.output_dir / "outbox" if config.project.smtp.transport == "outbox" else None)


def _dry_run(loaded, report_name, scorecard, generated_at, step) -> RunSummary:
    """Everything but archive and send: the documents go to output/reports/<report>/<period>/."""
    config, period = loaded.config, loaded.period.label
    plan = _plan(loaded, report_name, scorecard)
    documents, failures = _render_documents(loaded, report_name, scorecard, plan, generated_at, step)
    out_dir = config.output_dir / "reports" / report_name / period
    out_dir.mkdir(parents=True, exist_ok=True)
    for doc in documents.values():
        (out_dir / doc.filename).write_bytes(doc.data)
    return RunSummary(report_name, period, "dry_run", None, len(plan.envelopes), [], [], [], [], failures,
                      [], out_dir, None)


@dataclass
class _Plan:
    envelopes: list
    details: dict
    portfolio: dict | None


def _plan(loaded: Loaded, report_name: str, scorecard: dict) -> _Plan:
    """Who gets what, and the per-account detail tables the documents show."""
    from .compute.details import account_details, portfolio_details
    from .deliver.audience import plan_audience

    report = loaded.config.reports[report_name]
    envelopes = plan_audience(report, scorecard["accounts"], loaded.config.project.locale).envelopes
    ids = sorted({a for e in envelopes for a in e.account_ids})
    details = account_details(loaded.data.con, loaded.period, ids) if ids else {}
    portfolio = portfolio_details(loaded.data.con, loaded.period) if report.kind == "portfolio_scorecard" else None
    return _Plan(envelopes, details, portfolio)


def _report(config: ProjectConfig, name: str):
    from .errors import did_you_mean

    if name not in config.reports:
        raise ConfigError([Issue(f'no report "{name}" in configs/reports.yaml{did_you_mean(name, config.reports)}; '
                                 f'reports: {", ".join(config.reports)}')])
    return config.reports[name]


def _generated_at(ledger, report_name: str, period: str, clock: Clock):
    """The first run's start for this period: a re-run renders the same bytes, so the archive stays one revision."""
    starts = [r["started_at"] for r in ledger.runs(report_name) if r["period"] == period]
    return min(starts).replace(microsecond=0)


def _report_id(loaded: Loaded, report_name: str) -> str:
    import hashlib

    digest = hashlib.sha256(f"{loaded.config.config_sha256}:{loaded.data.data_sha256}".encode()).hexdigest()
    return f"{report_name}-{loaded.period.label}-{digest[:8]}"


def _document_keys(envelope, kind: str) -> list[tuple[str | None, str]]:
    """The (account or None for the portfolio, locale) documents an envelope carries, in attachment order."""
    return [(a, envelope.locale) for a in (envelope.account_ids if kind == "account_review" else (None,))]


def _render_documents(loaded, report_name, scorecard, plan, generated_at, step, ready=None):
    """Every (account or portfolio, locale) document the envelopes need, as PDF/A-3b (and HTML if asked).

    The documents are rendered by a pool of worker processes (render.pool: one per CPU, in this
    process when there are only a few), in envelope order, so the first envelopes are complete
    early. As each job comes back, ``ready(key, documents, error)`` is called (in completion
    order). Returns ({(account, locale, format): Document}, {account_id: why it failed}); the
    portfolio's failure is raised.
    """
    from .render.pool import Job, RenderContext, render_documents

    config = loaded.config
    report = config.reports[report_name]
    kind = report.kind
    wanted = list(dict.fromkeys(k for e in plan.envelopes for k in _document_keys(e, kind)))
    out_dir = config.output_dir / "reports" / report_name / scorecard["period"]
    context = RenderContext(config, report_name, scorecard, plan.details, plan.portfolio, generated_at,
                            _report_id(loaded, report_name), html_dir=out_dir if "html" in report.formats else None)
    names = {a["account_id"]: a["name"] for a in scorecard["accounts"]}
    documents, failures = {}, {}

    def arrived(done, total, result):
        key = result.job.key
        step("render", done, total, key[0] or report_name)
        docs = {} if result.error else _documents_of_result(config, report, report_name, scorecard, names, result)
        if result.error:
            failures.setdefault(key[0], result.error)
        documents.update({(*key, fmt): d for fmt, d in docs.items()})
        if ready:
            ready(key, list(docs.values()), result.error)

    if wanted:
        step("render", 0, len(wanted), wanted[0][0] or report_name)
    render_documents(context, [Job(a, locale) for a, locale in wanted], progress=arrived)
    step("render", len(wanted), len(wanted), "")
    return documents, failures


def _documents_of_result(config, report, report_name, scorecard, names, result) -> dict:
    """{format: Document} of one rendered job: the PDF, then the HTML when there is one."""
    from .deliver.archive import sha256_hex
    from .deliver.dispatch import Document
    from .render.files import account_file_stem, report_file_name

    account_id, locale = result.job.key
    suffix = "" if locale == (report.locale or config.project.locale) else f".{locale}"
    stem = (account_file_stem(account_id, names[account_id]) if account_id
            else report_file_name(report_name, scorecard["period"], "pdf")[:-4]) + suffix
    docs = {"pdf": Document(account_id, locale, f"{stem}.pdf", result.pdf, sha256_hex(result.pdf), "application/pdf")}
    if result.html is not None:
        docs["html"] = Document(account_id, locale, f"{stem}.html", result.html, sha256_hex(result.html), "text/html")
    return docs


class _Delivery:
    """Archives each document as it arrives and sends each envelope once all its documents are in.

    Every document is kept in the archive before any email carries it, listed with everyone who
    receives it (known from the plan before anything renders). An envelope one of whose accounts
    failed to render is blocked: nothing incomplete is sent; a later run sends it.
    """

    def __init__(self, archive, config, report_name, period, envelopes, meta, dispatcher, step):
        from collections import defaultdict

        from .deliver.dispatch import message_id

        self.archive, self.report_name, self.period = archive, report_name, period
        self.meta, self.dispatcher, self.step = meta, dispatcher, step
        self.kind = config.reports[report_name].kind
        self.envelopes = envelopes
        self.missing = {i: set(_document_keys(e, self.kind)) for i, e in enumerate(envelopes)}
        self.readers = defaultdict(list)   # document key -> indexes of the envelopes carrying it
        for i, e in enumerate(envelopes):
            for key in self.missing[i]:
                self.readers[key].append(i)
        sender = config.project.smtp.sender
        self.message_ids = [message_id(report_name, period, e, sender) for e in envelopes]
        self.documents: dict[tuple, list] = {}
        self.errors: dict[tuple, str] = {}
        self.archived: list[str] = []
        self.done = 0

    def ready(self, key, docs, error) -> None:
        if error:
            self.errors[key] = error
        readers = self.readers.get(key, [])
        for doc in docs:
            self._store(doc, readers)
        self.documents[key] = docs
        for i in readers:
            self.missing[i].discard(key)
            if not self.missing[i]:
                self._send(i)

    def _store(self, doc, readers) -> None:
        meta = {**self.meta, "locale": doc.locale,
                "recipients": sorted(self.envelopes[i].email for i in readers),
                "message_ids": sorted(self.message_ids[i] for i in readers)}
        entry = self.archive.store(self.report_name, self.period, doc.account_id, doc.filename, doc.data, meta)
        self.archived.append(entry["path"])

    def _send(self, index: int) -> None:
        envelope = self.envelopes[index]
        keys = _document_keys(envelope, self.kind)
        self.step("deliver", self.done, len(self.envelopes), envelope.email)
        failed = [k for k in keys if k in self.errors]
        if failed:
            account = failed[0][0]
            self.dispatcher.block(envelope, f"account {account} failed to render: {self.errors[failed[0]]}")
        else:
            self.dispatcher.send(envelope, [d for k in keys for d in self.documents[k]])
        self.done += 1
        self.step("deliver", self.done, len(self.envelopes), "")


def _notify_admins(config, report_name, period, outcome, failures, transport, clock, run_id) -> None:
    """One summary to the project's admins; its own failure is printed, never raised over the run's result."""
    from .deliver.email import SendFailure, build_message, message_id_for, send_with_retry
    from .deliver.dispatch import sender_domain

    admins = config.project.admins
    if not admins:
        return
    lines = [f"Report {report_name}, period {period}: {len(outcome.failed)} deliveries failed, "
             f"{len(failures)} accounts failed to render, {len(outcome.sent)} sent."]
    lines += [f"- {who}: {why}" + (f" (SMTP {code})" if code else "") for who, why, code in outcome.failed]
    lines += [f"- account {a}: {why}" for a, why in failures.items()]
    lines.append("A later `reporter run` delivers what is still pending.")
    text = "\n".join(lines) + "\n"
    smtp = config.project.smtp
    message = build_message(
        sender=smtp.sender, to=list(admins), subject=f"[reporter] {report_name} {period}: delivery problems",
        text=text, html="<pre>" + __import__("html").escape(text) + "</pre>",
        message_id=message_id_for(report_name, period, f"admins-run-{run_id}", sender_domain(smtp.sender)),
        date=clock.now())
    try:
        send_with_retry(transport, message, list(admins), smtp.max_attempts, base_delay=smtp.retry_delay)
    except SendFailure as exc:
        import sys

        print(f"could not notify the admins ({', '.join(admins)}): {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- render and plan on their own

def render_only(project_dir, report_name: str, period_text: str | None, clock: Clock, *, accounts=None,
                formats=("pdf", "html"), locale: str | None = None, out_dir: Path | None = None, progress=None):
    """`reporter render`: the documents of one report into output/reports/<report>/<period>/ (nothing sent)."""
    from .compute.details import account_details, portfolio_details
    from .render import render_report
    from .render.chart_set import charts_for_report

    loaded = load(project_dir, period_text, clock, report_name)
    config, period = loaded.config, loaded.period
    report = _report(config, report_name)
    scorecard = compute_scorecard(loaded)
    known = {a["account_id"] for a in scorecard["accounts"]}
    unknown = [a for a in accounts or () if a not in known]
    if unknown:
        from .errors import did_you_mean

        raise ConfigError([Issue(f'--account: no account "{a}" in the data{did_you_mean(a, known)}') for a in unknown])
    locale = locale or report.locale or config.project.locale
    details = account_details(loaded.data.con, period, list(accounts) if accounts else None)
    portfolio = portfolio_details(loaded.data.con, period) if report.kind == "portfolio_scorecard" else None
    charts = charts_for_report(config, report_name, scorecard, details, portfolio, locale)
    target = out_dir or config.output_dir / "reports" / report_name / period.label
    return render_report(config, report_name, scorecard, details, portfolio, charts, target, formats=formats,
                         locale=locale, accounts=accounts, generated_at=clock.now().replace(microsecond=0),
                         report_id=_report_id(loaded, report_name), progress=progress)


@dataclass
class PlanLine:
    recipient: str
    locale: str
    accounts: list[str]
    files: list[str]


def plan_only(project_dir, report_name: str, period_text: str | None, clock: Clock):
    """`reporter plan`: who would get which accounts and files, in which language; which accounts lack commentary."""
    from .deliver.audience import plan_audience
    from .render.files import account_file_name, report_file_name

    loaded = load(project_dir, period_text, clock, report_name)
    config, period = loaded.config, loaded.period
    report = _report(config, report_name)
    scorecard = compute_scorecard(loaded)
    audience = plan_audience(report, scorecard["accounts"], config.project.locale)
    names = {a["account_id"]: a["name"] for a in scorecard["accounts"]}
    lines = []
    for e in audience.envelopes:
        files = ([account_file_name(a, names[a], fmt) for a in e.account_ids for fmt in report.formats]
                 if report.kind == "account_review" else [report_file_name(report_name, period.label, f)
                                                          for f in report.formats])
        lines.append(PlanLine(e.email, e.locale, list(e.account_ids), files))
    notes_dir = config.root / "notes" / period.label
    missing_notes = [a["account_id"] for a in audience.selected if not (notes_dir / f"{a['account_id']}.md").is_file()]
    return period.label, lines, missing_notes if report.kind == "account_review" else [], audience.unowned
