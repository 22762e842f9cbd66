"""chart_set: the charts_for(account_or_None) factory, and the chart labels of the built-in label files."""
from __future__ import annotations

import dataclasses
import re
import string
from pathlib import Path

import pytest
import yaml

from reporter.config import load_project
from reporter.errors import RenderError
from reporter.render import chart_set
from reporter.render.chart_set import charts_for_report
from reporter.render.charts import EN_LABELS, Chart
from test_charts import make_details, make_portfolio_details, make_scorecard  # builders of tests/render/test_charts.py

ROOT = Path(__file__).resolve().parents[2]
I18N = ROOT / "report_templates" / "i18n"
FIXTURE = ROOT / "tests" / "fixtures" / "valid"
ACCOUNT_IDS = ["health_trend", "revenue_by_month", "satisfaction_trend", "service", "interaction_frequency",
               "relationship_map"]
ACCOUNT_TITLES = ["chart.health_trend", "chart.revenue", "chart.satisfaction", "chart.service",
                  "chart.interactions", "chart.relationship_map"]
PORTFOLIO_IDS = ["portfolio_heatmap", "health_vs_revenue", "portfolio_revenue"]
PORTFOLIO_TITLES = ["chart.heatmap", "chart.health_vs_revenue", "chart.portfolio_revenue"]
CJK = re.compile(r"[\u4e00-\u9fff]")


def flat_labels(locale: str) -> dict[str, str]:
    def flatten(data: dict, prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    return flatten(yaml.safe_load((I18N / f"{locale}.yaml").read_text(encoding="utf-8")))


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.fixture(scope="module")
def config():
    return load_project(FIXTURE)


@pytest.fixture(scope="module")
def inputs():
    scorecard = make_scorecard(6)
    details = {a["account_id"]: make_details(i + 1) for i, a in enumerate(scorecard["accounts"])}
    return scorecard, details, make_portfolio_details(scorecard)


@pytest.fixture(scope="module")
def zh_charts(config, inputs):
    scorecard, details, portfolio_details = inputs
    charts_for = charts_for_report(config, "reviews", scorecard, details, portfolio_details, "zh_CN")
    return charts_for(scorecard["accounts"][0]), charts_for(None)


# --- label files ------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en", "zh_CN"])
def test_label_file_has_every_chart_label(locale):
    labels = flat_labels(locale)
    assert all(isinstance(labels.get(k), str) and labels[k] for k in EN_LABELS)
    chart_keys = {k for k in labels if k.startswith("chart.")}
    assert chart_keys == {k for k in EN_LABELS if k.startswith("chart.")}
    # templates are filled by the chart code: the same placeholders in every language
    assert {k: placeholders(labels[k]) for k in EN_LABELS} == {k: placeholders(v) for k, v in EN_LABELS.items()}


def test_english_chart_texts_are_the_chart_defaults():
    labels = flat_labels("en")
    assert {k: labels[k] for k in EN_LABELS if k.startswith(("chart.", "channel."))} == \
           {k: v for k, v in EN_LABELS.items() if k.startswith(("chart.", "channel."))}


def test_chinese_chart_labels_are_chinese():
    zh, en = flat_labels("zh_CN"), flat_labels("en")
    for key in EN_LABELS:
        if key.startswith(("chart.", "channel.", "seniority.")) and key not in ("chart.sla", "chart.heatmap.key"):
            assert CJK.search(zh[key]), key
            assert zh[key] != en[key], key


# --- the factory ------------------------------------------------------------------------------


def test_zh_account_charts_use_the_chinese_labels(zh_charts):
    account, _ = zh_charts
    zh = flat_labels("zh_CN")
    assert [c.id for c in account] == ACCOUNT_IDS
    assert all(isinstance(c, Chart) for c in account)
    assert [c.title for c in account] == [zh[k] for k in ACCOUNT_TITLES]
    assert account[1].title == zh["chart.revenue"] == "月度收入"
    english = {v for k, v in EN_LABELS.items() if zh.get(k) != v}  # English texts the Chinese labels replace
    for chart in account:
        assert f"<title>{chart.title}</title>" in chart.svg
        assert CJK.search(chart.alt), chart.id
        texts = [chart.title, *chart.table[0], *(cell for row in chart.table[1:] for cell in row)]
        assert not english.intersection(texts), (chart.id, english.intersection(texts))


def test_zh_portfolio_charts_for_none(zh_charts):
    _, portfolio = zh_charts
    zh = flat_labels("zh_CN")
    assert [c.id for c in portfolio] == PORTFOLIO_IDS
    assert [c.title for c in portfolio] == [zh[k] for k in PORTFOLIO_TITLES]
    heatmap = portfolio[0]
    statuses = {cell for row in heatmap.table[1:] for cell in row[2:]}
    assert statuses and statuses <= {zh[f"status.{s}"] for s in ("green", "amber", "red", "no_data", "low_sample", "ok")}


def test_portfolio_charts_are_drawn_once_per_factory(config, inputs, monkeypatch):
    scorecard, details, portfolio_details = inputs
    calls = []

    def fake_portfolio_charts(*args):
        calls.append(args)
        return [Chart("portfolio_heatmap", "t", "alt", "<svg/>")]

    monkeypatch.setattr(chart_set, "portfolio_charts", fake_portfolio_charts)
    charts_for = charts_for_report(config, "leadership", scorecard, details, portfolio_details, None)
    first, second = charts_for(None), charts_for(None)
    assert first == second and len(calls) == 1
    sc, pd, t, locale, bands = calls[0]
    assert sc is scorecard and pd is portfolio_details and locale == "en"
    assert bands == {"red_below": 50, "green_from": 75}
    assert t["chart.heatmap"] == EN_LABELS["chart.heatmap"]  # the locale's labels
    charts_for_report(config, "leadership", scorecard, details, portfolio_details, None)(None)
    assert len(calls) == 2  # a new factory draws afresh


def test_account_charts_take_the_project_bands_and_locale(config, inputs):
    scorecard, details, portfolio_details = inputs
    bands = config.tiers.health_bands.model_copy(update={"red_below": 40, "green_from": 80})
    config = dataclasses.replace(config, tiers=config.tiers.model_copy(update={"health_bands": bands}))
    charts_for = charts_for_report(config, "reviews", scorecard, details, portfolio_details)
    account = scorecard["accounts"][1]
    health = charts_for(account)[0]
    assert health.title == EN_LABELS["chart.health_trend"]
    assert "red below 40 and green from 80" in health.alt
    # an account without details gets the empty charts, not an error
    assert [c.id for c in charts_for({**account, "account_id": "missing"})] == ACCOUNT_IDS


def test_unknown_report_is_an_error(config, inputs):
    scorecard, details, portfolio_details = inputs
    with pytest.raises(RenderError, match='no report "nope"'):
        charts_for_report(config, "nope", scorecard, details, portfolio_details, "en")
