"""Charts: valid, accessible, deterministic SVG from the plain dicts of the compute stage."""
from __future__ import annotations

import random
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reporter.compute.periods import parse_period, trend_periods
from reporter.config.catalog import BUILTIN_KPIS
from reporter.errors import RenderError
from reporter.render import charts
from reporter.render.charts import (
    EN_LABELS,
    Chart,
    account_charts,
    default_t,
    health_trend,
    health_vs_revenue,
    interaction_frequency,
    kpi_status_strip,
    relationship_map,
    portfolio_charts,
    portfolio_heatmap,
    revenue_by_month,
    satisfaction_trend,
    service_chart,
)

SVG = "{http://www.w3.org/2000/svg}"
BANDS = {"red_below": 50, "green_from": 75}
PERIOD = parse_period("2026-10")
MONTHS = [p.label for p in trend_periods(PERIOD)]
KPI_IDS = ["nps", "csat", "revenue", "revenue_growth", "gross_margin", "clv_predicted", "p_alive", "complaints",
           "resolution_hours", "interaction_frequency", "days_since_contact", "product_penetration"]
STATUSES = ["green", "amber", "red", "no_data", "low_sample", "green", "amber"]

ZH = {
    "chart.health_trend": "健康度趋势", "chart.revenue": "月度收入", "chart.this_year": "收入",
    "chart.prior_year": "去年同期", "chart.satisfaction": "推荐指数与满意度", "chart.nps": "推荐指数",
    "chart.csat": "满意度（4-5分占比）", "chart.service": "服务：工单与响应时间", "chart.tickets": "工单",
    "chart.complaints": "投诉", "chart.first_response": "首次响应",
    "chart.resolution": "解决时长", "chart.sla": "服务标准",
    "chart.interactions": "按渠道的互动", "channel.meeting": "会议", "channel.call": "电话",
    "channel.email": "邮件", "channel.visit": "拜访", "channel.review": "经营回顾", "channel.other": "其他",
    "chart.kpi_status": "指标状态", "chart.relationship_map": "关系图谱", "chart.department": "部门",
    "seniority.staff": "员工", "seniority.manager": "经理", "seniority.director": "总监", "seniority.executive": "高管",
    "chart.decision_maker": "含决策人", "chart.decision_makers": "决策人", "chart.heatmap": "客户指标状态",
    "chart.health_vs_revenue": "健康度与收入",
    "chart.revenue_12m": "近12个月收入", "chart.health_score": "健康度", "chart.bubble_size": "气泡大小：预测客户终身价值",
    "chart.no_data": "无数据", "chart.heatmap.more": "显示 {accounts} 个客户中健康度最低的 {shown} 个。",
    "chart.heatmap.key": "{green_letter} {green} · {amber_letter} {amber} · {red_letter} {red} · "
                         "{low_sample_letter} {low_sample} · {no_data_letter} {no_data}",
    "status.green": "绿", "status.amber": "黄", "status.red": "红", "status.no_data": "无数据",
    "status.low_sample": "样本不足", "status.ok": "正常", "status.insufficient_data": "数据不足",
    "status.not_scored": "未评分",
    "chart.health_trend.alt": "{first}至{last}共{n}期健康度，最新 {latest}（{status}）。",
    "chart.revenue.alt": "{first}至{last}的月度收入，最新一月 {latest}（去年同期 {prior}）。",
}


def zh_t(key: str) -> str:
    return ZH.get(key, key)


# --- synthetic inputs of the compute stage's shape ------------------------------------------


