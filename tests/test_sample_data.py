"""The demo data behind `reporter init --sample`: deterministic, in the documented formats,
and telling the story truth.json claims. Checks read the written files back with pandas,
never the generator's internals."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reporter.sample.data import write_sample_data

END = pd.Period("2026-10", "M")
PERIOD_END = pd.Timestamp("2026-11-01")  # exclusive
WINDOW_START = pd.Timestamp("2024-11-01")
FILES = (
    "accounts.csv", "orders.csv", "surveys.xlsx", "tickets_gbk.csv", "interactions.parquet",
    "contacts.csv", "opportunities.csv", "costs.csv", "truth.json",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo")
    truth = write_sample_data(path)
    return path, truth


def _csv(path, **kw):
    return pd.read_csv(path, dtype=str, keep_default_na=False, **kw)


@pytest.fixture(scope="module")
def orders(demo):
    """Valid orders only: the rows validation would keep."""
    path, _ = demo
    frame = pd.read_csv(path / "orders.csv", dtype={"customer_id": str, "order_no": str}, thousands=",")
    frame["date"] = pd.to_datetime(frame["order_date"], format="%d/%m/%Y", errors="coerce")
    return frame[frame["date"].notna() & (frame["net_amount"] >= 0)]


@pytest.fixture(scope="module")
def accounts(demo):
    return _csv(demo[0] / "accounts.csv")


def test_same_arguments_give_identical_bytes(demo, tmp_path):
    first, truth = demo
    again = write_sample_data(tmp_path / "again")
    assert again == truth
    for name in FILES:
        assert (first / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    other = write_sample_data(tmp_path / "other", seed=8)
    assert (tmp_path / "other" / "orders.csv").read_bytes() != (first / "orders.csv").read_bytes()
    assert other["accounts"] == 60


def test_truth_json_matches_return_value(demo):
    path, truth = demo
    assert json.loads((path / "truth.json").read_text(encoding="utf-8")) == truth
    assert (truth["accounts"], truth["months"], truth["end"]) == (60, 24, "2026-10")


def test_truth_lists_have_the_right_sizes(demo, accounts):
    _, truth = demo
    assert len(truth["deteriorating"]) == 4
    assert len(truth["churned"]) == 1
    assert len(truth["new"]) == 3
    assert len(truth["dirty_rows"]) == 5
    special = truth["deteriorating"] + truth["churned"] + truth["new"]
    assert len(set(special)) == 8 and set(special) <= set(accounts["account_id"])
    tiers = accounts.set_index("account_id")["tier"]
    assert {"strategic", "key"} <= set(tiers[truth["deteriorating"]])


def test_row_counts_match_the_files(demo):
    path, truth = demo
    counts = truth["row_counts"]
    assert counts["accounts"] == len(_csv(path / "accounts.csv")) == 60
    assert counts["orders"] == len(_csv(path / "orders.csv"))
    assert counts["surveys"] == len(pd.read_excel(path / "surveys.xlsx", sheet_name="Surveys"))
    assert counts["tickets"] == len(_csv(path / "tickets_gbk.csv", encoding="gbk"))
    assert counts["interactions"] == pq.read_metadata(path / "interactions.parquet").num_rows
    for entity in ("contacts", "opportunities", "costs"):
        assert counts[entity] == len(_csv(path / f"{entity}.csv")), entity


def test_tickets_are_gbk_and_not_utf8(demo):
    raw = (demo[0] / "tickets_gbk.csv").read_bytes()
    text = raw.decode("gbk")
    assert text.startswith("客户编号,工单号,创建时间,首次响应时间,解决时间,是否投诉,优先级,SLA小时,满意度,重新打开\n")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    with pytest.raises(UnicodeEncodeError):
        "是".encode("latin-1")


def test_accounts_format(accounts):
    assert list(accounts.columns) == [
        "account_id", "name", "tier", "owner_email", "owner_name", "region", "industry", "since", "churned_on",
    ]
    assert accounts["account_id"].iloc[0] == "A001" and accounts["account_id"].is_unique
    assert accounts["name"].is_unique
    chinese = accounts["name"].str.contains(r"[\u4e00-\u9fff]")
    assert 0.4 <= chinese.mean() <= 0.6
    tiers = accounts["tier"].value_counts()
    assert tiers["strategic"] >= 2 and tiers["key"] > tiers["strategic"] and tiers["growth"] > tiers["key"]
    assert set(accounts["region"]) <= {"East China", "North China", "South China", "APAC", "EMEA"}
    owners = accounts.groupby("owner_email")["owner_name"].nunique()
    assert len(owners) == 8 and (owners == 1).all()
    assert accounts["owner_email"].value_counts().min() >= 5
    pd.to_datetime(accounts["since"], format="%Y-%m-%d")
    pd.to_datetime(accounts.loc[accounts["churned_on"] != "", "churned_on"], format="%Y-%m-%d")


def test_orders_format(demo):
    path, _ = demo
    text = (path / "orders.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "customer_id,order_no,order_date,net_amount,cost,product_line"
    raw = _csv(path / "orders.csv")
    assert raw["net_amount"].str.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d{2}").all()
    assert raw["cost"].str.fullmatch(r"\d+\.\d{2}").all()
    assert raw["order_no"].str.fullmatch(r"SO-\d{6}").all()
    assert '"' in text  # amounts with a thousands separator are quoted
    dates = pd.to_datetime(raw["order_date"], format="%d/%m/%Y", errors="coerce")
    assert dates.isna().sum() == 1
    assert dates.min() >= WINDOW_START and dates.max() < PERIOD_END
    assert set(raw["product_line"]) == {"hardware", "software", "cloud", "services", "training", "support"}


def test_orders_have_seasonality_and_tier_sizes(orders, accounts):
    by_month = orders.groupby(orders["date"].dt.month)["net_amount"].sum()
    assert by_month[[10, 11, 12]].mean() > by_month[2] * 1.3
    tiers = accounts.set_index("account_id")["tier"]
    size = orders.groupby(orders["customer_id"].map(tiers))["net_amount"].median()
    assert size["strategic"] > size["key"] > size["growth"]


def test_dirty_rows_are_where_truth_says(demo):
    path, truth = demo
    orders = _csv(path / "orders.csv")
    tickets = _csv(path / "tickets_gbk.csv", encoding="gbk")
    files = {"orders.csv": orders, "tickets_gbk.csv": tickets}
    for dirt in truth["dirty_rows"]:
        frame = files[dirt["file"]]
        assert 0.2 * len(frame) < dirt["row"] < 0.8 * len(frame), dirt  # in the middle
        value = frame.at[dirt["row"] - 2, dirt["column"]]
        if dirt["column"] == "order_date":
            assert value == "31/02/2026"
        elif dirt["column"] == "net_amount":
            assert value.startswith("-")
        elif dirt["column"] == "customer_id":
            assert value == "A999"
        elif dirt["column"] == "order_no":
            assert (orders["order_no"] == value).sum() == 2
        else:
            assert dirt["column"] == "创建时间" and value == "not a date"
    assert orders["order_no"].duplicated().sum() == 1
    assert (orders["customer_id"] == "A999").sum() == 1


def test_deteriorating_accounts_show_the_order_drop(demo, orders):
    _, truth = demo
    month = orders["date"].dt.to_period("M")
    last3 = month > END - 3
    prior12 = (month <= END - 3) & (month > END - 15)
    for account in truth["deteriorating"]:
        mine = orders["customer_id"] == account
        recent_rate = (mine & last3).sum() / 3
        usual_rate = (mine & prior12).sum() / 12
        assert usual_rate > 0
        assert recent_rate <= 0.4 * usual_rate, account  # down by at least 60%


def test_deteriorating_accounts_show_every_warning_signal(demo):
    path, truth = demo
    tickets = _csv(path / "tickets_gbk.csv", encoding="gbk")
    tickets["opened"] = pd.to_datetime(tickets["创建时间"], format="%Y-%m-%d %H:%M", errors="coerce")
    surveys = pd.read_excel(path / "surveys.xlsx", sheet_name="Surveys")
    interactions = pd.read_parquet(path / "interactions.parquet")
    last90 = PERIOD_END - pd.Timedelta(days=90)
    prior90 = PERIOD_END - pd.Timedelta(days=180)
    for account in truth["deteriorating"]:
        complaints = tickets[(tickets["客户编号"] == account) & (tickets["是否投诉"] == "是")]["opened"]
        recent = (complaints >= last90).sum()
        before = ((complaints >= prior90) & (complaints < last90)).sum()
        assert before >= 1 and recent >= 3 * before, account
        nps = surveys[(surveys["account_id"] == account) & (surveys["kind"] == "nps") & (surveys["date"] >= last90)]
        assert (nps["score"] <= 6).any(), account
        last_contact = pd.Timestamp(interactions.loc[interactions["account_id"] == account, "date"].max())
        assert (PERIOD_END - pd.Timedelta(days=1) - last_contact).days >= 70, account


def test_churned_account(demo, accounts, orders):
    _, truth = demo
    (account,) = truth["churned"]
    row = accounts.set_index("account_id").loc[account]
    churned_on = pd.Timestamp(row["churned_on"])
    assert churned_on.to_period("M") == END and churned_on > END.start_time
    assert pd.Timestamp(row["since"]) < WINDOW_START
    last_order = orders.loc[orders["customer_id"] == account, "date"].max()
    assert last_order.to_period("M") == END - 4
    assert (accounts["churned_on"] != "").sum() == 1


def test_new_and_established_accounts(demo, accounts, orders):
    _, truth = demo
    since = pd.to_datetime(accounts.set_index("account_id")["since"])
    new = since[truth["new"]]
    assert (new.dt.to_period("M") > END - 3).all() and (new.dt.to_period("M") == END).any()
    for account in truth["new"]:
        dates = orders.loc[orders["customer_id"] == account, "date"]
        assert len(dates) and dates.min() >= since[account]
    established = since.drop(truth["new"])
    assert (established < WINDOW_START).all()
    healthy = set(accounts["account_id"]) - set(truth["deteriorating"] + truth["churned"] + truth["new"])
    healthy_orders = orders[orders["customer_id"].isin(healthy)]
    months = healthy_orders.groupby("customer_id")["date"].apply(lambda d: d.dt.to_period("M").nunique())
    assert months.median() >= 22 and months.min() >= 12


def test_surveys_format(demo):
    surveys = pd.read_excel(demo[0] / "surveys.xlsx", sheet_name="Surveys")
    assert list(surveys.columns) == ["account_id", "date", "kind", "score", "respondent", "comment"]
    assert pd.api.types.is_datetime64_any_dtype(surveys["date"])  # real Excel dates, not text
    assert set(surveys["kind"]) == {"nps", "csat", "ces"}
    for kind, low, high in (("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)):
        scores = surveys.loc[surveys["kind"] == kind, "score"]
        assert scores.between(low, high).all(), kind
    assert surveys.loc[surveys["kind"] == "nps", "score"].ge(8).mean() > 0.7


def test_tickets_format(demo):
    tickets = _csv(demo[0] / "tickets_gbk.csv", encoding="gbk")
    valid = tickets[tickets["创建时间"] != "not a date"]
    for column in ("创建时间", "首次响应时间", "解决时间"):
        stamps = valid.loc[valid[column] != "", column]
        pd.to_datetime(stamps, format="%Y-%m-%d %H:%M")
    assert set(tickets["是否投诉"]) == {"是", "否"} and set(tickets["重新打开"]) <= {"是", "否"}
    assert set(tickets["优先级"]) == {"高", "中", "低"}
    satisfaction = tickets.loc[tickets["满意度"] != "", "满意度"].astype(int)
    assert satisfaction.between(1, 5).all()
    unresolved = pd.to_datetime(valid.loc[valid["解决时间"] == "", "创建时间"], format="%Y-%m-%d %H:%M")
    assert len(unresolved) and unresolved.min() > PERIOD_END - pd.Timedelta(days=120)
    assert tickets["工单号"].is_unique


def test_interactions_contacts_opportunities_costs_formats(demo, accounts):
    path, truth = demo
    table = pq.read_table(path / "interactions.parquet")
    assert table.schema.field("date").type == pa.date32()
    assert table.column_names == ["account_id", "date", "channel", "contact_id", "department", "seniority"]
    interactions = table.to_pandas()
    assert set(interactions["channel"]) <= {"meeting", "call", "email", "visit", "review"}

    contacts = _csv(path / "contacts.csv")
    assert list(contacts.columns) == ["account_id", "contact_id", "name", "department", "seniority", "role", "active"]
    assert contacts["contact_id"].iloc[0] == "C0001" and contacts["contact_id"].is_unique
    assert set(contacts["active"]) == {"true", "false"}
    assert set(contacts["role"]) == {"decision_maker", "influencer", "user"}
    assert set(interactions["contact_id"]) <= set(contacts["contact_id"])

    opportunities = _csv(path / "opportunities.csv")
    assert list(opportunities.columns) == [
        "opportunity_id", "account_id", "created_at", "closed_at", "status", "amount", "kind", "product_line",
    ]
    assert set(opportunities["status"]) == {"open", "won", "lost"}
    assert ((opportunities["closed_at"] == "") == (opportunities["status"] == "open")).all()
    pd.to_datetime(opportunities["created_at"], format="%Y-%m-%d")

    costs = _csv(path / "costs.csv")
    dates = pd.to_datetime(costs["date"], format="%Y-%m-%d")
    assert (dates.dt.day == 1).all()
    portfolio = costs["category"].isin(["acquisition", "marketing", "sales"])
    assert (costs.loc[portfolio, "account_id"] == "").all() and (costs.loc[~portfolio, "account_id"] != "").all()
    since = pd.to_datetime(accounts.set_index("account_id").loc[truth["new"], "since"])
    acquisition = costs[costs["category"] == "acquisition"]
    assert set(since.dt.strftime("%Y-%m-01")) == set(acquisition["date"])
    assert (acquisition["amount"].astype(float) > 0).all()


def test_interactions_for_established_accounts_are_regular(demo, accounts):
    path, truth = demo
    interactions = pd.read_parquet(path / "interactions.parquet")
    interactions["month"] = pd.to_datetime(interactions["date"]).dt.to_period("M")
    big = accounts.loc[accounts["tier"].isin(["strategic", "key"]), "account_id"]
    steady = set(big) - set(truth["deteriorating"] + truth["churned"] + truth["new"])
    per_month = interactions[interactions["account_id"].isin(steady)].groupby(["account_id", "month"]).size()
    window = pd.period_range(WINDOW_START, END.start_time, freq="M")
    grid = per_month.unstack(fill_value=0).reindex(index=sorted(steady), columns=window, fill_value=0)
    assert grid.to_numpy().min() >= 2


def test_larger_portfolio_is_fast(tmp_path):
    import time

    started = time.perf_counter()
    truth = write_sample_data(tmp_path, accounts=300, months=15, seed=3, end="2025-06")
    assert time.perf_counter() - started < 5
    assert truth["row_counts"]["accounts"] == 300 and len(truth["deteriorating"]) == 4


def test_rejects_arguments_that_cannot_tell_the_story(tmp_path):
    with pytest.raises(ValueError):
        write_sample_data(tmp_path, accounts=5)
    with pytest.raises(ValueError):
        write_sample_data(tmp_path, months=6)
    with pytest.raises(ValueError):
        write_sample_data(tmp_path, end="2026-13")
