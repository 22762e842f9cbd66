"""HTML documents: golden snapshots in both locales, i18n and formats, overrides, strictness.

Set UPDATE_GOLDEN=1 to rewrite tests/render/golden/*.html after an intended change; review the diff.
"""
from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import pytest

from reporter.config import BUILTIN_TEMPLATES
from reporter.errors import RenderError
from reporter.render import render_report
from reporter.render.html import (common_context, render_account_review_html, render_portfolio_html,
                                  top_messages, normalise_account)
from reporter.render.i18n import i18n_for, make_i18n
from reporter.render.notes import load_notes
from reporter.render.pdf import FONT_FAMILIES

GOLDEN = Path(__file__).parent / "golden"


def _common(synthetic, config, report, locale):
    scorecard = synthetic.scorecard()
    return common_context(config, report, period=scorecard["period"], generated_at=synthetic.generated_at,
                          report_id=synthetic.report_id, locale=locale, period_start=scorecard["period_start"],
                          period_end=scorecard["period_end"])


def _review(synthetic, config, account_id, locale):
    scorecard = synthetic.scorecard()
    account = next(a for a in scorecard["accounts"] if a["account_id"] == account_id)
    i18n = i18n_for(config, locale)
    notes = load_notes(config.root, scorecard["period"], account_id, i18n)
    return render_account_review_html(config, "reviews", account, synthetic.details(account_id),
                                      synthetic.charts(account), notes, _common(synthetic, config, "reviews", locale))


def _portfolio(synthetic, config, locale):
    return render_portfolio_html(config, "leadership", synthetic.scorecard(), synthetic.charts(None),
                                 _common(synthetic, config, "leadership", locale))


@pytest.mark.parametrize("locale", ["en", "zh_CN"])
@pytest.mark.parametrize("document", ["review-A001", "review-A002", "review-A003", "portfolio"])
def test_golden_html(synthetic, render_config, document, locale):
    if document == "portfolio":
        html = _portfolio(synthetic, render_config, locale)
    else:
        html = _review(synthetic, render_config, document.split("-")[1], locale)
    path = GOLDEN / f"{document}.{locale}.html"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(html, encoding="utf-8")
    assert path.is_file(), f"no snapshot {path.name}; run with UPDATE_GOLDEN=1 to create it"
    assert html == path.read_text(encoding="utf-8"), f"{path.name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def test_same_inputs_same_html(synthetic, render_config):
    assert _review(synthetic, render_config, "A001", "zh_CN") == _review(synthetic, render_config, "A001", "zh_CN")


def test_review_content_en(synthetic, render_config):
    html = _review(synthetic, render_config, "A001", "en")
    assert '<html lang="en">' in html
    assert "<h1>Acme Industrial GmbH</h1>" in html
    assert "61.5 / 100" in html and "↓ Declining" in html
    for section in ("Executive summary", "KPIs against target and tier peers", "Trends", "Risks and early warnings",
                    "Relationship map", "Opportunities", "Commentary and action items", "Appendix: KPI definitions"):
        assert f"<h2>{section}</h2>" in html
    # KPI values in the unit's format, and status as a word next to its colour
    assert "€482,350" in html and "31.2%" in html and "+0.7 pp" in html and "31.5 h" in html
    assert '<span class="status s-red"><span class="swatch"></span>Off target</span>' in html
    # custom KPI definition from kpis.yaml, catalog definition for a built-in
    assert "Custom aggregate over orders: sum(amount) filter (where product_line = &#39;cloud&#39;)" in html
    assert "Sum of order amounts in the window." in html
    # the note, its action table, and nothing of the period range past the last day
    assert "<td>Book the quarterly business review with the CFO</td><td>Li Wei</td>" in html
    assert "Nov 30, 2026" in html and "Oct 1, 2026 to Oct 31, 2026" in html


