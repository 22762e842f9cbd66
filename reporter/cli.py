"""The `reporter` command: typer + rich, wiring the stages together and nothing more."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .clock import SystemClock
from .errors import Issue, ReporterError, did_you_mean

app = typer.Typer(
    help="Key-account scorecards from your own data: validate a project, compute scorecards, "
    "render reviews, deliver them exactly once and keep an audit archive.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
state = {"debug": False}

ProjectOpt = typer.Option(Path("."), "-p", "--project", help="Project directory (the one holding configs/).")


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    state["debug"] = debug


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Where to create the project."),
    sample: bool = typer.Option(False, "--sample", help="Also write deterministic sample data to data/demo/."),
    accounts: int = typer.Option(60, min=5, help="Sample accounts."),
    months: int = typer.Option(24, min=13, help="Months of sample history."),
    seed: int = typer.Option(7, help="Random seed; the same seed gives the same files."),
    end: str = typer.Option("2026-10", help="Last month of sample data (YYYY-MM)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing configs/."),
) -> None:
    """Create a project: commented configs/, and with --sample a complete synthetic data set."""
    from .sample.project import init_project

    result = init_project(directory, sample=sample, accounts=accounts, months=months, seed=seed, end=end, force=force)
    for line in result:
        out.print(line, markup=False)


@app.command()
def validate(project: Path = ProjectOpt) -> None:
    """Check configs and data: every problem with file, line and column; row counts per entity."""
    from .pipeline import load

    loaded = load(project, None, SystemClock())
    config = loaded.config
    out.print(f"configs/ OK: {len(config.sources)} sources, {len(config.tiers.tiers)} tiers, "
              f"{len(config.reports)} reports", markup=False)
    _print_load_summary(loaded.data)
    if loaded.data.rejected:
        report = config.output_dir / "data_quality" / "rejected_rows.csv"
        out.print(f"{len(loaded.data.rejected)} rows rejected; details in {_shown(report)}", markup=False)
    _print_schedules(config)


SCORECARD_FORMATS = ("table", "csv", "json", "parquet")


@app.command()
def scorecard(
    project: Path = ProjectOpt,
    period: Optional[str] = typer.Option(None, help="2026-10, 2026-Q3 or 2026; default: the last complete month."),
    tier: Optional[str] = typer.Option(None, help="Only accounts of this tier."),
    account: Optional[str] = typer.Option(None, help="Only this account (the table view then lists every KPI)."),
    format: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Compute every account's scorecard: KPIs vs target, status, health score, trend and early warnings."""
    from .compute.scorecard import scorecard_frame
    from .pipeline import compute_scorecard, load

    if format not in SCORECARD_FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(SCORECARD_FORMATS)}", param_hint="--format")
    if format == "parquet" and out_file is None:
        raise typer.BadParameter("parquet is binary: give --out FILE", param_hint="--format")
    result = _filter_scorecard(compute_scorecard(load(project, period, SystemClock())), tier, account)
    if format == "table":
        _print_scorecard(result, account is not None)
        return
    if format == "json":
        text = json.dumps(result, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    else:
        frame = scorecard_frame(result)
        if format == "parquet":
            frame.to_parquet(out_file, index=False)
            out.print(f"wrote {out_file}", markup=False)
            return
        text = frame.to_csv(index=False)
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text, encoding="utf-8")
        out.print(f"wrote {out_file}", markup=False)


def _filter_scorecard(result: dict, tier: str | None, account: str | None) -> dict:
    accounts = result["accounts"]
    if tier is not None:
        tiers = sorted({a["tier"] for a in accounts})
        if tier not in tiers:
            raise ReporterError(f'--tier: unknown tier "{tier}"{did_you_mean(tier, tiers)}; tiers: {", ".join(tiers)}')
        accounts = [a for a in accounts if a["tier"] == tier]
    if account is not None:
        ids = [a["account_id"] for a in accounts]
        if account not in ids:
            raise ReporterError(f'--account: no account "{account}"{did_you_mean(account, ids)}')
        accounts = [a for a in accounts if a["account_id"] == account]
    return {**result, "accounts": accounts}


STATUS_STYLE = {"green": "green", "amber": "yellow", "red": "red"}