def make_details(seed: int = 1, empty: bool = False) -> dict:
    rng = random.Random(seed)

    def maybe(value):
        return None if empty or rng.random() < 0.15 else value

    return {
        "account_id": f"A{seed}",
        "period": PERIOD.label,
        "months": MONTHS,
        "revenue_by_month": [{"month": m, "revenue": 0.0 if empty else round(rng.uniform(0, 9000), 2),
                              "prior_year_revenue": 0.0 if empty else round(rng.uniform(0, 8000), 2)}
                             for m in MONTHS],
        "revenue_12m": 0.0 if empty else 54321.0,
        "prior_revenue_12m": 0.0 if empty else 43210.0,
        "surveys_by_month": [{"month": m, "nps": maybe(rng.choice([-50.0, 0.0, 20.0, 45.5, 100.0])),
                              "nps_n": rng.randint(1, 9), "csat": maybe(rng.random()), "csat_n": rng.randint(1, 6)}
                             for m in MONTHS],
        "service_by_month": [{"month": m, "tickets": 0 if empty else rng.randint(0, 8),
                              "complaints": 0 if empty else rng.randint(0, 2),
                              "first_response_hours": maybe(rng.uniform(0.5, 12)),
                              "resolution_hours": maybe(rng.uniform(4, 90)), "sla_hours": maybe(48.0)}
                             for m in MONTHS],
        "interactions_by_month": [dict(zip(("month", *charts.CHANNELS, "total"),
                                           [m, *(c := [0 if empty else rng.randint(0, 3) for _ in range(5)]),
                                            sum(c) + (0 if empty else rng.randint(0, 1))]))
                                  for m in MONTHS],
        "relationship_map": {} if empty else {
            "departments": ["Finance", "IT", "采购部"], "seniorities": ["staff", "manager", "director", "executive"],
            "cells": {"Finance": {"staff": 1, "manager": 0, "director": 0, "executive": 0},
                      "IT": {"staff": 2, "manager": 1, "director": 0, "executive": 1},
                      "采购部": {"staff": 0, "manager": 3, "director": 1, "executive": 0}},
            "decision_makers": [{"name": "Mia Chen", "contact_id": "C1", "department": "IT",
                                 "seniority": "executive"}]},
        "opportunities": {"open": [], "open_total": 0.0, "won_12m": 0.0, "won_12m_count": 0, "whitespace": []},
    }


def make_account(i: int, name: str | None = None, with_trend: bool = True) -> dict:
    rng = random.Random(i)
    score = round(rng.uniform(20, 98), 1)
    status = "red" if score < 50 else "amber" if score < 75 else "green"
    kpis = {}
    for k in KPI_IDS:
        info = BUILTIN_KPIS[k]
        value = None if rng.random() < 0.1 else rng.uniform(0, 1) if info.unit in ("percent", "ratio") \
            else rng.uniform(0, 90_000)
        kpis[k] = {
            "value": value, "unit": info.unit, "previous": None, "change": None, "target": None,
            "status": "no_data" if value is None else rng.choice(STATUSES), "score": None, "percentile": None,
            "n": 7, "note": None, "trend": [None] * 12, "label": {"en": info.en, "zh_CN": info.zh_CN},
            "direction": info.direction, "window": info.window,
        }
    account = {
        "account_id": f"A{i:04d}", "name": name or f"Account {i}", "tier": "key", "health_score": score,
        "previous_health_score": score - 3, "health_status": status, "trend": "up", "warnings": [],
        "kpis": kpis,
    }
    if with_trend:
        account["health_trend"] = [{"period": m, "health_score": None if j == 2 else round(rng.uniform(30, 95), 1)}
                                   for j, m in enumerate(MONTHS)]
    return account


def make_scorecard(n: int) -> dict:
    names = ["长城精密制造有限公司", "Acme Corp", "<img src=x> & Co"]
    accounts = [make_account(i, names[i] if i < len(names) else None) for i in range(n)]
    accounts[-1]["health_score"], accounts[-1]["health_status"] = None, "insufficient_data"
    return {"period": PERIOD.label, "accounts": accounts, "tiers": {}, "portfolio": {}}


def make_portfolio_details(scorecard: dict) -> dict:
    rng = random.Random(7)
    return {"period": PERIOD.label, "months": MONTHS,
            "revenue_by_month": make_details(99)["revenue_by_month"], "revenue_12m": 1.0, "prior_revenue_12m": 1.0,
            "account_revenue_12m": {a["account_id"]: round(rng.uniform(1_000, 900_000), 2)
                                    for a in scorecard["accounts"]}}


# --- helpers ---------------------------------------------------------------------------------


