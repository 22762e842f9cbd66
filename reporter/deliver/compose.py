"""The words of each email: subject, plain-text and HTML summary, from Jinja templates in report_templates/email/.

A report may set its own `subject:` and `body:` (Jinja strings). Everything that comes
from data is escaped in the HTML part and stripped of control characters in headers.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from ..errors import DeliveryError, Issue
from ..render.i18n import i18n_for
from .audience import Envelope

TOP_WARNINGS = 3


@dataclass(frozen=True)
class Composed:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=16)
def _environment(template_dirs: tuple[str, ...], autoescape: bool) -> SandboxedEnvironment:
    """One environment per template folders and escaping, so each template is compiled once per
    process, not once per email (~20 ms an email)."""
    from jinja2 import FileSystemLoader

    # Sandboxed: subject and body strings in reports.yaml are user-written templates.
    return SandboxedEnvironment(loader=FileSystemLoader(list(template_dirs)), autoescape=autoescape,
                                undefined=StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=64)
def _from_string(template_dirs: tuple[str, ...], source: str, autoescape: bool):
    return _environment(template_dirs, autoescape).from_string(source)


def compose(config, report_name: str, envelope: Envelope, scorecard: dict, attachments: list[str],
            archive_note: str | None) -> Composed:
    report = config.reports[report_name]
    i18n = i18n_for(config, envelope.locale)
    wanted = set(envelope.account_ids)
    accounts = [a for a in scorecard["accounts"] if a["account_id"] in wanted]
    context = {
        "report": report_name,
        "title": report.title or i18n.t("document.review_title" if report.kind == "account_review"
                                        else "document.portfolio_title"),
        "period": scorecard["period"],
        "recipient_name": envelope.name or envelope.email,
        "kind": report.kind,
        "accounts": [_account_summary(a, i18n, envelope.locale) for a in accounts],
        "portfolio": _portfolio_summary(scorecard, i18n),
        "attachments": attachments,
        "archive_note": archive_note,
        "t": i18n.t,
        "project": config.project.name,
    }
    dirs = tuple(str(d) for d in config.template_dirs())
    try:
        subject = _from_string(dirs, report.subject or i18n.t("email.subject"), False).render(**context)
        intro = _from_string(dirs, report.body or i18n.t("email.intro"), False).render(**context)
        text = _environment(dirs, False).get_template("email/body.txt").render(**context, intro=intro)
        html = _environment(dirs, True).get_template("email/body.html").render(**context, intro=intro)
    except TemplateError as exc:
        raise DeliveryError([Issue(f"email template: {exc}", "configs/reports.yaml", path=f"reports.{report_name}")])
    return Composed(" ".join(subject.split()), text, html)


def _account_summary(account: dict, i18n, locale: str) -> dict:
    warnings = [w["reasons"].get(locale) or w["reason"] for w in account.get("warnings", [])][:TOP_WARNINGS]
    score = account.get("health_score")
    return {
        "account_id": account["account_id"],
        "name": account["name"],
        "health": "-" if score is None else f"{score:.0f}",
        "status": i18n.t(f"health.{account['health_status']}"),
        "trend": account.get("trend") or "-",
        "warnings": warnings,
    }


def _portfolio_summary(scorecard: dict, i18n) -> dict:
    portfolio = scorecard.get("portfolio", {})
    distribution = portfolio.get("health_distribution", {})
    return {"accounts": portfolio.get("account_count", len(scorecard["accounts"])),
            "green": distribution.get("green", 0), "amber": distribution.get("amber", 0),
            "red": distribution.get("red", 0),
            "at_risk": [a["name"] for a in scorecard["accounts"] if a.get("health_status") == "red"][:10]}