def _print_scorecard(result: dict, detailed: bool) -> None:
    if detailed and result["accounts"]:
        _print_account_kpis(result["accounts"][0], result["period"])
        return
    table = Table(title=f"Scorecard {result['period']}", title_justify="left")
    for column in ("account", "name", "tier", "health", "status", "trend", "warnings"):
        table.add_column(column, justify="right" if column == "health" else "left", overflow="fold")
    for a in result["accounts"]:
        health = "-" if a["health_score"] is None else f"{a['health_score']:.0f}"
        status = Text(a["health_status"], style=STATUS_STYLE.get(a["health_status"], ""))
        warnings = ", ".join(w["code"] for w in a["warnings"])  # reasons in full: --account ID
        table.add_row(a["account_id"], a["name"], a["tier"], health, status, a["trend"] or "-", warnings)
    out.print(table)
    if any(a["warnings"] for a in result["accounts"]):
        out.print("warning reasons: reporter scorecard --account ID", markup=False)


def _print_account_kpis(a: dict, period: str) -> None:
    health = "-" if a["health_score"] is None else f"{a['health_score']:.0f}"
    out.print(Text(f"{a['account_id']} {a['name']} ({a['tier']}), {period}: health {health}, "
                   f"{a['health_status']}, trend {a['trend'] or '-'}"))
    table = Table(title_justify="left")
    for column in ("KPI", "value", "previous", "target", "status", "score", "percentile", "n", "note"):
        table.add_column(column, justify="left" if column in ("KPI", "status", "note") else "right", overflow="fold")
    for kpi_id, k in a["kpis"].items():
        table.add_row(kpi_id, _num(k["value"]), _num(k["previous"]), _num(k["target"]),
                      Text(k["status"], style=STATUS_STYLE.get(k["status"], "")), _num(k["score"]),
                      _num(k["percentile"]), str(k["n"] if k["n"] is not None else "-"), k["note"] or "")
    out.print(table)
    for w in a["warnings"]:
        out.print(Text(f"warning {w['code']}: {w['reason']}", style="red"))


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