def check_chart(chart: Chart, chart_id: str, title: str) -> ET.Element:
    assert isinstance(chart, Chart)
    assert chart.id == chart_id
    assert chart.title == title
    assert len(chart.alt) > 20 and chart.alt.endswith((".", "。", "）"))
    root = ET.fromstring(chart.svg)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.find(f"{SVG}title").text == title
    assert root.find(f"{SVG}desc").text == chart.alt
    assert "<text" not in chart.svg  # glyphs are paths: the PDF needs no chart fonts
    assert chart.table and all(isinstance(c, str) for row in chart.table for c in row)
    assert len({len(row) for row in chart.table}) == 1
    return root


def all_charts(t=default_t, locale="en") -> list[Chart]:
    scorecard = make_scorecard(8)
    account = scorecard["accounts"][0]
    kinds = [*charts.DEFAULT_ACCOUNT_CHARTS, "kpi_status"]
    return [*account_charts(account, make_details(3), BANDS, t, locale, kinds),
            *portfolio_charts(scorecard, make_portfolio_details(scorecard), t, locale, BANDS)]


# --- tests -----------------------------------------------------------------------------------


def test_account_charts_are_valid_accessible_svg():
    details, account = make_details(3), make_account(0)
    got = account_charts(account, details, BANDS)
    assert len(got) >= 6
    assert [c.id for c in got] == ["health_trend", "revenue_by_month", "satisfaction_trend", "service",
                                   "interaction_frequency", "relationship_map"]
    for chart, key in zip(got, ["chart.health_trend", "chart.revenue", "chart.satisfaction", "chart.service",
                                "chart.interactions", "chart.relationship_map"]):
        check_chart(chart, chart.id, EN_LABELS[key])
    check_chart(kpi_status_strip(account), "kpi_status", "KPI status")


def test_portfolio_charts_are_valid_accessible_svg():
    scorecard = make_scorecard(8)
    got = portfolio_charts(scorecard, make_portfolio_details(scorecard), bands=BANDS)
    assert [c.id for c in got] == ["portfolio_heatmap", "health_vs_revenue", "portfolio_revenue"]
    for chart, key in zip(got, ["chart.heatmap", "chart.health_vs_revenue", "chart.portfolio_revenue"]):
        check_chart(chart, chart.id, EN_LABELS[key])


def test_alt_text_states_latest_values():
    details = make_details(3)
    details["revenue_by_month"][-1].update(revenue=5000.0, prior_year_revenue=1000.0)
    chart = revenue_by_month(details)
    assert "2026-10: 5,000 (prior year 1,000)" in chart.alt
    assert chart.table[0] == ["Month", "Revenue", "Prior year", "Change"]
    assert chart.table[-1] == ["2026-10", "5,000", "1,000", "+400%"]

    account = make_account(1)
    account["health_trend"][-1]["health_score"] = 81.0
    account["health_status"] = "amber"  # capped by a critical KPI: the scorecard's word wins
    chart = health_trend(account, BANDS)
    assert "Latest (2026-10): 81, status Amber." in chart.alt
    assert chart.table[-1] == ["2026-10", "81", "Amber"]
    assert chart.table[3][2] == "No data"  # the gap in the series


def test_relationship_map_counts_and_decision_makers():
    chart = relationship_map(make_details(1))
    assert chart.table[0] == ["Department", "Staff", "Manager", "Director", "Executive", "Decision makers"]
    assert chart.table[2] == ["IT", "2", "1", "0", "1", "Mia Chen"]
    assert "9 contacts in 3 departments, 2 at director or executive level" in chart.alt
    assert "Mia Chen (IT)" in chart.alt


def test_status_is_written_as_text_not_only_colour():
    scorecard = make_scorecard(6)
    heat = portfolio_heatmap(scorecard)
    statuses = {cell for row in heat.table[1:] for cell in row[2:]}
    assert statuses <= {"Green", "Amber", "Red", "No data", "Low sample", "OK"}
    # lowest health first, the unscored account last
    healths = [row[1] for row in heat.table[1:]]
    assert healths[-1] == "–"
    assert [float(h) for h in healths[:-1]] == sorted(float(h) for h in healths[:-1])
    bubble = health_vs_revenue(scorecard, make_portfolio_details(scorecard))
    assert {row[3] for row in bubble.table[1:]} <= {"Green", "Amber", "Red", "Insufficient data"}
    assert "1 without a health score or revenue are not shown" in bubble.alt
    strip = kpi_status_strip(scorecard["accounts"][0])
    assert [row[3] for row in strip.table[1:]] == [
        EN_LABELS[f"status.{k['status']}"] for k in scorecard["accounts"][0]["kpis"].values()]


