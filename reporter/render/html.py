"""Jinja2 templates -> one self-contained HTML document (CSS inlined, charts as data: URIs).

Autoescape is on for every template and undefined names fail (StrictUndefined). The
project's own report_templates/ come first in the loader, so a project overrides a
built-in file by file. The same HTML is the .html output and the input of the PDF:
print CSS (A4 or letter, running header and footer) only applies to the PDF.
"""
from __future__ import annotations

import base64
import hashlib
import math
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

from jinja2 import (Environment, FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound,
                    UndefinedError, pass_context)
from markupsafe import Markup

from ..config.catalog import BUILTIN_KPIS, PORTFOLIO_KPIS
from ..errors import Issue, RenderError
from .i18n import I18n, as_date, i18n_for

PAGE_SIZES = {"A4": "A4", "letter": "letter"}
STATUSES = ("green", "amber", "red", "no_data", "low_sample", "ok")
HEALTH_STATUSES = ("green", "amber", "red", "insufficient_data", "not_scored")
TOP_MESSAGES = 3
TOP_MOVERS = 10
# KPIs an early warning already speaks about: their change is not repeated as a second message.
WARNING_KPIS = {
    "order_drop": ("order_frequency",),
    "complaints_up": ("complaints",),
    "nps_detractor": ("nps",),
    "no_contact": ("days_since_contact", "interaction_frequency"),
    "low_p_alive": ("p_alive",),
}

_ACCOUNT_DEFAULTS = {
    "name": "", "tier": None, "owner_name": None, "owner_email": None, "region": None, "health_score": None,
    "previous_health_score": None, "health_status": "not_scored", "trend": None, "warnings": [], "kpis": {},
}
_KPI_DEFAULTS = {
    "value": None, "unit": "number", "previous": None, "change": None, "target": None, "status": "no_data",
    "score": None, "percentile": None, "n": None, "note": None, "trend": None, "label": {}, "direction": "up",
    "window": None,
}
_DETAIL_DEFAULTS = {
    "revenue_by_month": [], "revenue_12m": None, "surveys_by_month": [], "service_by_month": [],
    "interactions_by_month": [],
    "relationship_map": {"departments": [], "seniorities": [], "cells": {}, "decision_makers": []},
    "opportunities": {"open": [], "open_total": None, "won_12m": None, "whitespace": []},
}


# --------------------------------------------------------------------------- environment

def _i18n(ctx) -> I18n:
    return ctx["i18n"]


def _filter(method: str):
    @pass_context
    def apply(ctx, value, *args):
        return getattr(_i18n(ctx), method)(value, *args)

    apply.__name__ = method
    return apply


@pass_context
def _t(ctx, key: str, **values) -> str:
    return _i18n(ctx).t(key, **values)


@pass_context
def _cell(ctx, value) -> str:
    """A chart table cell: numbers in the locale's format, dates as dates, None as a dash."""
    i18n = _i18n(ctx)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return i18n.t("common.none")
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return i18n.number(value, 0)
    if isinstance(value, float):
        return i18n.number(value)
    if isinstance(value, (date, datetime)):
        return i18n.date(value)
    return str(value)


_ENVIRONMENTS: dict[tuple[str, ...], Environment] = {}


