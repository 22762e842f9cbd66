"""The `reporter` command: typer + rich, wiring the stages together and nothing more."""
from __future__ import annotations

import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from .errors import ReporterError

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
    from .config import load_project

    config = load_project(project)
    from .sources import load_sources, write_quality_report

    out.print(f"configs/ OK: {len(config.sources)} sources, {len(config.tiers.tiers)} tiers, "
              f"{len(config.reports)} reports", markup=False)
    result = load_sources(config.sources, config.root, _horizon(config))
    _print_load_summary(result)
    if result.rejected:
        report = config.output_dir / "data_quality" / "rejected_rows.csv"
        write_quality_report(result, report)
        out.print(f"{len(result.rejected)} rows rejected; details in {_shown(report)}", markup=False)
    _print_schedules(config)


def _horizon(config):
    from .clock import SystemClock
    from .compute.periods import add_months, last_complete_period

    period = last_complete_period(SystemClock().now(), config.project.timezone, "month", config.project.fiscal_year_start)
    return add_months(period.end, -config.project.history_months), period.end


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
    from .clock import SystemClock
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
