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
from .errors import ConfigError, Issue
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


def run_report(project_dir, report_name: str, period_text: str | None, clock: Clock, *, dry_run: bool = False,
               resend: str | None = None, progress=None, transport=None) -> RunSummary:
    """validate -> load -> compute -> render -> archive -> deliver, for one report and period.

    Blocking config or data errors raise before anything is rendered or sent. One account that
    fails to render is reported and its envelopes wait for a later run; the others go out.
    """
    from . import __version__
    from .compute.details import account_details, portfolio_details
    from .deliver.archive import Archive
    from .deliver.audience import plan_audience
    from .deliver.compose import compose
    from .deliver.dispatch import dispatch
    from .deliver.email import open_transport
    from .deliver.ledger import Ledger, default_url

    step = progress or (lambda stage, done, total, label="": None)
    step("load", 0, 1)
    loaded = load(project_dir, period_text, clock, report_name)
    config, period = loaded.config, loaded.period
    report = _report(config, report_name)
    step("load", 1, 1)
    step("compute", 0, 1)
    scorecard = compute_scorecard(loaded)
    step("compute", 1, 1)
    plan = plan_audience(report, scorecard["accounts"], config.project.locale)
    ledger = None if dry_run else Ledger(config.project.ledger_url or default_url(config.output_dir), clock=clock)
    try:
        run_id = None if ledger is None else ledger.start_run(report_name, period.label)
        generated_at = _generated_at(ledger, report_name, period.label, clock)
        ids = sorted({a for e in plan.envelopes for a in e.account_ids})
        details = account_details(loaded.data.con, period, ids) if ids else {}
        portfolio = portfolio_details(loaded.data.con, period) if report.kind == "portfolio_scorecard" else None
        documents, failures = _render_documents(config, report_name, scorecard, plan.envelopes, details, portfolio,
                                                generated_at, _report_id(loaded, report_name), step)
        if dry_run:
            return _dry_summary(config, report_name, period.label, plan, documents, failures)
        archive = Archive(config.output_dir / "archive")
        archived = _archive(archive, config, loaded, report_name, period.label, plan.envelopes, documents,
                            generated_at, __version__)
        blocked = {e.key: f"account {a} failed to render: {failures[a]}" for e in plan.envelopes
                   for a in e.account_ids if a in failures}
        transport = transport or open_transport(config.project.smtp, config.output_dir)

        def documents_for(envelope):
            return _documents_of(envelope, documents, report.kind)

        def compose_for(envelope, docs, too_big):
            note = str(config.output_dir / "archive" / report_name / period.label) if too_big else None
            return compose(config, report_name, envelope, scorecard, [d.filename for d in docs], note)

        outcome = dispatch(config=config, report_name=report_name, period=period.label, envelopes=plan.envelopes,
                           documents_for=documents_for, compose_for=compose_for, blocked=blocked,
                           ledger=ledger, transport=transport, clock=clock, resend=resend,
                           progress=lambda d, t, label="": step("deliver", d, t, label))
        state = "partial" if outcome.failed or failures or outcome.in_doubt else "done"
        counts = {"envelopes": len(plan.envelopes), "sent": len(outcome.sent), "already": len(outcome.already),
                  "failed": len(outcome.failed), "in_doubt": len(outcome.in_doubt), "render_failures": len(failures)}
        if outcome.failed or failures:
            _notify_admins(config, report_name, period.label, outcome, failures, transport, clock, run_id)
        ledger.finish_run(run_id, state, counts, _error_text(outcome, failures))
        return RunSummary(report_name, period.label, state, run_id, len(plan.envelopes), outcome.sent,
                          outcome.already, outcome.in_doubt, outcome.failed, failures, archived,
                          config.output_dir / "archive", config.output_dir / "outbox"
                          if config.project.smtp.transport == "outbox" else None)
    finally:
        if ledger is not None:
            ledger.close()


def _report(config: ProjectConfig, name: str):
    from .errors import did_you_mean

    if name not in config.reports:
        raise ConfigError([Issue(f'no report "{name}" in configs/reports.yaml{did_you_mean(name, config.reports)}; '
                                 f'reports: {", ".join(config.reports)}')])
    return config.reports[name]


def _generated_at(ledger, report_name: str, period: str, clock: Clock):
    """The first run's start for this period: a re-run renders the same bytes, so the archive stays one revision."""
    if ledger is None:
        return clock.now().replace(microsecond=0)
    starts = [r["started_at"] for r in ledger.runs(report_name) if r["period"] == period]
    return min(starts).replace(microsecond=0)