def test_review_content_zh(synthetic, render_config):
    html = _review(synthetic, render_config, "A002", "zh_CN")
    assert '<html lang="zh-CN">' in html
    assert "<h1>长城精密制造有限公司</h1>" in html
    assert "执行摘要" in html and "附录：指标定义" in html and "重点客户" in html
    assert "样本不足" in html and "达标" in html
    assert "本期未提供评述。" in html
    assert "2026年10月1日 至 2026年10月31日" in html
    assert "统计窗口内订单金额之和。" in html  # translated catalog definition


def test_missing_note_says_so(synthetic, render_config):
    assert "No commentary was provided for this period." in _review(synthetic, render_config, "A002", "en")


def test_charts_have_alt_text_and_table_fallback(synthetic, render_config):
    html = _review(synthetic, render_config, "A001", "en")
    figures = re.findall(r'<figure class="chart".*?</figure>', html, re.S)
    assert len(figures) == 6
    for figure in figures:
        assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+" alt="[^"]+ for Acme', figure)
        assert "<details class=\"chart-data\">" in figure and "<th scope=\"col\">Month</th>" in figure
    assert "details.chart-data { display: none; }" in html or ".screen-only, details.chart-data { display: none; }" in html


def test_self_contained_and_responsive(synthetic, render_config):
    html = _portfolio(synthetic, render_config, "en")
    assert not re.search(r'(src|href)="(https?:|file:|//)', html)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    screen = html.split('<style media="screen">')[1].split("</style>")[0]
    assert "@media (max-width: 640px)" in screen and "overflow-x: auto" in screen
    assert "@page { size: A4; }" in html


def test_portfolio_content(synthetic, render_config):
    html = _portfolio(synthetic, render_config, "en")
    for section in ("Portfolio headline", "Accounts by tier", "Heatmap: account × KPI status", "Top movers",
                    "At-risk accounts", "Definitions"):
        assert f"<h2>{section}</h2>" in html
    assert "95.0%" in html and "€18,250" in html and "104.0%" in html
    assert '<td class="cell-status s-red">Off target</td>' in html
    # movers: Acme (-12.5) before 长城 (+3); the account without a previous score is not a mover
    movers = html.split("<h2>Top movers</h2>")[1].split("</table>")[0]
    assert movers.index("Acme Industrial GmbH") < movers.index("长城精密制造有限公司")
    assert "&lt;img" not in movers
    at_risk = html.split("<h2>At-risk accounts</h2>")[1].split("</table>")[0]
    assert "No interaction for 74 days." in at_risk and "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in at_risk


def test_letter_page_size(synthetic, render_root):
    config = synthetic.config(render_root, page_size="letter")
    assert "@page { size: letter; }" in _portfolio(synthetic, config, "en")


def test_css_font_stack_matches_coverage_check():
    css = (BUILTIN_TEMPLATES / "styles" / "base.css").read_text(encoding="utf-8")
    stack = ", ".join(f'"{f}"' if " " in f else f for f in FONT_FAMILIES)
    assert f"font-family: {stack};" in css


# --------------------------------------------------------------------------- i18n and formats

def test_formats_per_locale():
    en = make_i18n([BUILTIN_TEMPLATES], "en", "CNY")
    zh = make_i18n([BUILTIN_TEMPLATES], "zh_CN", "CNY")
    assert en.money(1234567.5) == "CN¥1,234,568" and zh.money(1234567.5) == "¥1,234,568"
    assert en.money(12.5) == "CN¥12.50"
    assert en.percent(0.1234) == "12.3%" and zh.percent(0.1234) == "12.3%"
    assert en.date(date(2026, 10, 31)) == "Oct 31, 2026" and zh.date("2026-10-31") == "2026年10月31日"
    assert en.period("2026-10") == "October 2026" and zh.period("2026-10") == "2026年10月"
    assert en.period("2026-Q3") == "Q3 2026" and zh.period("FY2026-Q3") == "2026财年第3季度"
    kpi = {"value": 31.5, "unit": "hours", "change": 9.5}
    assert en.kpi_value(kpi) == "31.5 h" and zh.kpi_value(kpi) == "31.5 小时"
    assert en.kpi_change({"change": -0.06, "unit": "percent"}) == "-6 pp"
    assert zh.kpi_change({"change": 0.005, "unit": "percent"}) == "+0.5 个百分点"
    assert en.kpi_value({"value": None, "unit": "percent"}) == "—"
    assert en.status_label("amber") == "Watch" and zh.status_label("red") == "未达标"


def test_missing_label_names_key_and_file():
    en = make_i18n([BUILTIN_TEMPLATES], "en", "EUR")
    with pytest.raises(RenderError) as info:
        en.t("review.no_such_label")
    assert "review.no_such_label" in str(info.value) and "i18n/en.yaml" in str(info.value)


def test_unknown_status_fails_loudly(synthetic, render_config):
    scorecard = synthetic.scorecard()
    scorecard["accounts"][0]["kpis"]["nps"]["status"] = "purple"
    with pytest.raises(RenderError, match="status.purple"):
        render_portfolio_html(render_config, "leadership", scorecard, [],
                              _common(synthetic, render_config, "leadership", "en"))


def test_top_messages_warnings_first_then_largest_moves(synthetic):
    i18n = make_i18n([BUILTIN_TEMPLATES], "en", "EUR")
    account = normalise_account(synthetic.scorecard()["accounts"][0])
    messages = top_messages(account, i18n)
    assert len(messages) == 3
    assert messages[0].startswith("Health score fell") and messages[1].startswith("Complaints doubled")
    # complaints moved most (+100%) but a warning already says so: the next largest move follows
    assert messages[2] == "Net Promoter Score worsened from 42 to 18."
    account["warnings"] = []
    assert top_messages(account, i18n)[:2] == ["Complaints worsened from 3 to 6.",
                                               "Net Promoter Score worsened from 42 to 18."]


# --------------------------------------------------------------------------- project overrides

def test_project_templates_override_file_by_file(synthetic, render_root, tmp_path):
    own = render_root / "report_templates"
    (own / "i18n").mkdir(parents=True)
    (own / "i18n" / "en.yaml").write_text("review:\n  summary: At a glance\n", encoding="utf-8")
    (own / "partials").mkdir()
    macros = (BUILTIN_TEMPLATES / "partials" / "macros.html").read_text(encoding="utf-8")
    (own / "partials" / "macros.html").write_text(macros.replace('<span class="swatch">', '<span class="swatch own">'),
                                                 encoding="utf-8")
    config = synthetic.config(render_root)
    html = _review(synthetic, config, "A001", "en")
    assert "<h2>At a glance</h2>" in html and "<h2>Trends</h2>" in html  # one key overridden, the rest built in
    assert '<span class="swatch own">' in html  # the project's partial, the built-in page


def test_strict_undefined_in_project_template(synthetic, render_root):
    own = render_root / "report_templates"
    own.mkdir()
    (own / "account_review.html").write_text('{% extends "base.html" %}{% block content %}{{ acount.name }}'
                                             "{% endblock %}", encoding="utf-8")
    with pytest.raises(RenderError, match="acount"):
        _review(synthetic, synthetic.config(render_root), "A001", "en")


def test_render_report_writes_html_atomically(synthetic, render_config, tmp_path):
    artifacts = render_report(render_config, "reviews", synthetic.scorecard(),
                              {a: synthetic.details(a) for a in ("A001", "A002", "A003")}, None, synthetic.charts,
                              tmp_path / "out", formats=("html",), locale="zh_CN",
                              generated_at=synthetic.generated_at, report_id=synthetic.report_id)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["A001-acme-industrial-gmbh.html", "A002.html",
                     "A003-img-src-file-etc-passwd-link-rel-attachm.html"]
    assert [(a.account_id, a.format, a.locale) for a in artifacts] == [
        ("A001", "html", "zh_CN"), ("A002", "html", "zh_CN"), ("A003", "html", "zh_CN")]
    import hashlib
    for artifact in artifacts:
        assert hashlib.sha256(artifact.path.read_bytes()).hexdigest() == artifact.sha256
