"""A small synthetic project for the render tests: three accounts (one Chinese, one hostile name),
realistic KPIs and details, fake charts with tiny SVGs, and a note for one account."""
from __future__ import annotations

import copy
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from reporter.config import ProjectConfig
from reporter.config.models import Kpis, Project, Report, Tiers

GENERATED_AT = datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc)
REPORT_ID = "run-2026-10-0001"
PERIOD = "2026-10"
INJECTION = '<img src="file:///etc/passwd"><link rel="attachment" href="file:///etc/passwd">'
CHINESE = "长城精密制造有限公司"

NOTE_A001 = """## Highlights
- Framework agreement for 2027 signed on 12 October, covering **all three plants**.
- NPS survey in Munich: 9 of 11 respondents are promoters. See [the survey](https://example.com/survey).

## Risks
- The new CFO reviews every supplier above EUR 5m; procurement asked for a cost breakdown.
- <script>alert("raw html is shown as text")</script> and [a bad link](javascript:alert(1)).

## Actions
- Book the quarterly business review with the CFO — Li Wei — 2026-11-30
- Send the revised SLA proposal | Anna Berg | 2026-12-15
- Introduce our CTO to their new CIO - Daniel Moore
- Prepare the cloud migration business case
"""

_KPI_INFO = {
    # id: (unit, direction, window, en, zh)
    "revenue": ("currency", "up", "month", "Revenue", "收入"),
    "revenue_growth": ("percent", "up", "trailing_12m", "Revenue growth", "收入增长"),
    "gross_margin": ("percent", "up", "trailing_12m", "Gross margin", "毛利率"),
    "nps": ("score", "up", "trailing_90d", "Net Promoter Score", "推荐指数"),
    "csat": ("percent", "up", "trailing_90d", "Customer satisfaction", "客户满意度"),
    "complaints": ("count", "down", "trailing_90d", "Complaints", "投诉数"),
    "resolution_hours": ("hours", "down", "trailing_90d", "Resolution time", "解决时长"),
    "sla_compliance": ("percent", "up", "trailing_90d", "SLA compliance", "服务达标率"),
    "interaction_frequency": ("number", "up", "trailing_90d", "Interaction frequency", "互动频率"),
    "days_since_contact": ("days", "down", "lifetime", "Days since last contact", "距上次互动天数"),
    "clv_predicted": ("currency", "up", "lifetime", "Predicted lifetime value", "预测客户生命周期价值"),
    "p_alive": ("percent", "up", "lifetime", "Probability active", "存活概率"),
    "cloud_share": ("percent", "up", "trailing_12m", "Cloud revenue share", "云业务收入占比"),
}


def _kpi(kpi_id, value, previous, target, status, percentile, n, note=None, score=None):
    unit, direction, window, en, zh = _KPI_INFO[kpi_id]
    trend = [None if value is None else round(value * (0.8 + 0.02 * i), 4) for i in range(12)]
    return {
        "value": value, "unit": unit, "previous": previous,
        "change": None if value is None or previous is None else round(value - previous, 6),
        "target": target, "status": status, "score": score, "percentile": percentile, "n": n, "note": note,
        "trend": trend if value is not None else None, "label": {"en": en, "zh_CN": zh},
        "direction": direction, "window": window,
    }


def _warning(code, en, zh):
    return {"code": code, "reason": en, "reasons": {"en": en, "zh_CN": zh}}


