"""Deterministic synthetic source files for the demo project (`reporter init DIR --sample`).

`write_sample_data` writes the eight source files the shipped configs read, plus a
`truth.json` that states the story the data tells: which accounts deteriorate, which one
churns, which are new, and which rows are dirty on purpose. Tests and the demo configs
check the KPIs and early warnings against it.

Same arguments, same bytes: one seeded numpy Generator, no wall clock, fixed number and
date formats, rows sorted, and the xlsx zip normalised (openpyxl stamps "now" into it).
Everything is generated on an account x month grid with numpy, so 2,000 accounts take
seconds.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PRODUCT_LINES = np.array(["hardware", "software", "cloud", "services", "training", "support"])
LINE_MARGIN = np.array([0.18, 0.65, 0.45, 0.35, 0.50, 0.60])

TIERS = np.array(["strategic", "key", "growth"])
STRATEGIC, KEY, GROWTH = 0, 1, 2
# Per tier (strategic, key, growth).
ORDERS_PER_MONTH = np.array([4.5, 2.2, 0.6])  # growth: the floor below lifts it to ~1
ORDER_SIZE = np.array([45_000.0, 15_000.0, 4_000.0])
TICKETS_PER_MONTH = np.array([2.5, 1.2, 0.4])
INTERACTIONS_PER_MONTH = np.array([5.0, 3.0, 1.2])
OPPORTUNITIES_PER_YEAR = np.array([5.0, 3.0, 1.5])
OPPORTUNITY_SIZE = np.array([120_000.0, 40_000.0, 12_000.0])
RETENTION_COST = np.array([2_500.0, 900.0, 250.0])
SERVICE_COST = np.array([1_200.0, 400.0, 100.0])
CONTACTS = np.array([[8, 13], [5, 9], [2, 5]])      # integers(low, high) per tier
RESPONDENTS = np.array([[5, 8], [3, 5], [1, 3]])
PRODUCT_LINES_BOUGHT = np.array([[4, 7], [3, 6], [1, 4]])

# Q4 high, February low; index 0 is January.
SEASON = np.array([0.95, 0.70, 1.00, 1.00, 1.00, 1.05, 0.95, 0.90, 1.05, 1.15, 1.25, 1.35])

HEALTHY, DETERIORATING, CHURNED, NEW = 0, 1, 2, 3

OWNERS = (
    ("Li Wei", "li.wei@example.com"),
    ("Emma Clarke", "emma.clarke@example.com"),
    ("Zhang Min", "zhang.min@example.com"),
    ("Daniel Weber", "daniel.weber@example.com"),
    ("Chen Jing", "chen.jing@example.com"),
    ("Sophie Martin", "sophie.martin@example.com"),
    ("Wang Fang", "wang.fang@example.com"),
    ("Raj Patel", "raj.patel@example.com"),
)

REGIONS = np.array(["East China", "North China", "South China", "APAC", "EMEA"])
INDUSTRIES = np.array([
    "Manufacturing", "Logistics", "Technology", "Healthcare",
    "Retail", "Energy", "Automotive", "Financial services",
])

# English names: prefix + core + legal suffix; the core word fixes the industry.
EN_PREFIXES = np.array([
    "Northwind", "Bluewater", "Summit", "Redwood", "Silverline", "Harbor", "Pioneer", "Evergreen",
    "Atlas", "Crescent", "Granite", "Meridian", "Apex", "Orion", "Falcon", "Beacon", "Cobalt",
    "Sterling", "Horizon", "Keystone", "Riverside", "Highland", "Lakeside", "Ironbridge",
    "Westbrook", "Clearwater", "Brightstone", "Oakridge", "Seaview", "Stonegate", "Windmill",
    "Goldcrest", "Blackwell", "Fairfield", "Kingsway", "Maplewood", "Vantage", "Zenith", "Polaris",
    "Trident",
])
EN_CORES = (
    ("Precision", 0), ("Manufacturing", 0), ("Components", 0), ("Logistics", 1), ("Freight", 1),
    ("Shipping", 1), ("Systems", 2), ("Software", 2), ("Networks", 2), ("Pharma", 3), ("Medical", 3),
    ("Foods", 4), ("Retail", 4), ("Energy", 5), ("Power", 5), ("Motors", 6), ("Automotive", 6),
    ("Capital", 7), ("Finance", 7),
)
EN_SUFFIXES = np.array(["Ltd", "Inc", "GmbH", "PLC", "Pte Ltd", "AG", "Group", "BV", "SA"])

# Chinese names: city + brand + business + 公司 form, e.g. 深圳云帆科技有限公司.
ZH_CITIES = (
    ("华东", 0), ("上海", 0), ("杭州", 0), ("苏州", 0), ("南京", 0), ("宁波", 0), ("无锡", 0),
    ("北京", 1), ("天津", 1), ("华北", 1), ("青岛", 1), ("石家庄", 1),
    ("深圳", 2), ("广州", 2), ("东莞", 2), ("佛山", 2), ("华南", 2), ("珠海", 2),
)
ZH_BRANDS = np.array([
    "精密", "云帆", "恒通", "华信", "远航", "金桥", "盛达", "鼎新", "瑞丰", "嘉禾", "天成", "新纪元",
    "宏图", "博远", "长青", "海川", "中科", "明德", "凯达", "星辰", "万达", "安泰", "启明", "东方",
])
ZH_BUSINESSES = (
    ("制造", 0), ("机械", 0), ("物流", 1), ("供应链", 1), ("科技", 2), ("信息技术", 2), ("医药", 3),
    ("生物", 3), ("商贸", 4), ("食品", 4), ("能源", 5), ("新能源", 5), ("汽车部件", 6),
    ("投资", 7),
)
ZH_SUFFIXES = np.array(["有限公司", "股份有限公司", "集团有限公司"])

EN_FIRST = np.array([
    "James", "Olivia", "Thomas", "Sarah", "Michael", "Laura", "David", "Anna", "Peter", "Julia",
    "Mark", "Claire", "Lukas", "Marie", "Ravi", "Priya", "Kenji", "Mei", "Hannah", "Oliver",
])
EN_LAST = np.array([
    "Smith", "Brown", "Müller", "Schmidt", "Dubois", "Rossi", "Tan", "Lim", "Kumar", "Sato",
    "Wilson", "Taylor", "Novak", "Jensen", "Garcia", "Fischer", "Wong", "Evans", "Berg", "Walker",
])
ZH_SURNAMES = np.array(list("王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高"))
ZH_GIVEN = np.array([
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英",
    "丽", "强", "平", "刚", "晨", "宇", "浩", "婷", "建国",
])

DEPARTMENTS = np.array(["Procurement", "IT", "Finance", "Operations", "Executive office", "R&D"])
DEPARTMENT_P = [0.25, 0.20, 0.15, 0.20, 0.05, 0.15]
SENIORITIES = np.array(["staff", "manager", "director", "executive"])
SENIORITY_P = [0.35, 0.35, 0.20, 0.10]
ROLES = np.array(["decision_maker", "influencer", "user"])
CHANNELS = np.array(["meeting", "call", "email", "visit", "review"])
CHANNEL_P = [0.20, 0.30, 0.35, 0.10, 0.05]
OPPORTUNITY_KINDS = np.array(["new", "renewal", "cross_sell", "upsell"])

PRIORITIES = np.array(["高", "中", "低"])
PRIORITY_P = [0.2, 0.5, 0.3]
SLA_HOURS = np.array([8, 24, 72])
FIRST_RESPONSE_MINUTES = np.array([45.0, 120.0, 300.0])  # median per priority
YES_NO = np.array(["否", "是"])
TICKET_COLUMNS = {
    "account_id": "客户编号", "ticket_id": "工单号", "opened_at": "创建时间", "first_response_at": "首次响应时间",
    "resolved_at": "解决时间", "is_complaint": "是否投诉", "priority": "优先级", "sla_hours": "SLA小时",
    "satisfaction": "满意度", "reopened": "重新打开",
}

# Survey comments by [language: en, zh][band: good, middling, bad][variant].
COMMENTS = np.array([
    [
        ["Great support from the account team", "Deliveries always on time", "Very responsive, thank you"],
        ["Good overall, pricing could be better", "Some delays this quarter", "Fine, documentation could improve"],
        ["Response times have become too slow", "Several issues still unresolved", "We are evaluating other suppliers"],
    ],
    [
        ["客户经理响应很及时", "交付准时，质量稳定", "服务专业，非常满意"],
        ["整体不错，价格偏高", "本季度有些交付延迟", "还可以，文档需要改进"],
        ["最近响应太慢", "多个问题迟迟没有解决", "正在评估其他供应商"],
    ],
])
# Score distributions (values, probabilities) for healthy and for unhappy respondents.
SCORES = {
    "nps": (np.arange(0, 11), [0, 0, 0, 0, 0, 0.02, 0.03, 0.10, 0.20, 0.35, 0.30]),
    "csat": (np.arange(1, 6), [0.01, 0.04, 0.10, 0.40, 0.45]),
    "ces": (np.arange(1, 8), [0.20, 0.35, 0.25, 0.12, 0.05, 0.02, 0.01]),
}
UNHAPPY_SCORES = {
    "nps": (np.arange(3, 8), [0.15, 0.25, 0.25, 0.25, 0.10]),
    "csat": (np.arange(1, 4), [0.30, 0.45, 0.25]),
    "ces": (np.arange(4, 8), [0.20, 0.30, 0.30, 0.20]),
}

MIN_ACCOUNTS, MIN_MONTHS = 12, 15
NO_CONTACT_DAYS = 75  # deteriorating accounts: last interaction at least this long before the end


@dataclass(frozen=True)
class _Calendar:
    """The `months` calendar months ending with `end`; date arrays are datetime64[D]."""

    months: np.ndarray      # datetime64[M], oldest first
    starts: np.ndarray      # first day of each month
    stops: np.ndarray       # first day of the next month (exclusive)
    month_of_year: np.ndarray  # 0 = January

    @classmethod
    def ending(cls, end: str, months: int) -> _Calendar:
        last = np.datetime64(end, "M")
        ms = last - np.arange(months - 1, -1, -1)
        return cls(ms, ms.astype("datetime64[D]"), (ms + 1).astype("datetime64[D]"), ms.astype(np.int64) % 12)

    @property
    def first_day(self) -> np.datetime64:
        return self.starts[0]

    @property
    def last_day(self) -> np.datetime64:
        return self.stops[-1] - 1

    @property
    def days(self) -> np.ndarray:
        return (self.stops - self.starts).astype(np.int64)

    def month_index(self, dates: np.ndarray) -> np.ndarray:
        return (dates.astype("datetime64[M]") - self.months[0]).astype(np.int64)


@dataclass(frozen=True)
class _Accounts:
    ids: np.ndarray
    tier: np.ndarray        # 0 strategic, 1 key, 2 growth
    role: np.ndarray        # HEALTHY, DETERIORATING, CHURNED, NEW
    since: np.ndarray       # datetime64[D]
    churned_on: np.ndarray  # datetime64[D], NaT when not churned
    zh: np.ndarray          # Chinese-speaking (name, contacts, comments)
    frame: pd.DataFrame     # accounts.csv

    @property
    def n(self) -> int:
        return len(self.ids)

    def with_role(self, role: int) -> np.ndarray:
        return np.flatnonzero(self.role == role)


# --------------------------------------------------------------------------- public entry point

def write_sample_data(
    data_dir: Path, accounts: int = 60, months: int = 24, seed: int = 7, end: str = "2026-10"
) -> dict:
    """Write the demo source files into `data_dir` and return (and write) the truth about them."""
    if accounts < MIN_ACCOUNTS:
        raise ValueError(f"accounts must be at least {MIN_ACCOUNTS}, got {accounts}")
    if months < MIN_MONTHS:
        raise ValueError(f"months must be at least {MIN_MONTHS} (12 months of history plus 3), got {months}")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", end):
        raise ValueError(f'end must be a month like "2026-10", got "{end}"')

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cal = _Calendar.ending(end, months)

    acc = _accounts(rng, accounts, cal)
    line_order = rng.permuted(np.tile(np.arange(len(PRODUCT_LINES)), (accounts, 1)), axis=1)
    lo, hi = _bounds(acc, cal)
    n_lines = rng.integers(PRODUCT_LINES_BOUGHT[acc.tier, 0], PRODUCT_LINES_BOUGHT[acc.tier, 1])
    contacts, c_start, c_count = _contacts(rng, acc)
    orders, order_dirt = _orders(rng, acc, cal, lo, hi, line_order, n_lines)
    tickets, ticket_dirt, ticket_grid = _tickets(rng, acc, cal, lo, hi)
    surveys = _surveys(rng, acc, cal, lo, hi, contacts, c_start, c_count)
    interactions = _interactions(rng, acc, cal, lo, hi, contacts, c_start, c_count)
    opportunities = _opportunities(rng, acc, cal, lo, hi, line_order, n_lines)
    costs = _costs(rng, acc, cal, lo, hi, ticket_grid)

    _write_csv(acc.frame, data_dir / "accounts.csv")
    _write_csv(orders, data_dir / "orders.csv")
    _write_xlsx(surveys, data_dir / "surveys.xlsx", "Surveys", f"{cal.last_day}T00:00:00Z")
    _write_csv(tickets, data_dir / "tickets_gbk.csv", encoding="gbk")
    pq.write_table(interactions, data_dir / "interactions.parquet")
    _write_csv(contacts.drop(columns="_account"), data_dir / "contacts.csv")
    _write_csv(opportunities, data_dir / "opportunities.csv")
    _write_csv(costs, data_dir / "costs.csv")

    truth = {
        "accounts": accounts,
        "months": months,
        "end": end,
        "deteriorating": sorted(acc.ids[acc.with_role(DETERIORATING)].tolist()),
        "churned": sorted(acc.ids[acc.with_role(CHURNED)].tolist()),
        "new": sorted(acc.ids[acc.with_role(NEW)].tolist()),
        "dirty_rows": sorted(order_dirt + ticket_dirt, key=lambda d: (d["file"], d["row"])),
        "row_counts": {
            "accounts": len(acc.frame), "orders": len(orders), "surveys": len(surveys),
            "tickets": len(tickets), "interactions": interactions.num_rows, "contacts": len(contacts),
            "opportunities": len(opportunities), "costs": len(costs),
        },
    }
    text = json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    (data_dir / "truth.json").write_text(text, encoding="utf-8")
    return truth


# --------------------------------------------------------------------------- grid helpers

def _bounds(acc: _Accounts, cal: _Calendar) -> tuple[np.ndarray, np.ndarray]:
    """First and last day (inclusive) each account is a customer inside the window."""
    lo = np.maximum(acc.since, cal.first_day)
    hi = np.where(acc.role == CHURNED, acc.churned_on - 1, cal.last_day)
    return lo, hi


def _overlap(lo: np.ndarray, hi: np.ndarray, cal: _Calendar) -> tuple[np.ndarray, np.ndarray]:
    """Per account x month: first day inside [lo, hi] and number of such days (0 if none)."""
    start = np.maximum(cal.starts[None, :], lo[:, None])
    stop = np.minimum(cal.stops[None, :], hi[:, None] + 1)
    return start, np.maximum((stop - start).astype(np.int64), 0)


def _expand(rng, counts, start, length):
    """Turn per account x month event counts into (account, month, day) per event."""
    counts = np.where(length > 0, counts, 0)
    cell = np.repeat(np.arange(counts.size), counts.ravel())
    account, month = np.divmod(cell, counts.shape[1])
    offset = np.floor(rng.random(cell.size) * length.ravel()[cell]).astype(np.int64)
    return account, month, start.ravel()[cell] + offset


def _pick(rng, values: np.ndarray, p, size: int) -> np.ndarray:
    return values[rng.choice(len(values), size=size, p=p)]


def _iso(days: np.ndarray) -> np.ndarray:
    """datetime64[D] -> 'YYYY-MM-DD', NaT -> ''."""
    out = np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    return np.where(np.isnat(days), "", out)


def _stamp(minutes: np.ndarray) -> np.ndarray:
    """datetime64[m] -> 'YYYY-MM-DD HH:MM', NaT -> ''."""
    out = np.char.replace(np.datetime_as_string(minutes, unit="m"), "T", " ")
    return np.where(np.isnat(minutes), "", out)


def _money(values: np.ndarray, thousands: bool = False) -> list[str]:
    return [f"{v:,.2f}" for v in values] if thousands else [f"{v:.2f}" for v in values]


def _insert_rows(frame: pd.DataFrame, rows: list[tuple[int, dict]]) -> pd.DataFrame:
    """Insert each row before position `pos` of the original frame."""
    pieces, prev = [], 0
    for pos, row in sorted(rows, key=lambda r: r[0]):
        pieces += [frame.iloc[prev:pos], pd.DataFrame([row], columns=frame.columns)]
        prev = pos
    pieces.append(frame.iloc[prev:])
    return pd.concat(pieces, ignore_index=True)


def _dirt(frame: pd.DataFrame, file: str) -> list[dict]:
    """Rows marked dirty, numbered as in the file (header = row 1)."""
    marked = frame.index[frame["_problem"] != ""]
    return [
        {"file": file, "row": int(i) + 2, "column": frame.at[i, "_column"], "problem": frame.at[i, "_problem"]}
        for i in marked
    ]


# --------------------------------------------------------------------------- accounts and contacts

def _accounts(rng, n: int, cal: _Calendar) -> _Accounts:
    width = max(3, len(str(n + 1)))  # never reaches A999, which the dirty orders row uses
    ids = np.array([f"A{i:0{width}d}" for i in range(1, n + 1)])

    n_strategic = max(2, round(0.1 * n))
    n_key = max(2, round(0.3 * n))
    tier = np.repeat([STRATEGIC, KEY, GROWTH], [n_strategic, n_key, n - n_strategic - n_key])[rng.permutation(n)]

    role = np.full(n, HEALTHY)
    new = rng.choice(np.flatnonzero(tier == GROWTH), 3, replace=False)
    role[new] = NEW
    det = [rng.choice(np.flatnonzero(tier == STRATEGIC)), rng.choice(np.flatnonzero((tier == KEY) & (role == HEALTHY)))]
    role[det] = DETERIORATING
    role[rng.choice(np.flatnonzero((tier != STRATEGIC) & (role == HEALTHY)), 2, replace=False)] = DETERIORATING
    role[rng.choice(np.flatnonzero((tier != STRATEGIC) & (role == HEALTHY)))] = CHURNED

    since = cal.first_day - rng.integers(30, 8 * 365, n)
    # New accounts: one in each of the last three months, so at least one inside `end`.
    for k, a in enumerate(new):
        month = len(cal.months) - 1 - k
        since[a] = cal.starts[month] + rng.integers(0, 15)
    churned_on = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    churned_on[role == CHURNED] = cal.starts[-1] + rng.integers(4, 25)

    zh = np.zeros(n, dtype=bool)
    zh[rng.permutation(n)[: n // 2]] = True
    names, industry, region = np.empty(n, dtype=object), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    en_i, zh_i = np.flatnonzero(~zh), np.flatnonzero(zh)
    names[en_i], industry[en_i] = _english_names(rng, len(en_i))
    region[en_i] = rng.choice(len(REGIONS), len(en_i), p=[0.1, 0.1, 0.1, 0.35, 0.35])
    names[zh_i], industry[zh_i], region[zh_i] = _chinese_names(rng, len(zh_i))

    owner = rng.permutation(n) % len(OWNERS)
    frame = pd.DataFrame({
        "account_id": ids,
        "name": names.astype(str),
        "tier": TIERS[tier],
        "owner_email": np.array([o[1] for o in OWNERS])[owner],
        "owner_name": np.array([o[0] for o in OWNERS])[owner],
        "region": REGIONS[region],
        "industry": INDUSTRIES[industry],
        "since": _iso(since),
        "churned_on": _iso(churned_on),
    })
    return _Accounts(ids, tier, role, since, churned_on, zh, frame)


def _english_names(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique names: distinct (prefix, core) pairs first; repeats of a pair get another suffix."""
    pairs = rng.permutation(len(EN_PREFIXES) * len(EN_CORES))
    suffix0 = rng.integers(0, len(EN_SUFFIXES), len(pairs))
    i = np.arange(n)
    pair, lap = pairs[i % len(pairs)], i // len(pairs)
    prefix, core = np.divmod(pair, len(EN_CORES))
    suffix = (suffix0[i % len(pairs)] + lap) % len(EN_SUFFIXES)
    extra = lap // len(EN_SUFFIXES)  # only past 6,840 English names
    names = [
        f"{EN_PREFIXES[p]} {EN_CORES[c][0]} {EN_SUFFIXES[s]}" + (f" {x + 1}" if x else "")
        for p, c, s, x in zip(prefix, core, suffix, extra)
    ]
    return np.array(names, dtype=object), np.array([EN_CORES[c][1] for c in core])


