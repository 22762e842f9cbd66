"""Broken projects: each one is the valid fixture with one mistake, and must produce exactly
one located message (file:line:col: key.path: what to fix) and exit code 2."""
from __future__ import annotations

import pytest

from helpers import edit
from reporter.config import load_project
from reporter.errors import ConfigError

# (case, file, old text, new text, expected message)
CASES = [
    ("yaml syntax", "tiers.yaml", "  growth:\n", "  growth: [\n",
     "configs/tiers.yaml:15:14: invalid YAML: expected ',' or ']', but got ':'"),
    ("wrong type", "tiers.yaml", "nps: {weight: 2,", "nps: {weight: high,",
     'configs/tiers.yaml:4:21: tiers.strategic.kpis.nps.weight: expected a number >= 0, got "high"'),
    ("negative weight", "tiers.yaml", "revenue: {weight: 1, target: 5000", "revenue: {weight: -1, target: 5000",
     "configs/tiers.yaml:5:25: tiers.strategic.kpis.revenue.weight: expected a number >= 0, got -1"),
    ("unknown key", "tiers.yaml", "{weight: 1, green: 20, amber: 0}", "{weight: 1, gren: 20, amber: 0}",
     'configs/tiers.yaml:10:24: tiers.key.kpis.nps.gren: unknown key "gren"; did you mean "green"?'),
    ("unknown kpi", "tiers.yaml", "      complaints:", "      complaint:",
     'configs/tiers.yaml:6:7: tiers.strategic.kpis.complaint: unknown KPI "complaint"; did you mean "complaints"?'),
    ("inverted thresholds up", "tiers.yaml", "green: 4000, amber: 2000", "green: 2000, amber: 4000",
     "configs/tiers.yaml:5:49: tiers.strategic.kpis.revenue.green: thresholds inverted: this KPI is better higher, "
     "so green (2000) must be >= amber (4000)"),
    ("inverted thresholds down", "tiers.yaml", "complaints: {weight: 1, green: 1, amber: 2}",
     "complaints: {weight: 1, green: 3, amber: 2}",
     "configs/tiers.yaml:6:38: tiers.strategic.kpis.complaints.green: thresholds inverted: this KPI is better lower, "
     "so green (3) must be <= amber (2)"),
    ("missing env var", "project.yaml", "currency: EUR", "currency: EUR\nsmtp: {password: \"${REPORTER_TEST_UNSET}\"}",
     "configs/project.yaml:5:18: smtp.password: environment variable REPORTER_TEST_UNSET is not set; "
     "export it or write ${REPORTER_TEST_UNSET:-default}"),
    ("bad cron", "reports.yaml", 'cron: "0 7 1 * *"', 'cron: "0 7 32 * *"',
     'configs/reports.yaml:12:13: reports.reviews.schedule.cron: invalid cron expression "0 7 32 * *": '
     'expected five fields "minute hour day-of-month month day-of-week", e.g. "0 7 1 * *"'),
    ("bad schedule shorthand", "reports.yaml", "monthly on day 1 at 07:00", "montly on day 1 at 07:00",
     'configs/reports.yaml:6:15: reports.leadership.schedule: cannot read schedule "montly on day 1 at 07:00 '
     'Asia/Shanghai": write e.g. "monthly on day 1 at 07:00", "weekly on monday at 08:30", "daily at 06:00", '
     "optionally followed by a time zone, or a block with cron:"),
    ("bad time zone", "project.yaml", "timezone: Asia/Shanghai", "timezone: Asia/Shangai",
     'configs/project.yaml:2:11: timezone: unknown time zone "Asia/Shangai"; did you mean "Asia/Shanghai"?'),
    ("bad schedule time zone", "reports.yaml", "      timezone: Asia/Shanghai", "      timezone: Mars/Olympus",
     'configs/reports.yaml:13:17: reports.reviews.schedule.timezone: unknown time zone "Mars/Olympus"; '
     "use an IANA name such as Asia/Shanghai"),
    ("python object tag", "project.yaml", "name: Fixture project", "name: !!python/object/apply:os.system [ls]",
     "configs/project.yaml:1:7: name: YAML tag !!python/object/apply:os.system is not allowed; write plain values"),
    ("duplicate yaml key", "project.yaml", "locale: en", "locale: en\nlocale: zh_CN",
     'configs/project.yaml:4:1: locale: duplicate key "locale": each key may appear once'),
    ("bad locale", "project.yaml", "locale: en", "locale: fr",
     'configs/project.yaml:3:9: locale: expected one of en, zh_CN, got "fr"'),
    ("unknown source kind", "sources.yaml", "orders: {kind: csv,", "orders: {kind: cvs,",
     'configs/sources.yaml:3:18: sources.orders.kind: expected one of csv, excel, parquet, sql, duckdb, got "cvs"; '
     'did you mean "csv"?'),
    ("missing required key", "sources.yaml", "orders: {kind: csv, entity: orders, path: data/orders.csv}",
     "orders: {kind: csv, entity: orders}", "configs/sources.yaml:3:11: sources.orders.path: required key is missing"),
    ("unknown entity field in mapping", "sources.yaml", "orders: {kind: csv, entity: orders,",
     "orders: {kind: csv, entity: orders, columns: {amont: net},",
     'configs/sources.yaml:3:11: sources.orders: "amont" is not a field of orders; fields are: account_id, date, '
     "amount, cost, margin, product_line, order_id"),
    ("kpi needs missing entity", "sources.yaml", "  tickets: {kind: csv, entity: tickets, path: data/tickets.csv}\n", "",
     "configs/tiers.yaml:6:7: tiers.strategic.kpis.complaints: complaints needs tickets data, but no source "
     "provides it; add a source with entity: tickets or drop the KPI"),
    ("bad sql expression", "kpis.yaml", "product_line = 'cloud'", "product_lin = 'cloud'",
     'configs/kpis.yaml:6:17: kpis.cloud_revenue.expression: invalid SQL aggregate: Referenced column "product_lin" '
     "not found in FROM clause!"),
    ("unsafe formula", "kpis.yaml", '"revenue / interaction_frequency"', '"__import__(\'os\').system(\'ls\')"',
     "configs/kpis.yaml:11:14: kpis.revenue_per_interaction.formula: unsupported expression "
     "\"__import__('os').system('ls')\": use KPI ids, numbers, + - * / and min, max, abs"),
    ("formula unknown kpi", "kpis.yaml", "revenue / interaction_frequency", "revenue / interactions",
     'configs/kpis.yaml:11:14: kpis.revenue_per_interaction.formula: unknown KPI "interactions" in formula; '
     'did you mean "interaction_frequency"?'),
    ("unknown tier in report filter", "reports.yaml", "kind: account_review", "kind: account_review\n    filter: {tiers: [stratgic]}",
     'configs/reports.yaml:9:21: reports.reviews.filter.tiers: unknown tier "stratgic"; did you mean "strategic"?'),
    ("missing template", "reports.yaml", "kind: account_review", "kind: account_review\n    template: qbr.html",
     'configs/reports.yaml:9:15: reports.reviews.template: template "qbr.html" not found in the project\'s '
     "report_templates/ or the built-in templates"),
    ("bad report kind", "reports.yaml", "kind: account_review", "kind: account_reviews",
     'configs/reports.yaml:8:11: reports.reviews.kind: expected one of account_review, portfolio_scorecard, '
     'got "account_reviews"; did you mean "account_review"?'),
]