def _report_id(loaded: Loaded, report_name: str) -> str:
    import hashlib

    digest = hashlib.sha256(f"{loaded.config.config_sha256}:{loaded.data.data_sha256}".encode()).hexdigest()
    return f"{report_name}-{loaded.period.label}-{digest[:8]}"


def _render_documents(config, report_name, scorecard, envelopes, details, portfolio, generated_at, report_id, step):
    """Every (account or portfolio, locale) document the envelopes need, as PDF/A-3b (and HTML if asked).

    The documents are rendered by a pool of worker processes (render.pool: one per CPU, in this
    process when there are only a few); they are assembled here in a fixed order, so neither the
    result nor its order depends on which worker finished first. An account that fails to render
    is reported in ``failures`` (with no documents after its failure, as one after another would
    give); the portfolio's failure is raised.
    """
    from .deliver.archive import sha256_hex
    from .deliver.dispatch import Document
    from .render.files import account_file_stem, report_file_name
    from .render.pool import Job, RenderContext, render_documents

    report = config.reports[report_name]
    wanted = sorted({(a, e.locale) for e in envelopes for a in (e.account_ids or (None,))}, key=str)
    by_id = {a["account_id"]: a for a in scorecard["accounts"]}
    out_dir = config.output_dir / "reports" / report_name / scorecard["period"]
    context = RenderContext(config, report_name, scorecard, details, portfolio, generated_at, report_id,
                            html_dir=out_dir if "html" in report.formats else None)
    if wanted:
        step("render", 0, len(wanted), wanted[0][0] or report_name)
    rendered = render_documents(context, [Job(a, locale) for a, locale in wanted],
                                progress=lambda done, total, r: step("render", done, total,
                                                                     r.job.account_id or report_name))
    documents, failures = {}, {}
    for account_id, locale in wanted:
        if account_id in failures:
            continue
        result = rendered[(account_id, locale)]
        if result.error is not None:
            failures[account_id] = result.error
            continue
        suffix = "" if locale == (report.locale or config.project.locale) else f".{locale}"
        stem = (account_file_stem(account_id, by_id[account_id]["name"]) if account_id
                else report_file_name(report_name, scorecard["period"], "pdf")[:-4]) + suffix
        documents[(account_id, locale, "pdf")] = Document(account_id, locale, f"{stem}.pdf", result.pdf,
                                                          sha256_hex(result.pdf), "application/pdf")
        if result.html is not None:
            documents[(account_id, locale, "html")] = Document(account_id, locale, f"{stem}.html", result.html,
                                                               sha256_hex(result.html), "text/html")
    step("render", len(wanted), len(wanted), "")
    return documents, failures


def _documents_of(envelope, documents: dict, kind: str) -> list:
    keys = envelope.account_ids if kind == "account_review" else (None,)
    return [documents[(a, envelope.locale, fmt)] for a in keys for fmt in ("pdf", "html")
            if (a, envelope.locale, fmt) in documents]


def _archive(archive, config, loaded, report_name, period, envelopes, documents, generated_at, version) -> list[str]:
    """Keep every document before it is sent, listed with who receives it and from which config and data."""
    from .deliver.dispatch import message_id

    stored = []
    for (account_id, locale, _fmt), doc in sorted(documents.items(), key=lambda kv: kv[1].filename):
        receiving = [e for e in envelopes if e.locale == locale and (account_id is None or account_id in e.account_ids)]
        meta = {
            "generated_at": generated_at,
            "recipients": sorted(e.email for e in receiving),
            "message_ids": sorted(message_id(report_name, period, e, config.project.smtp.sender) for e in receiving),
            "locale": locale,
            "config_sha256": loaded.config.config_sha256,
            "data_sha256": loaded.data.data_sha256,
            "code_version": version,
        }
        entry = archive.store(report_name, period, account_id, doc.filename, doc.data, meta)
        stored.append(entry["path"])
    return stored


def _dry_summary(config, report_name, period, plan, documents, failures) -> RunSummary:
    out_dir = config.output_dir / "reports" / report_name / period
    out_dir.mkdir(parents=True, exist_ok=True)
    for doc in documents.values():
        (out_dir / doc.filename).write_bytes(doc.data)
    return RunSummary(report_name, period, "dry_run", None, len(plan.envelopes), [], [], [], [], failures,
                      [], out_dir, None)


def _error_text(outcome, failures) -> str | None:
    problems = [f"{who}: {why}" for who, why, _ in outcome.failed] + [f"{a}: {why}" for a, why in failures.items()]
    problems += [f"{who}: in doubt (was being sent when a run stopped)" for who in outcome.in_doubt]
    return "\n".join(problems) or None


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