def test_heatmap_limits_rows_and_says_so():
    scorecard = make_scorecard(30)
    chart = portfolio_heatmap(scorecard, max_rows=10)
    assert len(chart.table) == 11
    assert "10 of 30 accounts" in chart.alt


def test_same_input_gives_identical_bytes():
    alone = revenue_by_month(make_details(5)).svg
    first = [c.svg for c in all_charts()]
    second = [c.svg for c in all_charts()]
    assert first == second
    assert revenue_by_month(make_details(5)).svg == alone  # nothing carries over between charts


def test_period_labels_show_the_year_where_it_changes():
    assert charts._period_ticks(["2025-11", "2025-12", "2026-01"]) == ["11\n2025", "12", "01\n2026"]
    assert charts._period_ticks(["2025-12", "2026-02"]) == ["12\n2025", "02\n2026"]
    assert charts._period_ticks(["FY2026-Q4", "FY2027-Q1", "FY2027-Q2"]) == ["Q4\nFY2026", "Q1\nFY2027", "Q2"]


def test_chinese_labels_render_without_missing_glyphs():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = all_charts(zh_t, "zh_CN")
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert got[0].title == "健康度趋势"
    assert "健康度" in got[0].alt
    heat = next(c for c in got if c.id == "portfolio_heatmap")
    assert "推荐指数" in heat.table[0] and "长城精密制造有限公司" in [row[0] for row in heat.table]
    for chart in got:
        ET.fromstring(chart.svg)


def test_text_without_a_font_fails_loudly():
    account = make_account(1)
    account["kpis"]["nps"]["label"]["en"] = "\U00013000 hieroglyph"  # no installed font covers it
    with pytest.raises(RenderError, match="kpi_status.*no installed font"):
        kpi_status_strip(account)


def test_markup_in_names_is_escaped_in_svg():
    scorecard = make_scorecard(4)
    chart = health_vs_revenue(scorecard, make_portfolio_details(scorecard))
    assert "<img" not in chart.svg
    assert "<img src=x> & Co" in [row[0] for row in chart.table]
    chart = revenue_by_month(make_details(1), {"chart.revenue": "<script>alert(1)</script>"})
    assert "<script>" not in chart.svg and "&lt;script&gt;" in chart.svg


def test_missing_or_empty_data_gives_a_no_data_chart():
    account = make_account(2, with_trend=False)
    chart = health_trend(account, BANDS)
    check_chart(chart, "health_trend", "Health score trend")
    assert "no health scores" in chart.alt
    empty = make_details(5, empty=True)
    for fn in (revenue_by_month, satisfaction_trend, service_chart, interaction_frequency, relationship_map):
        ET.fromstring(fn(empty).svg)
    assert portfolio_heatmap({"accounts": []}).table == [["Account", "Health score"]]
    assert health_vs_revenue({"accounts": []}, {}).svg.startswith("<svg")


def test_labels_dict_and_partial_translations_fall_back_to_english():
    chart = revenue_by_month(make_details(1), {"chart.revenue": "月度收入"})
    assert chart.title == "月度收入"
    assert chart.table[0][2] == "Prior year"


def test_unknown_chart_kind_is_a_render_error():
    with pytest.raises(RenderError, match="unknown chart type"):
        account_charts(make_account(1), make_details(1), BANDS, kinds=["pie"])


def test_no_pyplot_anywhere_in_the_package():
    package = Path(charts.__file__).resolve().parents[1]
    pyplot = re.compile(r"matplotlib\.pyplot|from\s+matplotlib\s+import\s+[^\n]*\bpyplot\b|\bpylab\b|\bplt\.")
    offenders = [str(p) for p in package.rglob("*.py") if pyplot.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