@app.command()
def run(
    project: Path = ProjectOpt,
    report: str = typer.Option(..., "--report", "-r", help="Report name from configs/reports.yaml."),
    period: Optional[str] = typer.Option(None, help="2026-10, 2026-Q3 or 2026; default: the last complete month."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Render into output/reports/ only: no archive, no email."),
    resend: Optional[str] = typer.Option(None, "--resend", help="Send this recipient's email again, on purpose."),
) -> None:
    """The whole cycle for one report: validate, load, compute, render, archive, deliver. Exit 1 if partial."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .pipeline import run_report

    columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[label]}"))
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int, label: str = "") -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or 1, label="")
            bar.update(tasks[stage], completed=done if total else 1, total=total or 1, label=label)

        summary = run_report(project, report, period, SystemClock(), dry_run=dry_run, resend=resend,
                             progress=progress)
    _print_run_summary(summary)
    raise typer.Exit(summary.exit_code)


def _print_run_summary(s) -> None:
    if s.state == "dry_run":
        out.print(f"dry run of {s.report} {s.period}: {s.envelopes} emails would be sent; documents in "
                  f"{_shown(s.archive_dir)}", markup=False)
    else:
        out.print(f"{s.report} {s.period}: {s.state}. {len(s.sent)} sent, {len(s.already)} already sent earlier, "
                  f"{len(s.failed)} failed, {len(s.in_doubt)} in doubt; {len(s.archived)} documents archived in "
                  f"{_shown(s.archive_dir)}", markup=False)
        if s.outbox_dir is not None and s.sent:
            out.print(f"emails written to {_shown(s.outbox_dir)}", markup=False)
    problems = [(who, why, code) for who, why, code in s.failed]
    problems += [(f"account {a}", why, None) for a, why in s.render_failures.items()]
    problems += [(who, "in doubt: a previous run stopped while sending; check the mailbox, then --resend", None)
                 for who in s.in_doubt]
    if problems:
        table = Table(title="Not delivered", title_justify="left")
        for column in ("recipient", "why", "SMTP"):
            table.add_column(column, overflow="fold")
        for who, why, code in problems:
            table.add_row(who, why, "" if code is None else str(code))
        out.print(table)


@app.command()
def render(
    project: Path = ProjectOpt,
    report: str = typer.Option(..., "--report", "-r", help="Report name from configs/reports.yaml."),
    period: Optional[str] = typer.Option(None, help="2026-10, 2026-Q3 or 2026; default: the last complete month."),
    account: Optional[list[str]] = typer.Option(None, "--account", "-a", help="Only these accounts (repeatable)."),
    format: str = typer.Option("pdf,html", "--format", "-f", help="pdf, html or pdf,html."),
    locale: Optional[str] = typer.Option(None, help="en or zh_CN; default: the report's, else the project's."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: output/reports/<report>/<period>/."),
) -> None:
    """Render a report's documents (HTML and PDF) without sending anything."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .pipeline import render_only

    formats = tuple(f.strip() for f in format.split(",") if f.strip())
    bad = [f for f in formats if f not in ("pdf", "html")]
    if bad or not formats:
        raise typer.BadParameter(f"expected pdf, html or pdf,html, got {format!r}", param_hint="--format")
    if locale is not None and locale not in ("en", "zh_CN"):
        raise typer.BadParameter(f"expected en or zh_CN, got {locale!r}", param_hint="--locale")
    with Progress(TextColumn("render"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[label]}"), console=err) as bar:
        task = bar.add_task("render", total=None, label="loading data")

        def progress(done: int, total: int, label: str = "") -> None:
            bar.update(task, completed=done, total=total, label=label)

        artifacts = render_only(project, report, period, SystemClock(), accounts=account or None, formats=formats,
                                locale=locale, out_dir=out_dir, progress=progress)
    for artifact in artifacts:
        out.print(f"wrote {_shown(artifact.path)}", markup=False)


@app.command()
def plan(
    project: Path = ProjectOpt,
    report: str = typer.Option(..., "--report", "-r", help="Report name from configs/reports.yaml."),
    period: Optional[str] = typer.Option(None, help="Default: the last complete month."),
) -> None:
    """Who would receive what: recipient, accounts, files, language; and which accounts lack commentary. Sends nothing."""
    from .pipeline import plan_only

    label, lines, missing_notes, unowned = plan_only(project, report, period, SystemClock())
    table = Table(title=f"{report} {label}", title_justify="left")
    for column in ("recipient", "locale", "accounts", "files"):
        table.add_column(column, overflow="fold")
    for line in lines:
        table.add_row(line.recipient, line.locale, ", ".join(line.accounts) or "(portfolio)", "\n".join(line.files))
    out.print(table)
    if missing_notes:
        out.print(f"no commentary yet (notes/{label}/<account>.md) for: {', '.join(missing_notes)}", markup=False)
    if unowned:
        out.print(f"accounts without an owner_email, sent to no owner: {', '.join(unowned)}", markup=False)


@app.command()
def verify(project: Path = ProjectOpt) -> None:
    """Check the audit archive: every file's hash and the manifest's hash chain. Exit 2 on any problem."""
    from .config import load_project
    from .deliver.archive import Archive

    config = load_project(project)
    archive = Archive(config.output_dir / "archive")
    problems = archive.verify()
    entries = [e for e in archive.entries() if "event" not in e]
    if problems:
        raise ReporterError([Issue(p.detail, f"{_shown(archive.root)}/{p.path}", path=p.kind) for p in problems])
    out.print(f"archive OK: {len(entries)} artifacts, hash chain intact, no unlisted files "
              f"({_shown(archive.root)})", markup=False)


@app.command()
def runs(
    project: Path = ProjectOpt,
    report: Optional[str] = typer.Option(None, "--report", "-r"),
    format: str = typer.Option("table", "--format", "-f", help="table or json."),
) -> None:
    """History of runs from the ledger: report, period, state, times, counts."""
    rows = _ledger_rows(project, lambda ledger: ledger.runs(report))
    _print_rows(rows, ("id", "report", "period", "state", "started_at", "finished_at", "counts", "error"), format)


@app.command()
def deliveries(
    project: Path = ProjectOpt,
    report: Optional[str] = typer.Option(None, "--report", "-r"),
    period: Optional[str] = typer.Option(None),
    format: str = typer.Option("table", "--format", "-f", help="table or json."),
) -> None:
    """Every delivery from the ledger: recipient, state, attempts, last SMTP code, message id, sent at."""
    rows = _ledger_rows(project, lambda ledger: ledger.deliveries(report, period))
    _print_rows(rows, ("report", "period", "recipient", "state", "attempts", "last_code", "message_id", "sent_at",
                       "resends"), format)


@app.command()
def expire(
    project: Path = ProjectOpt,
    yes: bool = typer.Option(False, "--yes", help="Really delete; without it only lists what would go."),
) -> None:
    """Delete archived files older than retention_years (project.yaml); each deletion is recorded in the manifest."""
    from .config import load_project
    from .deliver.archive import Archive

    config = load_project(project)
    archive = Archive(config.output_dir / "archive")
    years = config.project.retention_years
    if not yes:
        due = archive.expired_by(years, SystemClock().now())
        out.print(f"{len(due)} files older than {years} years would be deleted; run with --yes to delete them",
                  markup=False)
        return
    removed = archive.expire(years, SystemClock().now())
    out.print(f"deleted {len(removed)} files older than {years} years; recorded in the manifest", markup=False)


def _ledger_rows(project: Path, query) -> list[dict]:
    from .config import load_project
    from .deliver.ledger import Ledger, default_url

    config = load_project(project)
    with Ledger(config.project.ledger_url or default_url(config.output_dir), clock=SystemClock()) as ledger:
        return query(ledger)


def _print_rows(rows: list[dict], columns: tuple[str, ...], format: str) -> None:
    if format == "json":
        sys.stdout.write(json.dumps(rows, default=str, ensure_ascii=False, indent=2) + "\n")
        return
    if format != "table":
        raise typer.BadParameter("expected table or json", param_hint="--format")
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    out.print(table)


def _print_load_summary(result) -> None:
    table = Table(title="Data loaded", title_justify="left")
    for column in ("source", "file", "loaded", "rejected"):
        table.add_column(column, justify="left" if column in ("source", "file") else "right", overflow="fold")
    for source, entity, file, loaded, rejected in result.summary_rows():
        table.add_row(source if source == entity else f"{source} ({entity})", file, str(loaded), str(rejected))
    out.print(table)
    shown = 10
    for rejected in result.rejected[:shown]:
        out.print(f"  rejected {rejected.issue()}", markup=False)
    if len(result.rejected) > shown:
        out.print(f"  ... and {len(result.rejected) - shown} more", markup=False)


def _print_schedules(config) -> None:
    from .scheduling.planner import next_runs

    now = SystemClock().now()
    for name, report in config.reports.items():
        if report.schedule is None:
            out.print(f"report {name}: not scheduled (run it with `reporter run --report {name}`)", markup=False)
            continue
        zone = ZoneInfo(report.schedule.timezone)
        times = ", ".join(t.astimezone(zone).strftime("%Y-%m-%d %H:%M") for t in next_runs(report.schedule, now))
        out.print(f"report {name}: next runs {times} ({report.schedule.timezone}), "
                  f"reporting the {report.schedule.period.replace('_', ' ')}", markup=False)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command()
def schema(
    project: Path = ProjectOpt,
    check: bool = typer.Option(False, "--check", help="Exit 1 if configs/schema.json is out of date."),
) -> None:
    """Write configs/schema.json, the JSON Schema editors use to complete and check the YAML files."""
    from .config.schema import schema_text

    target = project / "configs" / "schema.json"
    text = schema_text()
    if check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            err.print(f"{target} is out of date; run `reporter schema -p {project}`", markup=False)
            raise typer.Exit(1)
        out.print(f"{target} is current", markup=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    out.print(f"wrote {target}", markup=False)


def _now_option(text: str | None):
    """--now ISO-TIME as a FixedClock (a time without offset is UTC), else the system clock."""
    from datetime import datetime, timezone

    from .clock import FixedClock

    if text is None:
        return SystemClock()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected an ISO time such as 2026-11-03T00:00:00Z, got {text!r}",
                                 param_hint="--now") from None
    return FixedClock(at if at.tzinfo else at.replace(tzinfo=timezone.utc))


@app.command("schedule")
def schedule_command(
    project: Path = ProjectOpt,
    once: bool = typer.Option(False, "--once", help="Run what is due now, then exit (for cron, systemd timers, "
                              "Kubernetes CronJobs). Exit 1 if a run ended partial or failed."),
    now: Optional[str] = typer.Option(None, "--now", help="Act as if at this ISO time (needs --once): dry runs, "
                                      "tests, backfills. Without an offset: UTC."),
    every: int = typer.Option(60, "--every", min=1, help="Seconds between ticks of the daemon."),
    log_format: str = typer.Option("text", "--log-format", help="text or json (one object per line)."),
    holder: Optional[str] = typer.Option(None, "--holder", help="Name in the claims table; default host:pid."),
    lease: int = typer.Option(300, "--lease", min=3, help="Seconds a claim lasts without renewal; a dead "
                              "holder's period is taken over after this."),
    retry_after: int = typer.Option(900, "--retry-after", min=0, help="Seconds before a partial period is "
                                    "retried (doubling per attempt, at most a day)."),
) -> None:
    """Run every scheduled report's due periods, once across all schedulers sharing the ledger; stay up and
    tick every minute, or with --once do what is due and exit. SIGTERM/SIGINT: finish the email in flight, exit 0."""
    import threading

    from .scheduling.daemon import FAILING_STATES, EventLog, default_holder, run_daemon, stop_on_signals, tick

    if log_format not in ("text", "json"):
        raise typer.BadParameter("expected text or json", param_hint="--log-format")
    if now is not None and not once:
        raise typer.BadParameter("a daemon runs on the real clock; use --now with --once (once per moment "
                                 "to replay, e.g. for a backfill)", param_hint="--now")
    clock = _now_option(now)
    log = EventLog(log_format)
    holder = holder or default_holder()
    stop = threading.Event()
    stop_on_signals(stop)
    options = {"lease_seconds": lease, "retry_seconds": retry_after}
    if not once:
        run_daemon(project, clock, every_seconds=every, stop=stop, holder=holder, log=log, **options)
        return
    results = tick(project, clock, holder, log, stop=stop, **options)
    if stop.is_set():
        log("stopped", holder=holder)
    elif not results:
        log("nothing_due", holder=holder, now=clock.now())
    raise typer.Exit(1 if any(r.state in FAILING_STATES for r in results) else 0)


@app.command("next")
def next_command(
    project: Path = ProjectOpt,
    now: Optional[str] = typer.Option(None, "--now", help="List from this ISO time instead of now (UTC if no offset)."),
    count: int = typer.Option(3, "--count", min=1, help="Runs per report."),
) -> None:
    """Upcoming scheduled runs of every report, in the report's time zone, with the period each one reports."""
    from .config import load_project
    from .scheduling.planner import next_runs, period_for

    config = load_project(project)
    start = _now_option(now).now()
    table = Table(title=f"Next runs after {start.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M} UTC",
                  title_justify="left")
    for column in ("report", "runs at", "time zone", "reports period"):
        table.add_column(column, overflow="fold")
    for name, report in config.reports.items():
        if report.schedule is None:
            table.add_row(name, "not scheduled", "", "")
            continue
        zone = ZoneInfo(report.schedule.timezone)
        for at in next_runs(report.schedule, start, count):
            table.add_row(name, at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"), report.schedule.timezone,
                          period_for(report.schedule, at, config.project.fiscal_year_start).label)
    out.print(table)


def main() -> None:
    """Entry point: user errors print as located messages with exit code 2, tracebacks only with --debug."""
    try:
        app()  # typer handles usage errors itself (exit 2); ours propagate to here
    except ReporterError as exc:
        if state["debug"]:
            raise
        _print_issues(exc)
        sys.exit(exc.exit_code)


def _print_issues(exc: ReporterError) -> None:
    for issue in exc.issues:
        err.print(str(issue), markup=False, soft_wrap=True)
    count = len(exc.issues)
    err.print(f"{count} problem{'s' if count != 1 else ''} found; nothing was written or sent.", markup=False)