def environment(template_dirs: Iterable[Path]) -> Environment:
    """One cached Environment per list of template folders (first folder wins)."""
    key = tuple(str(Path(d)) for d in template_dirs)
    env = _ENVIRONMENTS.get(key)
    if env is None:
        env = Environment(
            loader=FileSystemLoader(list(key)),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        for method in ("number", "percent", "money", "date", "kpi_value", "kpi_target", "kpi_change",
                       "status_label", "health_label", "trend_label", "window_label", "period", "warning_reason", "unit_value",
                       "score", "label_or"):
            env.filters[method] = _filter(method)
        env.filters["cell"] = _cell
        env.globals["t"] = _t
        _ENVIRONMENTS[key] = env
    return env


def _render(config, template: str, context: dict) -> str:
    env = environment(config.template_dirs())
    try:
        return env.get_template(template).render(context)
    except TemplateNotFound as exc:
        raise RenderError([Issue(f'template "{exc.name}" not found in ' +
                                 ", ".join(str(d) for d in config.template_dirs()))]) from None
    except UndefinedError as exc:
        raise RenderError([Issue(f"{exc.message}; the template uses a name its context does not have",
                                 template)]) from None
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise RenderError([Issue(str(exc), getattr(exc, "filename", None) or template, line)]) from None


# --------------------------------------------------------------------------- context

def common_context(config, report_name: str, *, period: str, generated_at: datetime, report_id: str,
                   locale: str | None = None, period_start=None, period_end=None) -> dict:
    """What every document of a run shares: title, period, fixed generated-at, report id, locale, page size."""
    report = config.reports[report_name]
    locale = locale or report.locale or config.project.locale
    i18n = i18n_for(config, locale)
    if generated_at.tzinfo is None:
        raise RenderError("generated_at must be an aware datetime (the run's time, with its time zone)")
    default_title = "document.review_title" if report.kind == "account_review" else "document.portfolio_title"
    # Periods are half-open [start, end): the last day shown is the day before period_end.
    period_range = (i18n.t("document.period_range", start=i18n.date(period_start),
                           end=i18n.date(as_date(period_end) - timedelta(days=1)))
                    if period_start and period_end else "")
    return {
        "kind": report.kind,
        "report_name": report_name,
        "title": report.title or i18n.t(default_title),
        "period": str(period),
        "period_display": i18n.period(period),
        "period_range": period_range,
        "generated_at": generated_at.isoformat(),
        "generated_display": i18n.timestamp(generated_at),
        "report_id": str(report_id),
        "locale": locale,
        "lang": i18n.lang,
        "project_name": config.project.name,
        "currency": config.project.currency,
        "confidentiality": i18n.t("document.confidentiality", project=config.project.name),
        "page_size": report.page_size,
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def normalise_account(account: dict) -> dict:
    """The account with every key the templates read (missing ones at their 'no data' value)."""
    kpis = {kpi_id: {**_KPI_DEFAULTS, **(kpi or {})} for kpi_id, kpi in (account.get("kpis") or {}).items()}
    return {**_ACCOUNT_DEFAULTS, **account, "kpis": kpis, "warnings": list(account.get("warnings") or [])}


def normalise_details(details: dict | None) -> dict:
    details = dict(details or {})
    merged = {**_DETAIL_DEFAULTS, **details}
    merged["relationship_map"] = {**_DETAIL_DEFAULTS["relationship_map"], **(details.get("relationship_map") or {})}
    merged["opportunities"] = {**_DETAIL_DEFAULTS["opportunities"], **(details.get("opportunities") or {})}
    return merged


def chart_view(chart, for_print: bool = False) -> SimpleNamespace:
    """A chart as the templates use it: the image as a data: URI (isolated from the page, no external
    references), its alt text, and its table split into header and rows.

    The HTML shows the SVG; the PDF (``for_print``) takes the chart's PNG when it has one, which
    WeasyPrint embeds in milliseconds where it would draw every glyph path of the SVG. The PNG is
    named by a ``chart:`` URI (``print_images`` gives the bytes to ``render_pdf``) rather than
    inlined: the HTML parser reads a 25 KiB base64 attribute a character class at a time."""
    png = getattr(chart, "png", None)
    if png and for_print:
        uri = chart_uri(png)
    elif png and not chart.svg:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    else:
        svg = chart.svg.encode("utf-8") if isinstance(chart.svg, str) else bytes(chart.svg)
        uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    table = [list(row) for row in (chart.table or [])]
    return SimpleNamespace(
        id=str(chart.id), title=str(chart.title), alt=str(chart.alt), uri=uri,
        header=table[0] if table else [], rows=table[1:],
    )


def chart_uri(png: bytes) -> str:
    """The print HTML's name for a chart's PNG: its digest, so a name always means the same picture."""
    return "chart:" + hashlib.sha256(png).hexdigest()


def print_images(charts: Iterable) -> dict[str, bytes]:
    """The PNGs the print HTML of ``charts`` names (``chart_view(..., for_print=True)``), by URI."""
    return {chart_uri(c.png): c.png for c in charts if getattr(c, "png", None)}


def top_messages(account: dict, i18n: I18n, limit: int = TOP_MESSAGES) -> list[str]:
    """The executive summary's messages: early warnings first (they carry their reason), then the
    KPIs that moved most against the previous period (relative change, ties by KPI id), leaving out
    KPIs a warning already covers."""
    messages = [i18n.warning_reason(w) for w in account["warnings"]]
    covered = {k for w in account["warnings"] for k in WARNING_KPIS.get(w.get("code"), ())}
    moves = []
    for kpi_id, kpi in account["kpis"].items():
        value, previous = kpi["value"], kpi["previous"]
        if kpi_id in covered:
            continue
        if not (_finite(value) and _finite(previous)) or previous == 0 or value == previous:
            continue
        relative = (value - previous) / abs(previous)
        moves.append((-abs(relative), kpi_id, relative, kpi))
    for _, kpi_id, relative, kpi in sorted(moves, key=lambda m: (m[0], m[1])):
        better = (relative > 0) == (kpi["direction"] != "down")
        messages.append(i18n.t("review.kpi_better" if better else "review.kpi_worse",
                               label=i18n.kpi_label(kpi_id, kpi),
                               previous=i18n.unit_value(kpi["previous"], kpi["unit"]),
                               value=i18n.unit_value(kpi["value"], kpi["unit"])))
    return messages[:limit]


def kpi_definition(config, kpi_id: str, i18n: I18n) -> str:
    """The appendix text of a KPI: the translated catalog definition, or a custom KPI's own words."""
    custom = config.kpis.kpis.get(kpi_id)
    if custom is not None and (custom.definition or custom.expression or custom.formula):
        if custom.definition:
            return custom.definition
        if custom.formula:
            return i18n.t("review.custom_formula", formula=custom.formula)
        expression = custom.expression
        if custom.denominator:
            expression = i18n.t("review.custom_denominator", expression=expression, denominator=custom.denominator)
        return i18n.t("review.custom_expression", entity=custom.entity, expression=expression)
    info = BUILTIN_KPIS.get(kpi_id) or PORTFOLIO_KPIS.get(kpi_id)
    if info is None:
        return i18n.t("review.custom_undefined")
    return i18n.get(f"definitions.{kpi_id}") or info.definition


def kpi_definitions(config, kpis: dict[str, dict], i18n: I18n) -> list[SimpleNamespace]:
    rows = []
    for kpi_id, kpi in kpis.items():
        info = BUILTIN_KPIS.get(kpi_id) or PORTFOLIO_KPIS.get(kpi_id)
        custom = config.kpis.kpis.get(kpi_id)
        rows.append(SimpleNamespace(
            id=kpi_id, label=i18n.kpi_label(kpi_id, kpi), definition=kpi_definition(config, kpi_id, i18n),
            unit=kpi.get("unit") or (info.unit if info else (custom.unit if custom else None)),
            direction=kpi.get("direction") or (info.direction if info else "up"),
            window=kpi.get("window") or (custom.window if custom and custom.window else (info.window if info else None)),
        ))
    return rows


def tier_label(config, tier: str | None, i18n: I18n) -> str:
    if not tier:
        return i18n.t("common.unknown_tier")
    defined = config.tiers.tiers.get(tier)
    label = defined.label if defined else None
    if label is not None:
        return (label.zh_CN if i18n.locale == "zh_CN" and label.zh_CN else label.en)
    return str(tier).replace("_", " ").capitalize()


def _tier_order(config, scorecard: dict) -> list[str]:
    seen = [t for t in config.tiers.tiers if t in scorecard.get("tiers", {})]
    seen += [t for t in scorecard.get("tiers", {}) if t not in seen]
    seen += sorted({a["tier"] for a in scorecard["accounts"] if a["tier"] and a["tier"] not in seen})
    return seen


def _by_health(account: dict):
    score = account["health_score"]
    return (not _finite(score), -(score if _finite(score) else 0), str(account["account_id"]))


# --------------------------------------------------------------------------- documents

def render_account_review_html(config, report_name: str, account: dict, details: dict | None, charts: list,
                               notes_html: str | None, context_common: dict, for_print: bool = False) -> str:
    """The HTML of one account review. ``notes_html`` must come from notes.load_notes/render_notes
    (it is sanitised there and inserted as markup here). ``for_print`` leaves out what print CSS
    hides anyway (the charts' data tables), which saves the PDF renderer a sixth of its time."""
    report = config.reports[report_name]
    i18n = i18n_for(config, context_common["locale"])
    account = normalise_account(account)
    kpis = account["kpis"]
    chart_views = [chart_view(c, for_print) for c in charts]
    context = {
        **context_common,
        "i18n": i18n,
        "page_css": PAGE_SIZES[context_common["page_size"]],
        "account": account,
        "tier_label": tier_label(config, account["tier"], i18n),
        "details": normalise_details(details),
        "summary_charts": [c for c in chart_views if c.id.startswith("health")],
        "charts": [c for c in chart_views if not c.id.startswith("health")],
        "notes_html": Markup(notes_html) if notes_html else None,
        "messages": top_messages(account, i18n),
        "off_target": [(kpi_id, kpi) for kpi_id, kpi in kpis.items() if kpi["status"] == "red"],
        "definitions": kpi_definitions(config, kpis, i18n),
        "running_subject": account["name"],
        "for_print": for_print,
    }
    return _render(config, report.template or "account_review.html", context)


def render_portfolio_html(config, report_name: str, scorecard: dict, charts: list, context_common: dict,
                          for_print: bool = False) -> str:
    """The HTML of the leadership scorecard: headline, tier tables, heatmap, movers, at-risk, definitions."""
    report = config.reports[report_name]
    i18n = i18n_for(config, context_common["locale"])
    accounts = [normalise_account(a) for a in scorecard.get("accounts", [])]
    tiers = _tier_order(config, {**scorecard, "accounts": accounts})
    tier_views = []
    for tier in tiers:
        members = sorted((a for a in accounts if a["tier"] == tier), key=_by_health)
        columns: list[str] = []
        kpi_meta: dict[str, dict] = {}
        for account in members:
            for kpi_id, kpi in account["kpis"].items():
                if kpi_id not in kpi_meta:
                    columns.append(kpi_id)
                    kpi_meta[kpi_id] = kpi
        tier_views.append(SimpleNamespace(
            id=tier, label=tier_label(config, tier, i18n), accounts=members,
            summary=scorecard.get("tiers", {}).get(tier, {}),
            columns=[SimpleNamespace(id=k, label=i18n.kpi_label(k, kpi_meta[k])) for k in columns],
        ))
    unassigned = sorted((a for a in accounts if not a["tier"]), key=_by_health)
    if unassigned:
        tier_views.append(SimpleNamespace(id="", label=i18n.t("common.unknown_tier"), accounts=unassigned,
                                          summary={}, columns=[]))
    movers = [a for a in accounts if _finite(a["health_score"]) and _finite(a["previous_health_score"])]
    movers.sort(key=lambda a: (-abs(a["health_score"] - a["previous_health_score"]), str(a["account_id"])))
    at_risk = [a for a in accounts if a["health_status"] == "red" or a["warnings"]]
    at_risk.sort(key=lambda a: (a["health_status"] != "red", a["health_score"] if _finite(a["health_score"]) else 101,
                                str(a["account_id"])))
    used: dict[str, dict] = {}
    for account in accounts:
        for kpi_id, kpi in account["kpis"].items():
            used.setdefault(kpi_id, kpi)
    portfolio_kpis = {k: {"unit": info.unit, "direction": info.direction, "window": info.window}
                      for k, info in PORTFOLIO_KPIS.items()}
    chart_views = [chart_view(c, for_print) for c in charts]
    context = {
        **context_common,
        "i18n": i18n,
        "page_css": PAGE_SIZES[context_common["page_size"]],
        "scorecard": scorecard,
        "portfolio": scorecard.get("portfolio") or {},
        "accounts": accounts,
        "tiers": tier_views,
        "movers": [(a, a["health_score"] - a["previous_health_score"]) for a in movers[:TOP_MOVERS]],
        "at_risk": at_risk,
        "heatmap_charts": [c for c in chart_views if "heatmap" in c.id],
        "charts": [c for c in chart_views if "heatmap" not in c.id],
        "portfolio_definitions": kpi_definitions(config, portfolio_kpis, i18n),
        "definitions": kpi_definitions(config, used, i18n),
        "portfolio_kpi_ids": list(PORTFOLIO_KPIS),
        "running_subject": config.project.name,
        "for_print": for_print,
    }
    return _render(config, report.template or "portfolio_scorecard.html", context)


def review_metadata(context_common: dict, account: dict, i18n: I18n) -> dict:
    """PDF document metadata of an account review."""
    return {
        "title": f"{context_common['title']}: {account.get('name', '')} ({context_common['period_display']})",
        "author": context_common["project_name"],
        "subject": i18n.t("document.review_subject", account=account.get("name", ""),
                          period=context_common["period_display"]),
        "keywords": [context_common["kind"], str(account.get("account_id")), str(account.get("tier") or ""),
                     context_common["period"], context_common["report_name"]],
        "lang": context_common["lang"],
    }


def portfolio_metadata(context_common: dict, i18n: I18n) -> dict:
    return {
        "title": f"{context_common['title']} ({context_common['period_display']})",
        "author": context_common["project_name"],
        "subject": i18n.t("document.portfolio_subject", period=context_common["period_display"]),
        "keywords": [context_common["kind"], context_common["period"], context_common["report_name"]],
        "lang": context_common["lang"],
    }


def render_context_texts(account: dict | None, details: dict | None, notes_html: str | None,
                         charts: list) -> Iterable[tuple[str, Any]]:
    """The data strings a document shows, with where they come from (for the font coverage check)."""
    from .pdf import context_texts

    if account is not None:
        yield from context_texts(account, "account")
    if details is not None:
        yield from context_texts(details, "details")
    if notes_html:
        yield "notes", notes_html
    for chart in charts:
        yield from context_texts({"title": chart.title, "alt": chart.alt, "table": chart.table or []},
                                 f"chart {chart.id}")