@pytest.mark.parametrize("case,file,old,new,expected", CASES, ids=[c[0] for c in CASES])
def test_broken_config_is_located(project, cli, case, file, old, new, expected, monkeypatch):
    monkeypatch.delenv("REPORTER_TEST_UNSET", raising=False)
    edit(project / "configs" / file, old, new)
    code, out, err = cli("validate", "-p", project)
    assert code == 2
    assert err.splitlines()[0] == expected
    assert "Traceback" not in err
    assert err.splitlines()[-1].endswith("nothing was written or sent.")
    assert not (project / "output").exists()


def test_all_problems_are_reported_at_once(project):
    edit(project / "configs" / "tiers.yaml", "nps: {weight: 2,", "nps: {weight: high,")
    edit(project / "configs" / "tiers.yaml", "{weight: 1, green: 20, amber: 0}", "{weight: 1, gren: 20, amber: 0}")
    with pytest.raises(ConfigError) as caught:
        load_project(project)
    assert len(caught.value.issues) == 2


def test_debug_shows_the_traceback(project, cli):
    edit(project / "configs" / "project.yaml", "locale: en", "locale: fr")
    with pytest.raises(ConfigError):
        cli("--debug", "validate", "-p", project)


def test_paths_are_relative_to_the_project_not_the_cwd(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_project(project)
    assert config.root == project.resolve()


def test_missing_project_says_how_to_create_one(tmp_path, cli):
    code, _, err = cli("validate", "-p", tmp_path / "nowhere")
    assert code == 2
    assert "no configs/ folder" in err and "reporter init" in err
