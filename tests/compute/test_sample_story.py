"""The sample project tells a story; the scorecard must see it (issue: deteriorating accounts warn, churn counts)."""
from __future__ import annotations

import json

import pytest

from reporter.clock import SystemClock
from reporter.pipeline import compute_scorecard, load
from reporter.sample.project import init_project


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    init_project(root, sample=True, accounts=60, months=24, seed=7, end="2026-10")
    truth = json.loads((root / "data" / "demo" / "truth.json").read_text(encoding="utf-8"))
    return truth, compute_scorecard(load(root, "2026-10", SystemClock()))


def test_every_deteriorating_account_gets_a_warning(story):
    truth, scorecard = story
    by_id = {a["account_id"]: a for a in scorecard["accounts"]}
    for account_id in truth["deteriorating"]:
        codes = {w["code"] for w in by_id[account_id]["warnings"]}
        assert codes, f"{account_id} deteriorates but has no warning"
        assert {"order_drop", "no_contact"} <= codes, (account_id, codes)
        assert all(w["reasons"]["zh_CN"] and w["reasons"]["en"] for w in by_id[account_id]["warnings"])


def test_the_churned_account_counts_in_churn_rate(story):
    truth, scorecard = story
    churn = scorecard["portfolio"]["churn_rate"]
    counts = scorecard["portfolio"]["counts"]
    assert counts["lost"] == len(truth["churned"]) == 1
    assert churn["value"] == pytest.approx(counts["lost"] / counts["at_start"])
    assert counts["new"] >= 1 and scorecard["portfolio"]["acquisition_rate"]["value"] > 0


def test_healthy_accounts_are_mostly_quiet(story):
    truth, scorecard = story
    flagged = {a["account_id"] for a in scorecard["accounts"]
               if {w["code"] for w in a["warnings"]} & {"order_drop", "complaints_up", "no_contact"}}
    assert flagged >= set(truth["deteriorating"])
    assert len(flagged - set(truth["deteriorating"])) <= 3, flagged


def test_p_alive_is_fitted_and_flags_the_churned_account(story):
    """The BG/NBD model fits on the sample data: every account has a p_alive, the churned one is red."""
    truth, scorecard = story
    by_id = {a["account_id"]: a for a in scorecard["accounts"]}
    statuses = {a: acc["kpis"]["p_alive"]["status"] for a, acc in by_id.items() if "p_alive" in acc["kpis"]}
    assert statuses and "no_data" not in statuses.values(), statuses
    [churned] = truth["churned"]
    assert statuses[churned] == "red"
    assert "low_p_alive" in {w["code"] for w in by_id[churned]["warnings"]}