def build_scorecard() -> dict:
    a1 = {
        "account_id": "A001", "name": "Acme Industrial GmbH", "tier": "strategic", "owner_name": "Li Wei",
        "owner_email": "li.wei@example.com", "region": "EMEA", "health_score": 61.5, "previous_health_score": 74.0,
        "health_status": "amber", "trend": "down",
        "warnings": [
            _warning("health_drop", "Health score fell 12.5 points, from 74 to 61.5.",
                     "健康度评分下降 12.5 分，由 74 降至 61.5。"),
            _warning("complaints_up", "Complaints doubled: 6 in the last 90 days against 3 in the 90 days before.",
                     "投诉翻倍：近 90 天 6 起，之前 90 天 3 起。"),
        ],
        "kpis": {
            "revenue": _kpi("revenue", 482_350.0, 515_900.0, 500_000.0, "amber", 71, 38, score=50),
            "revenue_growth": _kpi("revenue_growth", 0.064, 0.081, 0.08, "amber", 58, 412, score=50),
            "gross_margin": _kpi("gross_margin", 0.312, 0.305, 0.30, "green", 66, 412, score=100),
            "nps": _kpi("nps", 18.0, 42.0, 40.0, "red", 22, 27, "Two detractors in the plant survey.", score=0),
            "csat": _kpi("csat", 0.78, 0.84, 0.85, "amber", 40, 31, score=50),
            "complaints": _kpi("complaints", 6, 3, 2, "red", 12, 6, score=0),
            "resolution_hours": _kpi("resolution_hours", 31.5, 22.0, 24.0, "amber", 35, 44, score=50),
            "sla_compliance": _kpi("sla_compliance", 0.91, 0.95, 0.95, "amber", 48, 44, score=50),
            "interaction_frequency": _kpi("interaction_frequency", 5.33, 4.0, 4.0, "green", 81, 16, score=100),
            "days_since_contact": _kpi("days_since_contact", 4, 9, 30, "green", 90, 1, score=100),
            "clv_predicted": _kpi("clv_predicted", 1_845_000.0, 1_910_000.0, None, "ok", 77, None),
            "p_alive": _kpi("p_alive", 0.97, 0.98, None, "ok", 69, None),
            "cloud_share": _kpi("cloud_share", 0.21, 0.18, 0.25, "amber", 63, 38, score=50),
        },
    }
    a2 = {
        "account_id": "A002", "name": CHINESE, "tier": "key", "owner_name": "王芳",
        "owner_email": "wang.fang@example.com", "region": "华东", "health_score": 82.0, "previous_health_score": 79.0,
        "health_status": "green", "trend": "up",
        "warnings": [
            _warning("nps_detractor", "An NPS detractor (score 4) answered on 2026-10-08.",
                     "2026-10-08 有一位贬损者（评分 4）参与了 NPS 调查。"),
        ],
        "kpis": {
            "revenue": _kpi("revenue", 128_400.0, 119_750.0, 120_000.0, "green", 64, 21, score=100),
            "gross_margin": _kpi("gross_margin", 0.284, 0.279, 0.28, "green", 55, 140, score=100),
            "nps": _kpi("nps", 35.0, 31.0, 30.0, "green", 70, 14, score=100),
            "csat": _kpi("csat", 0.88, None, 0.85, "low_sample", None, 4, "4 responses; 5 needed.", score=None),
            "complaints": _kpi("complaints", 1, 2, 2, "green", 75, 1, score=100),
            "resolution_hours": _kpi("resolution_hours", 18.0, 26.5, 24.0, "green", 82, 9, score=100),
            "interaction_frequency": _kpi("interaction_frequency", 2.67, 3.0, 3.0, "amber", 44, 8, score=50),
            "days_since_contact": _kpi("days_since_contact", 12, 6, 30, "green", 60, 1, score=100),
        },
    }
    a3 = {
        "account_id": "A003", "name": INJECTION, "tier": "growth", "owner_name": "Daniel Moore",
        "owner_email": "daniel.moore@example.com", "region": "Americas", "health_score": 38.0,
        "previous_health_score": None, "health_status": "red", "trend": None,
        "warnings": [_warning("no_contact", "No interaction for 74 days.", "已 74 天没有互动。")],
        "kpis": {
            "revenue": _kpi("revenue", 9_870.0, 14_200.0, 12_000.0, "red", 15, 3, score=0),
            "nps": _kpi("nps", None, None, None, "no_data", None, 0, "No survey responses in the window."),
            "days_since_contact": _kpi("days_since_contact", 74, 44, 30, "red", 5, 1, score=0),
        },
    }

    def tier_summary(accounts, dist):
        return {
            "accounts": accounts, "health_distribution": dist,
            "retention_rate": {"value": 0.95, "n": accounts, "note": None},
            "churn_rate": {"value": 0.05, "n": accounts, "note": None},
            "acquisition_rate": {"value": 0.0, "n": accounts, "note": None},
            "cac": {"value": None, "n": 0, "note": "No new accounts in the period."},
            "nrr": {"value": 1.04, "n": accounts, "note": None},
            "grr": {"value": 0.93, "n": accounts, "note": None},
        }

    zero = {"green": 0, "amber": 0, "red": 0, "insufficient_data": 0, "not_scored": 0}
    return {
        "period": PERIOD, "period_start": date(2026, 10, 1), "period_end": date(2026, 11, 1), "currency": "EUR",
        "accounts": [a1, a2, a3],
        "tiers": {
            "strategic": tier_summary(1, {**zero, "amber": 1}),
            "key": tier_summary(1, {**zero, "green": 1}),
            "growth": tier_summary(1, {**zero, "red": 1}),
        },
        "portfolio": {**tier_summary(3, {**zero, "green": 1, "amber": 1, "red": 1}),
                      "cac": {"value": 18_250.0, "n": 2, "note": None}},
    }


