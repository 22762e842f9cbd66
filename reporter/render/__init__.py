"""Render stage: scorecard dicts -> HTML and PDF documents (account reviews, the leadership scorecard).

``render_report`` writes one file per account (account_review) or one file per run
(portfolio_scorecard) and format, atomically; ``archive_pdf_bytes`` makes the PDF/A-3b
variant with the scorecard attached as CSV and JSON for the audit archive. Charts come
from the caller (``charts_for(account)``; ``charts_for(None)`` for the portfolio).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable

from ..errors import Issue, RenderError
from .files import account_file_name, report_file_name, unique_file_names
from .html import (common_context, normalise_account, portfolio_metadata, print_images, render_account_review_html,
                   render_context_texts, render_portfolio_html, review_metadata)
from .i18n import i18n_for
from .notes import load_notes
from .pdf import check_font_coverage, render_pdf

FORMATS = ("pdf", "html")

__all__ = ["Artifact", "render_report", "archive_pdf_bytes", "scorecard_csv", "scorecard_json"]


@dataclass(frozen=True)
class Artifact:
    path: Path
    account_id: str | None  # None for the portfolio scorecard
    format: str
    locale: str
    sha256: str


def write_atomic(path: Path, data: bytes) -> str:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def _selected_accounts(config, report_name: str, scorecard: dict, accounts: Iterable[str] | None) -> list[dict]:
    by_id = {str(a["account_id"]): a for a in scorecard.get("accounts", [])}
    if accounts is not None:
        wanted = [str(a) for a in accounts]
        unknown = [a for a in wanted if a not in by_id]
        if unknown:
            raise RenderError([Issue(f'account "{a}" is not in the scorecard of {scorecard.get("period")}',
                                     path="accounts") for a in unknown])
        return [by_id[a] for a in dict.fromkeys(wanted)]
    rule = config.reports[report_name].filter
    return [a for a in scorecard.get("accounts", [])
            if (not rule.tiers or a.get("tier") in rule.tiers)
            and (not rule.regions or a.get("region") in rule.regions)
            and (not rule.accounts or str(a["account_id"]) in rule.accounts)]


def _common(config, report_name, scorecard, generated_at, report_id, locale) -> dict:
    return common_context(config, report_name, period=scorecard["period"], generated_at=generated_at,
                          report_id=report_id, locale=locale, period_start=scorecard.get("period_start"),
                          period_end=scorecard.get("period_end"))


def _review_renderer(config, report_name, scorecard, account, details, charts, common, i18n) -> Callable[[bool], str]:
    """Loads the note and checks fonts once; returns for_print -> HTML of the review."""
    notes_html = load_notes(config.root, scorecard["period"], str(account["account_id"]), i18n)
    check_font_coverage(render_context_texts(account, details, notes_html, charts))
    return lambda for_print: render_account_review_html(config, report_name, account, details, charts, notes_html,
                                                        common, for_print)


def render_report(
    config,
    report_name: str,
    scorecard: dict,
    details_by_account: dict[str, dict],
    portfolio_details: dict | None,
    charts_for: Callable[[dict | None], list],
    out_dir: Path,
    formats: Iterable[str] = ("pdf", "html"),
    locale: str | None = None,
    accounts: Iterable[str] | None = None,
    *,
    generated_at: datetime,
    report_id: str,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Artifact]:
    """Render ``report_name`` for the scorecard's period into ``out_dir``; returns what was written.

    account_review: one document per account (``accounts`` if given, else the report's filter),
    named ``<id>-<slug>.<format>``; portfolio_scorecard: one ``<report>-<period>.<format>``.
    A failing account does not stop the others: every failure is collected and raised
    together (RenderError, one issue per account) after the rest are written; the error's
    ``artifacts`` lists what was written.
    """
    if report_name not in config.reports:
        raise RenderError(f'no report "{report_name}" in reports.yaml; reports are: {", ".join(config.reports)}')
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise RenderError(f"unknown format {', '.join(bad) or '(none)'}; formats are pdf and html")
    report = config.reports[report_name]
    common = _common(config, report_name, scorecard, generated_at, report_id, locale)
    i18n = i18n_for(config, common["locale"])
    out_dir = Path(out_dir)
    template_dirs = config.template_dirs()
    artifacts: list[Artifact] = []

    def emit(render: Callable[[bool], str], metadata: dict, names: dict[str, str], account_id: str | None,
             charts: list) -> None:
        for fmt in formats:
            data = (render(False).encode("utf-8") if fmt == "html"
                    else render_pdf(render(True), template_dirs[0], metadata, generated_at, allowed_dirs=template_dirs,
                                    images=print_images(charts)))
            path = out_dir / names[fmt]
            artifacts.append(Artifact(path, account_id, fmt, common["locale"], write_atomic(path, data)))

    if report.kind == "portfolio_scorecard":
        if progress:
            progress(0, 1, report_name)
        charts = charts_for(None)
        check_font_coverage(render_context_texts(None, portfolio_details, None, charts))
        check_font_coverage((f"scorecard {a.get('account_id')}: {where}", text)
                            for a in scorecard.get("accounts", [])
                            for where, text in render_context_texts(a, None, None, []))
        emit(lambda for_print: render_portfolio_html(config, report_name, scorecard, charts, common, for_print),
             portfolio_metadata(common, i18n),
             {f: report_file_name(report_name, scorecard["period"], f) for f in formats}, None, charts)
        if progress:
            progress(1, 1, report_name)
        return artifacts

    selected = _selected_accounts(config, report_name, scorecard, accounts)
    try:
        names = {f: unique_file_names(selected, f) for f in formats}
    except ValueError as exc:
        raise RenderError(str(exc)) from None
    failures: list[Issue] = []
    for done, account in enumerate(selected):
        account_id = str(account["account_id"])
        if progress:
            progress(done, len(selected), account_id)
        try:
            charts = charts_for(account)
            render = _review_renderer(config, report_name, scorecard, account, details_by_account.get(account_id),
                                      charts, common, i18n)
            emit(render, review_metadata(common, account, i18n), {f: names[f][account_id] for f in formats}, account_id,
                 charts)
        except RenderError as exc:
            failures += [Issue(f"account {account_id}: {issue.message}", issue.file, issue.line, issue.col,
                               issue.path) for issue in exc.issues]
    if progress:
        progress(len(selected), len(selected), "")
    if failures:
        error = RenderError(failures)
        error.artifacts = artifacts
        raise error
    return artifacts


# --------------------------------------------------------------------------- archive variant

_CSV_COLUMNS = ("period", "account_id", "name", "tier", "health_score", "previous_health_score", "health_status",
                "trend", "kpi", "label", "value", "unit", "previous", "change", "target", "status", "score",
                "percentile", "n", "note", "direction", "window")


def _plain(value):
    """JSON-safe, deterministic value: NaN/inf -> None, dates -> ISO text, numpy scalars -> Python."""
    kind = type(value)  # the plain types first: a whole scorecard is ~400,000 values
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {str(k): _plain(v) for k, v in value.items()}
    if kind is list:
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_value(value) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def scorecard_csv(period: str, accounts: list[dict]) -> bytes:
    """One row per account and KPI (UTF-8 with BOM, so spreadsheet programs read Chinese names)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for raw in accounts:
        account = normalise_account(raw)
        base = [period, account["account_id"], account["name"], account["tier"], account["health_score"],
                account["previous_health_score"], account["health_status"], account["trend"]]
        for kpi_id, kpi in account["kpis"].items():
            label = kpi["label"].get("en") if isinstance(kpi["label"], dict) else kpi["label"]
            writer.writerow([_csv_value(v) for v in base + [kpi_id, label] +
                             [kpi[c] for c in _CSV_COLUMNS[10:]]])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def scorecard_json(scorecard_part: dict) -> bytes:
    return (json.dumps(_plain(scorecard_part), ensure_ascii=False, sort_keys=True, indent=2,
                       allow_nan=False) + "\n").encode("utf-8")


def archive_pdf_bytes(
    config,
    report_name: str,
    scorecard: dict,
    account_id: str | None = None,
    details: dict | None = None,
    charts: list = (),
    *,
    generated_at: datetime,
    report_id: str,
    locale: str | None = None,
) -> bytes:
    """The PDF/A-3b bytes of one document for the audit archive (name it with files.account_file_name).

    An account review embeds the account's scorecard (``<file>.csv`` and ``<file>.json``);
    the portfolio scorecard embeds the whole scorecard. Same inputs, same bytes.
    """
    report = config.reports[report_name]
    common = _common(config, report_name, scorecard, generated_at, report_id, locale)
    i18n = i18n_for(config, common["locale"])
    template_dirs = config.template_dirs()
    charts = list(charts)
    if report.kind == "account_review":
        if account_id is None:
            raise RenderError(f'report "{report_name}" is an account review: name the account to archive')
        account = next((a for a in scorecard.get("accounts", []) if str(a["account_id"]) == str(account_id)), None)
        if account is None:
            raise RenderError(f'account "{account_id}" is not in the scorecard of {scorecard.get("period")}')
        html = _review_renderer(config, report_name, scorecard, account, details, charts, common, i18n)(True)
        metadata = review_metadata(common, account, i18n)
        name = account_file_name(str(account_id), account.get("name"), "pdf")
        part = {key: scorecard.get(key) for key in ("period", "period_start", "period_end", "currency")}
        part["account"] = account
        accounts = [account]
    else:
        check_font_coverage(render_context_texts(None, details, None, charts))
        html = render_portfolio_html(config, report_name, scorecard, charts, common, for_print=True)
        metadata = portfolio_metadata(common, i18n)
        name = report_file_name(report_name, scorecard["period"], "pdf")
        part = scorecard
        accounts = scorecard.get("accounts", [])
    stem = name[:-4]
    attachments = [
        (f"{stem}-scorecard.csv", scorecard_csv(scorecard["period"], accounts),
         "Scorecard rows (one per account and KPI) this document was rendered from"),
        (f"{stem}-scorecard.json", scorecard_json(part), "Scorecard data this document was rendered from"),
    ]
    return render_pdf(html, template_dirs[0], metadata, generated_at, variant="pdf/a-3b", attachments=attachments,
                      allowed_dirs=template_dirs, images=print_images(charts))