def _chinese_names(rng, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs = rng.permutation(len(ZH_CITIES) * len(ZH_BRANDS))
    business = rng.integers(0, len(ZH_BUSINESSES), len(pairs))
    suffix0 = rng.choice(len(ZH_SUFFIXES), len(pairs), p=[0.7, 0.2, 0.1])
    i = np.arange(n)
    slot, lap = i % len(pairs), i // len(pairs)
    city, brand = np.divmod(pairs[slot], len(ZH_BRANDS))
    suffix = (suffix0[slot] + lap) % len(ZH_SUFFIXES)
    extra = lap // len(ZH_SUFFIXES)
    names = [
        f"{ZH_CITIES[c][0]}{ZH_BRANDS[b]}{ZH_BUSINESSES[bu][0]}{ZH_SUFFIXES[s]}" + (f"{x + 1}" if x else "")
        for c, b, bu, s, x in zip(city, brand, business[slot], suffix, extra)
    ]
    industry = np.array([ZH_BUSINESSES[bu][1] for bu in business[slot]])
    region = np.array([ZH_CITIES[c][1] for c in city])
    return np.array(names, dtype=object), industry, region


def _contacts(rng, acc: _Accounts) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    count = rng.integers(CONTACTS[acc.tier, 0], CONTACTS[acc.tier, 1])
    count[acc.role == NEW] = rng.integers(2, 4, (acc.role == NEW).sum())
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    total = int(count.sum())
    account = np.repeat(np.arange(acc.n), count)
    first = np.zeros(total, dtype=bool)
    first[start] = True

    department = _pick(rng, DEPARTMENTS, DEPARTMENT_P, total)
    seniority = _pick(rng, SENIORITIES, SENIORITY_P, total)
    # Each account's first contact is its decision maker (sponsor).
    department[first] = np.where(rng.random(acc.n) < 0.5, "Executive office", "Procurement")
    seniority[first] = np.where(rng.random(acc.n) < 0.5, "executive", "director")
    u = rng.random(total)
    senior = np.isin(seniority, ["director", "executive"])
    # Seniors decide or influence, managers influence or use, staff mostly use.
    junior_role = np.where(seniority == "manager", np.where(u < 0.6, 1, 2), np.where(u < 0.2, 1, 2))
    role = np.where(senior, np.where(u < 0.4, 0, 1), junior_role)
    role[first] = 0
    active = (rng.random(total) < 0.9) | first
    active[acc.role[account] == CHURNED] = False

    zh = acc.zh[account]
    en_name = np.char.add(np.char.add(_pick(rng, EN_FIRST, None, total), " "), _pick(rng, EN_LAST, None, total))
    zh_name = np.char.add(_pick(rng, ZH_SURNAMES, None, total), _pick(rng, ZH_GIVEN, None, total))
    width = max(4, len(str(total)))
    frame = pd.DataFrame({
        "account_id": acc.ids[account],
        "contact_id": [f"C{i:0{width}d}" for i in range(1, total + 1)],
        "name": np.where(zh, zh_name, en_name),
        "department": department,
        "seniority": seniority,
        "role": ROLES[role],
        "active": np.where(active, "true", "false"),
        "_account": account,
    })
    return frame, start, count


# --------------------------------------------------------------------------- orders

def _orders(rng, acc, cal, lo, hi, line_order, n_lines) -> tuple[pd.DataFrame, list[dict]]:
    n, m = acc.n, len(cal.months)
    churned = acc.with_role(CHURNED)
    # Orders of the churned account stop about four months before it churns.
    hi = hi.copy()
    hi[churned] = cal.stops[m - 5] - 1
    start, length = _overlap(lo, hi, cal)

    frequency = rng.lognormal(0, 0.2, n)
    lam = ORDERS_PER_MONTH[acc.tier][:, None] * frequency[:, None] * SEASON[cal.month_of_year][None, :]
    counts = rng.poisson(lam * length / cal.days[None, :])
    # Most months have an order even for small accounts.
    counts[(counts == 0) & (rng.random(counts.shape) < 0.85)] = 1
    counts[length == 0] = 0
    counts[churned, m - 5] = np.maximum(counts[churned, m - 5], 1)
    new = acc.with_role(NEW)
    since_month = cal.month_index(acc.since[new])
    counts[new, since_month] = np.maximum(counts[new, since_month], 1)

    prior = counts[:, m - 15 : m - 3].mean(axis=1)  # the 12 months before the last 3
    # Deteriorating: the last three months keep at most 20% of the usual frequency.
    for a in acc.with_role(DETERIORATING):
        allowed = int(np.floor(0.2 * 3 * prior[a]))
        counts[a, m - 3 :] = [(allowed + 1) // 2, allowed - (allowed + 1) // 2, 0]
    # Healthy: the last three months never look like a drop by accident.
    need = np.ceil(3 * prior).astype(np.int64)
    deficit = np.maximum(need - counts[:, m - 3 :].sum(axis=1), 0) * (acc.role == HEALTHY)
    counts[:, m - 2] += deficit // 2
    counts[:, m - 1] += deficit - deficit // 2

    account, month, day = _expand(rng, counts, start, length)
    size = ORDER_SIZE[acc.tier] * rng.lognormal(0, 0.35, n)
    growth = rng.uniform(-0.03, 0.15, n)
    amount = (
        size[account]
        * (1 + growth[account]) ** (month / 12)
        * (0.85 + 0.15 * SEASON[cal.month_of_year[month]])
        * rng.lognormal(0, 0.5, account.size)
    )
    amount = np.round(np.maximum(amount, 50.0), 2)
    pick = np.floor(rng.random(account.size) ** 1.6 * n_lines[account]).astype(np.int64)
    line = line_order[account, pick]
    margin = np.clip(LINE_MARGIN[line] + rng.normal(0, 0.04, account.size), 0.05, 0.85)
    cost = np.round(amount * (1 - margin), 2)

    order = np.lexsort((amount, account, day))
    account, day, amount, cost, line = account[order], day[order], amount[order], cost[order], line[order]
    iso = _iso(day)
    frame = pd.DataFrame({
        "customer_id": acc.ids[account],
        "order_no": "",
        "order_date": _day_first(iso),
        "net_amount": _money(amount, thousands=True),
        "cost": _money(cost),
        "product_line": PRODUCT_LINES[line],
        "_problem": "",
        "_column": "",
    })

    # Dirty rows, in the middle of the file, all on one healthy account (or an unknown one).
    rows = len(frame)
    healthy = acc.ids[rng.choice(acc.with_role(HEALTHY))]
    year = str(cal.months[-1].astype("datetime64[Y]"))

    def dirty(pos: int, column: str, problem: str, **values) -> tuple[int, dict]:
        row = frame.iloc[pos].to_dict() | {"customer_id": healthy, "_column": column, "_problem": problem}
        return pos, row | values

    frame = _insert_rows(frame, [
        dirty(int(rows * 0.35), "order_date", f"impossible date 31/02/{year}", order_date=f"31/02/{year}"),
        dirty(int(rows * 0.45), "net_amount", "negative net_amount",
              net_amount="-" + frame.at[int(rows * 0.45), "net_amount"]),
        dirty(int(rows * 0.55), "customer_id", "unknown account A999", customer_id="A999"),
    ])
    frame["order_no"] = [f"SO-{i:06d}" for i in range(1, len(frame) + 1)]
    # A second export of an existing order: same order_no, same content.
    original = int(rows * 0.25)
    copy = frame.iloc[original].to_dict() | {
        "_column": "order_no",
        "_problem": f"duplicate order_no {frame.at[original, 'order_no']} (first in row {original + 2})",
    }
    frame = _insert_rows(frame, [(int(len(frame) * 0.65), copy)])
    return frame.drop(columns=["_problem", "_column"]), _dirt(frame, "orders.csv")


def _day_first(iso: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DD' -> 'DD/MM/YYYY', vectorised over the characters."""
    c = iso.astype("U10").view("<U1").reshape(len(iso), 10)
    slash = np.full((len(iso), 1), "/")
    return np.hstack([c[:, 8:10], slash, c[:, 5:7], slash, c[:, 0:4]]).copy().view("<U10").ravel()


# --------------------------------------------------------------------------- tickets

def _tickets(rng, acc, cal, lo, hi) -> tuple[pd.DataFrame, list[dict], np.ndarray]:
    n, m = acc.n, len(cal.months)
    last = cal.last_day
    start, length = _overlap(lo, hi, cal)
    lam = np.repeat(TICKETS_PER_MONTH[acc.tier][:, None], m, axis=1)
    lam[acc.role == DETERIORATING, m - 3 :] *= 2
    counts = rng.poisson(lam * length / cal.days[None, :])
    account, _, day = _expand(rng, counts, start, length)
    forced = np.zeros(account.size, dtype=bool)

    # Deteriorating: one complaint in the prior 90 days, four in the last 90 (4x).
    extra_account, extra_day = [], []
    for a in acc.with_role(DETERIORATING):
        extra_account += [a] * 5
        extra_day += [last - rng.integers(100, 170)] + list(last - rng.integers(3, 80, 4))
    # The churned account complained a few months before leaving.
    for a in acc.with_role(CHURNED):
        extra_account += [a, a]
        extra_day += list(cal.starts[m - 5] + rng.integers(0, 50, 2))
    account = np.concatenate([account, np.array(extra_account, dtype=np.int64)])
    day = np.concatenate([day, np.array(extra_day, dtype="datetime64[D]")])
    forced = np.concatenate([forced, np.ones(len(extra_account), dtype=bool)])
    t = account.size

    opened = day.astype("datetime64[m]") + rng.integers(8 * 60, 19 * 60, t)
    last90 = day > last - 90
    prior90 = (day > last - 180) & ~last90
    role = acc.role[account]
    unhappy = (role == DETERIORATING) & last90

    complaint = rng.random(t) < 0.08
    complaint[(role == DETERIORATING) & (last90 | prior90)] = False
    complaint |= forced
    # Everyone else: complaints in the last 90 days never outnumber those of the prior 90.
    calm = (role == HEALTHY) | (role == NEW)
    prior_count = np.bincount(account[complaint & prior90 & calm], minlength=n)
    recent = np.flatnonzero(complaint & last90 & calm)
    recent = recent[np.lexsort((opened[recent], account[recent]))]
    rank = pd.Series(account[recent]).groupby(account[recent]).cumcount().to_numpy()
    complaint[recent[rank >= prior_count[account[recent]]]] = False

    priority = rng.choice(3, t, p=PRIORITY_P)
    sla = SLA_HOURS[priority].astype(float)
    sla[(priority == 2) & (rng.random(t) < 0.15)] = np.nan  # some low-priority tickets carry no SLA
    slow = np.where(unhappy, 3.0, 1.0)
    first_minutes = np.round(rng.lognormal(np.log(FIRST_RESPONSE_MINUTES[priority] * slow), 0.8)).astype(np.int64) + 1
    resolve_median = SLA_HOURS[priority] * np.where(unhappy, 1.3, 0.5) * 60
    resolve_minutes = np.round(rng.lognormal(np.log(resolve_median), 0.7)).astype(np.int64)
    first_response = opened + first_minutes
    resolved = first_response + resolve_minutes

    end_minute = (last + 1).astype("datetime64[m]") - 1
    open_still = (resolved > end_minute) | ((day > last - 14) & (rng.random(t) < 0.4))
    open_still |= unhappy & complaint & (rng.random(t) < 0.5)
    resolved = np.where(open_still, np.datetime64("NaT"), resolved)
    first_response = np.where(first_response > end_minute, np.datetime64("NaT"), first_response)

    answered = ~open_still & (rng.random(t) < 0.65)
    satisfaction = np.where(
        complaint | unhappy,
        rng.choice(5, t, p=[0.25, 0.35, 0.25, 0.10, 0.05]),
        rng.choice(5, t, p=[0.02, 0.05, 0.15, 0.43, 0.35]),
    ) + 1
    reopened = ~open_still & (rng.random(t) < np.where(unhappy, 0.3, 0.05))

    order = np.lexsort((account, opened))
    frame = pd.DataFrame({
        "account_id": acc.ids[account],
        "ticket_id": "",
        "opened_at": _stamp(opened),
        "first_response_at": _stamp(first_response),
        "resolved_at": _stamp(resolved),
        "is_complaint": YES_NO[complaint.astype(int)],
        "priority": PRIORITIES[priority],
        "sla_hours": np.where(np.isnan(sla), "", np.nan_to_num(sla).astype(np.int64).astype(str)),
        "satisfaction": np.where(answered, satisfaction.astype(str), ""),
        "reopened": YES_NO[reopened.astype(int)],
        "_problem": "",
        "_column": "",
    }).iloc[order].reset_index(drop=True)

    grid = np.zeros((n, m), dtype=np.int64)
    np.add.at(grid, (account, cal.month_index(day)), 1)

    pos = len(frame) // 2
    healthy = acc.ids[rng.choice(acc.with_role(HEALTHY))]
    row = frame.iloc[pos].to_dict() | {
        "account_id": healthy, "opened_at": "not a date",
        "_column": TICKET_COLUMNS["opened_at"], "_problem": "opened_at is not a date",
    }
    frame = _insert_rows(frame, [(pos, row)])
    frame["ticket_id"] = [f"T-{i:06d}" for i in range(1, len(frame) + 1)]
    dirt = _dirt(frame, "tickets_gbk.csv")
    return frame.drop(columns=["_problem", "_column"]).rename(columns=TICKET_COLUMNS), dirt, grid


# --------------------------------------------------------------------------- surveys

def _surveys(rng, acc, cal, lo, hi, contacts, c_start, c_count) -> pd.DataFrame:
    n, m = acc.n, len(cal.months)
    last = cal.last_day
    start, length = _overlap(lo, hi, cal)
    # Roughly quarterly waves, each account on its own phase.
    phase = rng.integers(0, 3, n)
    wave = ((np.arange(m)[None, :] + phase[:, None]) % 3 == 0).astype(np.int64)
    w_account, _, w_day = _expand(rng, wave, start, length)
    w_tier = acc.tier[w_account]
    respondents = np.minimum(rng.integers(RESPONDENTS[w_tier, 0], RESPONDENTS[w_tier, 1]), c_count[w_account])
    first_respondent = rng.integers(0, c_count[w_account])

    wave_of = np.repeat(np.arange(w_account.size), respondents)
    j = np.arange(wave_of.size) - np.repeat(np.cumsum(respondents) - respondents, respondents)
    account = w_account[wave_of]
    contact = c_start[account] + (first_respondent[wave_of] + j) % c_count[account]
    day = np.minimum(w_day[wave_of] + rng.integers(0, 10, wave_of.size), hi[account])

    csat = rng.random(wave_of.size) < 0.7
    ces = (j == 0) & (rng.random(wave_of.size) < 0.6)
    kind = np.concatenate([np.full(wave_of.size, "nps"), np.full(csat.sum(), "csat"), np.full(ces.sum(), "ces")])
    account = np.concatenate([account, account[csat], account[ces]])
    contact = np.concatenate([contact, contact[csat], contact[ces]])
    day = np.concatenate([day, day[csat], day[ces]])

    # Deteriorating: a detractor from the sponsor in the last 90 days.
    det = acc.with_role(DETERIORATING)
    kind = np.concatenate([kind, np.full(det.size, "nps")])
    account = np.concatenate([account, det])
    contact = np.concatenate([contact, c_start[det]])
    day = np.concatenate([day, last - rng.integers(10, 40, det.size)])

    role = acc.role[account]
    unhappy = ((role == DETERIORATING) & (day > last - 90)) | ((role == CHURNED) & (day > last - 240))
    score = np.zeros(kind.size, dtype=np.int64)
    for name in ("nps", "csat", "ces"):
        rows = kind == name
        values, p = SCORES[name]
        score[rows] = _pick(rng, values, p, rows.sum())
        rows_unhappy = rows & unhappy
        values, p = UNHAPPY_SCORES[name]
        score[rows_unhappy] = _pick(rng, values, p, rows_unhappy.sum())
    score[-det.size :] = rng.integers(2, 7, det.size)
    # Healthy and new accounts have no detractor in the last 90 days.
    calm_recent = ((role == HEALTHY) | (role == NEW)) & (day > last - 90) & (kind == "nps")
    score[calm_recent] = np.maximum(score[calm_recent], 7)

    band = np.select(
        [kind == "nps", kind == "csat"],
        [np.digitize(score, [7, 9]), np.digitize(score, [3, 4])],
        np.digitize(score, [3, 5]),
    )
    band = np.where(kind == "ces", band, 2 - band)  # 0 good, 1 middling, 2 bad
    comment = COMMENTS[acc.zh[account].astype(int), band, rng.integers(0, 3, kind.size)]
    comment = np.where(rng.random(kind.size) < 0.5, comment, None)

    order = np.lexsort((kind, contact, account, day))
    return pd.DataFrame({
        "account_id": acc.ids[account],
        "date": pd.to_datetime(day).astype("datetime64[ns]"),
        "kind": kind,
        "score": score,
        "respondent": contacts["name"].to_numpy()[contact],
        "comment": comment,
    }).iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------- interactions

def _interactions(rng, acc, cal, lo, hi, contacts, c_start, c_count) -> pa.Table:
    m = len(cal.months)
    hi = hi.copy()
    hi[acc.role == DETERIORATING] = cal.last_day - NO_CONTACT_DAYS
    hi[acc.role == CHURNED] = acc.churned_on[acc.role == CHURNED] - 45
    start, length = _overlap(lo, hi, cal)
    full = length == cal.days[None, :]
    lam = INTERACTIONS_PER_MONTH[acc.tier][:, None] * length / cal.days[None, :]
    big = (acc.tier != GROWTH)[:, None] & full
    # Strategic and key accounts: at least two touches in every full month.
    counts = np.where(big, 2 + rng.poisson(np.maximum(lam - 2, 0)), rng.poisson(lam))
    # Everyone still in good standing was contacted in the last two months.
    calm = (acc.role == HEALTHY) | (acc.role == NEW)
    recent = calm[:, None] & (np.arange(m) >= m - 2)[None, :] & (length > 0)
    counts[recent] = np.maximum(counts[recent], 1)
    new = acc.with_role(NEW)
    since_month = cal.month_index(acc.since[new])
    counts[new, since_month] = np.maximum(counts[new, since_month], 1)

    account, _, day = _expand(rng, counts, start, length)
    contact = c_start[account] + np.floor(rng.random(account.size) * c_count[account]).astype(np.int64)
    channel = _pick(rng, CHANNELS, CHANNEL_P, account.size)
    order = np.lexsort((channel, contact, account, day))
    account, day, contact, channel = account[order], day[order], contact[order], channel[order]
    return pa.table({
        "account_id": pa.array(acc.ids[account], pa.string()),
        "date": pa.array(day, pa.date32()),
        "channel": pa.array(channel, pa.string()),
        "contact_id": pa.array(contacts["contact_id"].to_numpy()[contact], pa.string()),
        "department": pa.array(contacts["department"].to_numpy()[contact], pa.string()),
        "seniority": pa.array(contacts["seniority"].to_numpy()[contact], pa.string()),
    })


# --------------------------------------------------------------------------- opportunities

def _opportunities(rng, acc, cal, lo, hi, line_order, n_lines) -> pd.DataFrame:
    last = cal.last_day
    hi = hi.copy()
    hi[acc.role == CHURNED] -= 30
    span = (hi - lo).astype(np.int64) + 1
    count = rng.poisson(OPPORTUNITIES_PER_YEAR[acc.tier] * span / 365)
    account = np.repeat(np.arange(acc.n), count)
    created = lo[account] + np.floor(rng.random(account.size) * span[account]).astype(np.int64)
    kind = rng.choice([1, 2, 3], account.size, p=[0.3, 0.35, 0.35])
    # Cross-sell offers a line the account does not buy yet (whitespace) when there is one.
    owned = np.floor(rng.random(account.size) * n_lines[account]).astype(np.int64)
    whitespace = len(PRODUCT_LINES) - n_lines[account]
    other = n_lines[account] + np.floor(rng.random(account.size) * whitespace).astype(np.int64)
    pick = np.where((kind == 2) & (whitespace > 0), other, owned)

    # New accounts: the won "new" deal that made them customers.
    new = acc.with_role(NEW)
    account = np.concatenate([account, new])
    created = np.concatenate([created, acc.since[new] - rng.integers(30, 90, new.size)])
    kind = np.concatenate([kind, np.zeros(new.size, dtype=np.int64)])
    pick = np.concatenate([pick, np.zeros(new.size, dtype=np.int64)])
    closed = created + rng.integers(14, 150, account.size)
    closed[-new.size :] = acc.since[new] - 1

    still_open = closed > last
    p_win = np.where((acc.role[account] == DETERIORATING) & (created > last - 180), 0.2, 0.55)
    won = (rng.random(account.size) < p_win) | (kind == 0)
    status = np.where(still_open, "open", np.where(won, "won", "lost"))
    amount = np.round(OPPORTUNITY_SIZE[acc.tier[account]] * rng.lognormal(0, 0.5, account.size) / 100) * 100

    order = np.lexsort((amount, account, created))
    account, created, closed, still_open = account[order], created[order], closed[order], still_open[order]
    width = max(5, len(str(account.size)))
    return pd.DataFrame({
        "opportunity_id": [f"OP-{i:0{width}d}" for i in range(1, account.size + 1)],
        "account_id": acc.ids[account],
        "created_at": _iso(created),
        "closed_at": np.where(still_open, "", _iso(closed)),
        "status": status[order],
        "amount": _money(amount[order]),
        "kind": OPPORTUNITY_KINDS[kind[order]],
        "product_line": PRODUCT_LINES[line_order[account, pick[order]]],
    })


# --------------------------------------------------------------------------- costs

def _costs(rng, acc, cal, lo, hi, ticket_grid) -> pd.DataFrame:
    n, m = acc.n, len(cal.months)
    _, length = _overlap(lo, hi, cal)
    active = length > 0
    a, k = np.nonzero(active)
    retention = RETENTION_COST[acc.tier[a]] * rng.lognormal(0, 0.2, a.size)
    service = SERVICE_COST[acc.tier[a]] * rng.lognormal(0, 0.2, a.size) + 180.0 * ticket_grid[a, k]

    new_per_month = np.bincount(cal.month_index(acc.since[acc.with_role(NEW)]), minlength=m)
    acq = np.flatnonzero(new_per_month)
    acquisition = 22_000.0 * new_per_month[acq] * rng.lognormal(0, 0.15, acq.size)
    marketing = 350.0 * n * SEASON[cal.month_of_year] * rng.lognormal(0, 0.1, m)
    sales = 800.0 * n * rng.lognormal(0, 0.1, m)

    frame = pd.DataFrame({
        "date": _iso(np.concatenate([cal.starts[k], cal.starts[k], cal.starts[acq], cal.starts, cal.starts])),
        "category": np.concatenate([
            np.full(a.size, "retention"), np.full(a.size, "service"), np.full(acq.size, "acquisition"),
            np.full(m, "marketing"), np.full(m, "sales"),
        ]),
        "amount": _money(np.round(np.concatenate([retention, service, acquisition, marketing, sales]), 2)),
        "account_id": np.concatenate([acc.ids[a], acc.ids[a], np.full(acq.size + 2 * m, "")]),
    })
    return frame.sort_values(["date", "category", "account_id"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- writers

def _write_csv(frame: pd.DataFrame, path: Path, encoding: str = "utf-8") -> None:
    frame.to_csv(path, index=False, encoding=encoding, lineterminator="\n")


def _write_xlsx(frame: pd.DataFrame, path: Path, sheet: str, stamp: str) -> None:
    """Stream the frame into a one-sheet workbook (openpyxl write-only: pandas' to_excel is
    several times slower), then pin the zip's timestamps so the bytes repeat."""
    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet(sheet)
    ws.append(list(frame.columns))
    columns = [
        [d.date() for d in col] if pd.api.types.is_datetime64_any_dtype(col)
        else [None if v is None or v != v else v for v in col.tolist()]
        for _, col in frame.items()
    ]
    for row in zip(*columns):
        ws.append(row)  # datetime.date cells get the yyyy-mm-dd number format: real Excel dates
    raw = io.BytesIO()
    book.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    path.write_bytes(out.getvalue())