def build_details(account_id: str) -> dict:
    months = [f"2025-{m:02d}" for m in (11, 12)] + [f"2026-{m:02d}" for m in range(1, 11)]
    base = {"A001": 40_000, "A002": 11_000, "A003": 1_200}[account_id]
    revenue = [{"month": m, "revenue": base * (1 + 0.03 * (i % 5)), "prior_year_revenue": base * 0.95}
               for i, m in enumerate(months)]
    if account_id == "A003":
        return {"revenue_by_month": revenue, "revenue_12m": sum(r["revenue"] for r in revenue),
                "relationship_map": {"departments": [], "seniorities": [], "cells": {}, "decision_makers": []},
                "opportunities": {"open": [], "open_total": 0.0, "won_12m": 0.0, "whitespace": ["cloud", "services"]}}
    departments = ["Procurement", "Engineering", "Finance", "IT"] if account_id == "A001" else ["采购部", "技术部", "财务部"]
    seniorities = ["staff", "manager", "director", "executive"]
    cells = {d: {s: (i + j) % 3 for j, s in enumerate(seniorities)} for i, d in enumerate(departments)}
    makers = ([{"name": "Katrin Vogel", "department": "Finance", "seniority": "executive"},
               {"name": "Jonas Brandt", "department": "Procurement", "seniority": "director"}]
              if account_id == "A001" else [{"name": "陈静", "department": "采购部", "seniority": "director"}])
    return {
        "revenue_by_month": revenue,
        "revenue_12m": sum(r["revenue"] for r in revenue),
        "surveys_by_month": [{"month": m, "nps": 30 - i, "csat": 0.8} for i, m in enumerate(months)],
        "service_by_month": [{"month": m, "tickets": 10 + i % 4} for i, m in enumerate(months)],
        "interactions_by_month": [{"month": m, "interactions": 4 + i % 3} for i, m in enumerate(months)],
        "relationship_map": {"departments": departments, "seniorities": seniorities, "cells": cells,
                             "decision_makers": makers},
        "opportunities": {
            "open": [
                {"opportunity_id": "OP-1042", "kind": "cross_sell", "product_line": "cloud", "amount": 240_000.0,
                 "created_at": date(2026, 8, 14)},
                {"opportunity_id": "OP-1077", "kind": "upsell", "product_line": "services", "amount": 85_500.0,
                 "created_at": date(2026, 9, 30)},
                {"opportunity_id": "OP-1090", "kind": "renewal", "product_line": "hardware", "amount": 410_000.0,
                 "created_at": date(2026, 10, 21)},
            ],
            "open_total": 735_500.0, "won_12m": 312_000.0, "whitespace": ["analytics", "training"],
        },
    }


_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="480pt" height="220pt" viewBox="0 0 480 220">'
        '<rect x="0" y="0" width="480" height="220" fill="#ffffff"/>'
        '<path d="M40 180 L120 140 L200 150 L280 90 L360 100 L440 60" fill="none" stroke="{colour}" stroke-width="3"/>'
        '<rect x="40" y="190" width="400" height="4" fill="#999999"/></svg>')


def build_charts(account: dict | None) -> list:
    """Fake charts (the real ones come from render/charts.py): a tiny valid SVG and a data table."""
    if account is None:
        specs = [("portfolio_heatmap", "Account × KPI status", "#D55E00"),
                 ("health_vs_revenue", "Health score against revenue", "#0072B2")]
    else:
        specs = [("health_trend", "Health score, last 12 months", "#009E73"),
                 ("revenue", "Revenue by month with the prior year", "#0072B2"),
                 ("satisfaction", "NPS and CSAT", "#E69F00"),
                 ("service", "Tickets and resolution time against SLA", "#D55E00"),
                 ("interactions", "Interactions per month", "#56B4E9"),
                 ("kpi_status", "KPI status over the last 12 months", "#999999")]
    name = account["name"] if account else "portfolio"
    return [SimpleNamespace(
        id=chart_id, title=title, alt=f"{title} for {name}: the line rises from left to right.",
        svg=_SVG.format(colour=colour),
        table=[["Month", "Value"], ["2026-09", 12.5], ["2026-10", 14]],
    ) for chart_id, title, colour in specs]


def make_config(root: Path, page_size: str = "A4", locale: str = "en") -> ProjectConfig:
    project = Project(name="Key accounts (test)", timezone="Asia/Shanghai", locale=locale, currency="EUR")
    kpis = Kpis.model_validate({"kpis": {
        "cloud_share": {"label": {"en": "Cloud revenue share", "zh_CN": "云业务收入占比"}, "entity": "orders",
                        "expression": "sum(amount) filter (where product_line = 'cloud')",
                        "denominator": "sum(amount)", "unit": "percent", "direction": "up",
                        "window": "trailing_12m"}}})
    tiers = Tiers.model_validate({"tiers": {
        "strategic": {"label": {"en": "Strategic", "zh_CN": "战略客户"}, "kpis": {"revenue": {}, "nps": {}}},
        "key": {"label": {"en": "Key", "zh_CN": "重点客户"}, "kpis": {"revenue": {}}},
        "growth": {"label": {"en": "Growth", "zh_CN": "成长客户"}, "kpis": {"revenue": {}}},
    }})
    reports = {
        "reviews": Report(kind="account_review", title=None, page_size=page_size, formats=["pdf", "html"]),
        "leadership": Report(kind="portfolio_scorecard", page_size=page_size),
    }
    return ProjectConfig(root=root, project=project, sources={}, kpis=kpis, tiers=tiers, reports=reports, docs={})


@pytest.fixture
def render_root(tmp_path) -> Path:
    root = tmp_path / "project"
    (root / "notes" / PERIOD).mkdir(parents=True)
    (root / "notes" / PERIOD / "A001.md").write_text(NOTE_A001, encoding="utf-8")
    return root


@pytest.fixture
def render_config(render_root) -> ProjectConfig:
    return make_config(render_root)


@pytest.fixture
def scorecard() -> dict:
    return build_scorecard()


@pytest.fixture
def details_by_account() -> dict:
    return {a: build_details(a) for a in ("A001", "A002", "A003")}


@pytest.fixture(scope="session")
def synthetic():
    """Builders for tests that need fresh copies: scorecard(), details(id), charts(account), config(root, ...)."""
    return SimpleNamespace(scorecard=lambda: copy.deepcopy(build_scorecard()), details=build_details,
                           charts=build_charts, config=make_config, generated_at=GENERATED_AT,
                           report_id=REPORT_ID, period=PERIOD, injection=INJECTION, chinese=CHINESE, note=NOTE_A001)
