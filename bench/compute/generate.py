"""Seeded synthetic data for the compute benchmark: Parquet files with canonical column names,
plus a project directory (configs/) whose sources read them, so `load_project` works on it.

Sizes default to the issue's: 10,000 accounts, 10,000,000 order lines over the 36 months ending
2026-10, 1,000,000 interactions, 300,000 tickets, 200,000 surveys, 100,000 contacts,
100,000 opportunities, plus per-account monthly costs. Row counts are exact: event totals are
spread over account x month cells with a multinomial, in proportion to an intensity that
depends on tier (strategic / key / growth), a skewed per-account factor, the season and the
account's lifecycle (new accounts start inside the window, churned ones stop, deteriorating
ones fade over the last six months).

Every event entity is written one month at a time (one row group per month, rows sorted by
date), so memory stays bounded by a month of the largest entity. Each month draws from its
own generator seeded by (seed, entity, month): same seed and sizes, same files.

A stamp file records seed, sizes and generator version; when it matches and every file
exists, nothing is regenerated.

    python -m bench.compute.generate [--scale 0.1] [--accounts N] [--orders N] [--seed S]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reporter.sample.data import (
    CHANNEL_P, CHANNELS, DEPARTMENTS, EN_CORES, EN_PREFIXES, EN_SUFFIXES, INDUSTRIES, LINE_MARGIN,
    PRODUCT_LINES, REGIONS, ROLES, SCORES, SEASON, SENIORITIES, SENIORITY_P, UNHAPPY_SCORES,
)

GENERATOR_VERSION = 1
END = "2026-10"
MONTHS = 36
BENCH_DIR = Path(__file__).resolve().parents[1]
DATA_ROOT = BENCH_DIR / "data"
EXAMPLE_CONFIGS = BENCH_DIR.parent / "configs"
ENTITY_NAMES = ("accounts", "contacts", "orders", "interactions", "tickets", "surveys", "opportunities", "costs")

TIERS = np.array(["strategic", "key", "growth"])
TIER_SHARE = (0.10, 0.30)                          # strategic, key; the rest is growth
# Relative intensities per tier (strategic, key, growth).
ORDER_RATE = np.array([10.0, 3.0, 1.0])
LINE_SIZE = np.array([4_500.0, 1_500.0, 600.0])    # mean order-line amount
INTERACTION_RATE = np.array([5.0, 3.0, 1.2])
TICKET_RATE = np.array([2.5, 1.2, 0.4])
SURVEY_RATE = np.array([4.0, 2.0, 0.7])
OPPORTUNITY_RATE = np.array([5.0, 3.0, 1.5])
OPPORTUNITY_SIZE = np.array([120_000.0, 40_000.0, 12_000.0])
CONTACT_RATE = np.array([4.0, 2.0, 1.0])
RETENTION_COST = np.array([2_500.0, 900.0, 250.0])
SERVICE_COST = np.array([1_200.0, 400.0, 100.0])
OWNERS = 60

# Account roles.
HEALTHY, DETERIORATING, CHURNED, NEW = 0, 1, 2, 3
ROLE_SHARE = {CHURNED: 0.06, NEW: 0.08, DETERIORATING: 0.05}

PRIORITIES = np.array(["high", "medium", "low"])
PRIORITY_P = [0.15, 0.45, 0.40]
SLA_HOURS = np.array([8.0, 24.0, 72.0])
FIRST_RESPONSE_MINUTES = np.array([45.0, 120.0, 300.0])
SURVEY_KINDS = np.array(["nps", "csat", "ces"])
SURVEY_KIND_P = [0.55, 0.35, 0.10]
SURVEY_COMMENTS = np.array([
    "Great support from the account team", "Delivery was late twice this quarter", "Pricing is hard to follow",
    "Very responsive, thank you", "The new portal is confusing", "服务响应及时", "交付周期太长", "产品质量稳定",
])
OPPORTUNITY_KINDS = np.array(["new", "renewal", "cross_sell", "upsell"])
OPPORTUNITY_KIND_P = [0.10, 0.35, 0.30, 0.25]
FIRST_NAMES = np.array(["James", "Olivia", "Thomas", "Sarah", "Wei", "Min", "Jing", "Lukas", "Priya", "Kenji"])
LAST_NAMES = np.array(["Smith", "Brown", "Müller", "Tan", "Wang", "Li", "Zhang", "Kumar", "Sato", "Dubois"])


@dataclass(frozen=True)
class Sizes:
    accounts: int = 10_000
    orders: int = 10_000_000
    interactions: int = 1_000_000
    tickets: int = 300_000
    surveys: int = 200_000
    contacts: int = 100_000
    opportunities: int = 100_000

    def scaled(self, factor: float) -> Sizes:
        return Sizes(**{k: max(1, round(v * factor)) for k, v in asdict(self).items()})


def sizes_from(scale: float = 1.0, accounts: int | None = None, orders: int | None = None) -> Sizes:
    sizes = Sizes().scaled(scale) if scale != 1.0 else Sizes()
    if accounts is not None:
        sizes = replace(sizes, accounts=accounts)
    if orders is not None:
        sizes = replace(sizes, orders=orders)
    if sizes.accounts < 100:
        raise SystemExit(f"--accounts must be at least 100, got {sizes.accounts}")
    if sizes.contacts < sizes.accounts:
        sizes = replace(sizes, contacts=sizes.accounts)  # every account has a contact
    return sizes


def project_dir(sizes: Sizes, seed: int) -> Path:
    """bench/data/compute for the default sizes and seed; a directory named after them otherwise."""
    if sizes == Sizes() and seed == 0:
        return DATA_ROOT / "compute"
    return DATA_ROOT / f"compute_{sizes.accounts}a_{sizes.orders}o_seed{seed}"


# --------------------------------------------------------------------------- calendar and accounts

@dataclass(frozen=True)
class Calendar:
    months: np.ndarray   # datetime64[M], oldest first
    starts: np.ndarray   # datetime64[D], first day of each month
    stops: np.ndarray    # datetime64[D], first day of the next month

    @classmethod
    def ending(cls, end: str, months: int) -> Calendar:
        ms = np.datetime64(end, "M") - np.arange(months - 1, -1, -1)
        return cls(ms, ms.astype("datetime64[D]"), (ms + 1).astype("datetime64[D]"))

    @property
    def days(self) -> np.ndarray:
        return (self.stops - self.starts).astype(np.int64)

    @property
    def season(self) -> np.ndarray:
        return SEASON[self.months.astype(np.int64) % 12]


@dataclass(frozen=True)
class Accounts:
    ids: pa.Array            # string
    tier: np.ndarray         # 0 strategic, 1 key, 2 growth
    role: np.ndarray
    since: np.ndarray        # datetime64[D]
    churned_on: np.ndarray   # datetime64[D], NaT if not churned
    skew: np.ndarray         # per-account activity factor (lognormal: a few accounts dominate)
    size: np.ndarray         # per-account order-size factor
    n_lines: np.ndarray      # product lines the account buys
    line_order: np.ndarray   # (n, 6) the account's product lines, most bought first
    start: np.ndarray        # (n, months) first active day in the month
    length: np.ndarray       # (n, months) active days in the month (0: not a customer)

    @property
    def n(self) -> int:
        return len(self.tier)


def make_accounts(rng: np.random.Generator, n: int, cal: Calendar) -> tuple[Accounts, pa.Table]:
    n_strategic, n_key = round(TIER_SHARE[0] * n), round(TIER_SHARE[1] * n)
    tier = np.repeat([0, 1, 2], [n_strategic, n_key, n - n_strategic - n_key])[rng.permutation(n)]
    role = np.full(n, HEALTHY)
    order = rng.permutation(n)
    cut = np.cumsum([round(ROLE_SHARE[r] * n) for r in (CHURNED, NEW, DETERIORATING)])
    role[order[: cut[0]]] = CHURNED
    role[order[cut[0] : cut[1]]] = NEW
    role[order[cut[1] : cut[2]]] = DETERIORATING

    first, last = cal.starts[0], cal.stops[-1] - 1
    span = int((last - first).astype(np.int64))
    since = first - rng.integers(30, 10 * 365, n)
    is_new = role == NEW
    since[is_new] = first + rng.integers(0, span, is_new.sum())
    churned_on = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    is_churned = role == CHURNED
    churned_on[is_churned] = first + rng.integers(90, span + 1, is_churned.sum())

    # Active days per account x month: [max(since, month start), min(churned_on, month stop)).
    lo = np.maximum(since, first)
    hi = np.where(is_churned, churned_on, cal.stops[-1])
    start = np.maximum(cal.starts[None, :], lo[:, None])
    stop = np.minimum(cal.stops[None, :], hi[:, None])
    length = np.maximum((stop - start).astype(np.int64), 0)

    width = max(5, len(str(n)))
    ids = _ids("A", np.arange(1, n + 1), width)
    industry = rng.integers(0, len(INDUSTRIES), n)
    core = rng.integers(0, len(EN_CORES), n)
    names = pc.binary_join_element_wise(
        pa.array(EN_PREFIXES[rng.integers(0, len(EN_PREFIXES), n)]),
        pa.array(np.array([c for c, _ in EN_CORES])[core]),
        pa.array(EN_SUFFIXES[rng.integers(0, len(EN_SUFFIXES), n)]),
        pc.cast(pa.array(np.arange(1, n + 1)), pa.string()),
        " ",
    )
    owner = rng.integers(0, OWNERS, n)
    owner_ids = _ids("", owner + 1, 2)
    table = pa.table({
        "account_id": ids,
        "name": names,
        "tier": pa.array(TIERS[tier]),
        "owner_email": pc.binary_join_element_wise("owner", owner_ids, "@example.com", ""),
        "owner_name": pc.binary_join_element_wise("Owner", owner_ids, " "),
        "region": pa.array(REGIONS[rng.integers(0, len(REGIONS), n)]),
        "industry": pa.array(INDUSTRIES[industry]),
        "since": pa.array(since, pa.date32()),
        "churned_on": pa.array(churned_on, pa.date32()),
    })
    n_lines = rng.integers(np.array([3, 2, 1])[tier], np.array([7, 6, 4])[tier])
    line_order = rng.permuted(np.tile(np.arange(len(PRODUCT_LINES)), (n, 1)), axis=1)
    accounts = Accounts(ids, tier, role, since, churned_on, rng.lognormal(0, 0.9, n), rng.lognormal(0, 0.35, n),
                        n_lines, line_order, start, length)
    return accounts, table


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, text, "") if prefix else text


# --------------------------------------------------------------------------- events per month

def intensity(acc: Accounts, cal: Calendar, rate: np.ndarray, skew_power: float, fade: float) -> np.ndarray:
    """(accounts, months) expected share of events: tier rate x skew x season x active days,
    with deteriorating accounts fading to ``fade`` of their level over the last six months."""
    w = rate[acc.tier][:, None] * acc.skew[:, None] ** skew_power * cal.season[None, :]
    w = w * acc.length / cal.days[None, :]
    m = len(cal.months)
    ramp = np.ones(m)
    ramp[m - 6 :] = np.linspace(1.0, fade, 6)
    w[acc.role == DETERIORATING] *= ramp
    return w


def month_counts(rng: np.random.Generator, weights: np.ndarray, total: int) -> np.ndarray:
    """Exactly ``total`` events over the account x month cells, in proportion to ``weights``."""
    per_month = rng.multinomial(total, weights.sum(axis=0) / weights.sum())
    counts = np.zeros(weights.shape, dtype=np.int64)
    for m, k in enumerate(per_month):
        if k:
            column = weights[:, m]
            counts[:, m] = rng.multinomial(k, column / column.sum())
    return counts


def expand(rng: np.random.Generator, acc: Accounts, counts: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(account index, day) of every event of month ``m``, sorted by day then account."""
    account = np.repeat(np.arange(acc.n), counts[:, m])
    day = acc.start[account, m] + np.floor(rng.random(account.size) * acc.length[account, m]).astype(np.int64)
    order = np.lexsort((account, day))
    return account[order], day[order]


class Writer:
    """One Parquet file per entity, appended one month (one row group) at a time."""

    def __init__(self, path: Path):
        self.path, self.writer, self.rows = path, None, 0

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _rng(seed: int, entity: str, month: int = -1) -> np.random.Generator:
    return np.random.default_rng([seed, ENTITY_NAMES.index(entity), month + 1])


# --------------------------------------------------------------------------- entities

def write_contacts(seed: int, acc: Accounts, total: int, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contacts sorted by account; returns (first contact index, count) per account and the names."""
    rng = _rng(seed, "contacts")
    weights = CONTACT_RATE[acc.tier] * acc.skew ** 0.3
    count = 1 + rng.multinomial(total - acc.n, weights / weights.sum())
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    account = np.repeat(np.arange(acc.n), count)
    seniority = rng.choice(len(SENIORITIES), total, p=SENIORITY_P)
    senior = seniority >= 2
    u = rng.random(total)
    role = np.where(senior, np.where(u < 0.4, 0, 1), np.where(u < 0.3, 1, 2))
    role[first] = 0  # every account has a decision maker
    active = (rng.random(total) < 0.9) & (acc.role[account] != CHURNED)
    names = pc.binary_join_element_wise(
        pa.array(FIRST_NAMES[rng.integers(0, len(FIRST_NAMES), total)]),
        pa.array(LAST_NAMES[rng.integers(0, len(LAST_NAMES), total)]), " ")
    departments = rng.integers(0, len(DEPARTMENTS), total)
    pq.write_table(pa.table({
        "account_id": acc.ids.take(pa.array(account)),
        "contact_id": _ids("C", np.arange(1, total + 1), max(7, len(str(total)))),
        "name": names,
        "department": pa.array(DEPARTMENTS[departments]),
        "seniority": pa.array(SENIORITIES[seniority]),
        "role": pa.array(ROLES[role]),
        "active": pa.array(active),
    }), path)
    return first, count, (names, departments, seniority)


def write_orders(seed: int, acc: Accounts, cal: Calendar, total: int, path: Path) -> None:
    counts = month_counts(_rng(seed, "orders"), intensity(acc, cal, ORDER_RATE, 1.0, 0.25), total)
    out, done = Writer(path), 0
    width = max(9, len(str(total)))
    for m in range(len(cal.months)):
        rng = _rng(seed, "orders", m)
        account, day = expand(rng, acc, counts, m)
        k = account.size
        tier = acc.tier[account]
        amount = LINE_SIZE[tier] * acc.size[account] * (0.85 + 0.15 * cal.season[m]) * rng.lognormal(-0.245, 0.7, k)
        amount = np.round(np.maximum(amount, 5.0), 2)
        # Lines bought: most orders on the account's first lines, a tail on the others.
        pick = np.floor(rng.random(k) ** 1.6 * acc.n_lines[account]).astype(np.int64)
        line = acc.line_order[account, pick]
        margin = np.clip(LINE_MARGIN[line] + rng.normal(0, 0.05, k), 0.02, 0.9)
        out.write(pa.table({
            "order_id": _ids("O", np.arange(done + 1, done + k + 1), width),
            "account_id": acc.ids.take(pa.array(account)),
            "date": pa.array(day, pa.date32()),
            "amount": pa.array(amount),
            "cost": pa.array(np.round(amount * (1 - margin), 2)),
            "product_line": pa.array(PRODUCT_LINES[line]),
        }))
        done += k
    out.close()


def write_interactions(seed: int, acc: Accounts, cal: Calendar, total: int, contacts, path: Path) -> None:
    c_first, c_count, (_, c_department, c_seniority) = contacts
    weights = intensity(acc, cal, INTERACTION_RATE, 0.5, 0.0)
    # Churned accounts go quiet 45 days before they leave.
    quiet = (acc.role == CHURNED)[:, None] & (cal.stops[None, :] > (acc.churned_on - 45)[:, None])
    weights[quiet] = 0.0
    counts = month_counts(_rng(seed, "interactions"), weights, total)
    contact_ids = _ids("C", np.arange(1, int(c_count.sum()) + 1), max(7, len(str(int(c_count.sum())))))
    out = Writer(path)
    for m in range(len(cal.months)):
        rng = _rng(seed, "interactions", m)
        account, day = expand(rng, acc, counts, m)
        k = account.size
        contact = c_first[account] + np.floor(rng.random(k) * c_count[account]).astype(np.int64)
        out.write(pa.table({
            "account_id": acc.ids.take(pa.array(account)),
            "date": pa.array(day, pa.date32()),
            "channel": pa.array(CHANNELS[rng.choice(len(CHANNELS), k, p=CHANNEL_P)]),
            "contact_id": contact_ids.take(pa.array(contact)),
            "department": pa.array(DEPARTMENTS[c_department[contact]]),
            "seniority": pa.array(SENIORITIES[c_seniority[contact]]),
        }))
    out.close()


def write_tickets(seed: int, acc: Accounts, cal: Calendar, total: int, path: Path) -> np.ndarray:
    """Returns tickets per account x month (service costs follow them)."""
    counts = month_counts(_rng(seed, "tickets"), intensity(acc, cal, TICKET_RATE, 0.7, 2.0), total)
    end_minute = cal.stops[-1].astype("datetime64[m]")
    out, done = Writer(path), 0
    width = max(8, len(str(total)))
    for m in range(len(cal.months)):
        rng = _rng(seed, "tickets", m)
        account, day = expand(rng, acc, counts, m)
        k = account.size
        unhappy = (acc.role[account] == DETERIORATING) & (m >= len(cal.months) - 6)
        opened = day.astype("datetime64[m]") + rng.integers(8 * 60, 19 * 60, k)
        priority = rng.choice(3, k, p=PRIORITY_P)
        sla = SLA_HOURS[priority].copy()
        sla[(priority == 2) & (rng.random(k) < 0.15)] = np.nan
        slow = np.where(unhappy, 3.0, 1.0)
        first_response = opened + (np.round(rng.lognormal(np.log(FIRST_RESPONSE_MINUTES[priority] * slow), 0.8))
                                   .astype(np.int64) + 1)
        resolved = first_response + np.round(
            rng.lognormal(np.log(SLA_HOURS[priority] * np.where(unhappy, 1.3, 0.5) * 60), 0.7)).astype(np.int64)
        open_still = (resolved >= end_minute) | (rng.random(k) < 0.03)
        resolved = np.where(open_still, np.datetime64("NaT"), resolved)
        first_response = np.where(first_response >= end_minute, np.datetime64("NaT"), first_response)
        complaint = rng.random(k) < np.where(unhappy, 0.25, 0.08)
        answered = ~open_still & (rng.random(k) < 0.65)
        satisfaction = np.where(
            complaint | unhappy,
            rng.choice(5, k, p=[0.25, 0.35, 0.25, 0.10, 0.05]),
            rng.choice(5, k, p=[0.02, 0.05, 0.15, 0.43, 0.35]),
        ) + 1.0
        out.write(pa.table({
            "ticket_id": _ids("T", np.arange(done + 1, done + k + 1), width),
            "account_id": acc.ids.take(pa.array(account)),
            "opened_at": pa.array(opened.astype("datetime64[us]"), pa.timestamp("us")),
            "first_response_at": pa.array(first_response.astype("datetime64[us]"), pa.timestamp("us")),
            "resolved_at": pa.array(resolved.astype("datetime64[us]"), pa.timestamp("us")),
            "is_complaint": pa.array(complaint),
            "priority": pa.array(PRIORITIES[priority]),
            "sla_hours": pa.array(sla, from_pandas=True),
            "satisfaction": pa.array(np.where(answered, satisfaction, np.nan), from_pandas=True),
            "reopened": pa.array(~open_still & (rng.random(k) < np.where(unhappy, 0.3, 0.05))),
        }))
        done += k
    out.close()
    return counts


def write_surveys(seed: int, acc: Accounts, cal: Calendar, total: int, contacts, path: Path) -> None:
    c_first, c_count, (c_names, _, _) = contacts
    counts = month_counts(_rng(seed, "surveys"), intensity(acc, cal, SURVEY_RATE, 0.3, 1.0), total)
    out = Writer(path)
    last_months = len(cal.months) - 3
    for m in range(len(cal.months)):
        rng = _rng(seed, "surveys", m)
        account, day = expand(rng, acc, counts, m)
        k = account.size
        kind = rng.choice(3, k, p=SURVEY_KIND_P)
        role = acc.role[account]
        unhappy = ((role == DETERIORATING) & (m >= last_months)) | (
            (role == CHURNED) & (day > acc.churned_on[account] - 240))
        score = np.zeros(k)
        for i, name in enumerate(SURVEY_KINDS):
            for mood, table in ((False, SCORES), (True, UNHAPPY_SCORES)):
                rows = (kind == i) & (unhappy == mood)
                values, p = table[name]
                score[rows] = values[rng.choice(len(values), rows.sum(), p=p)]
        contact = c_first[account] + np.floor(rng.random(k) * c_count[account]).astype(np.int64)
        comment = np.where(rng.random(k) < 0.3, SURVEY_COMMENTS[rng.integers(0, len(SURVEY_COMMENTS), k)], None)
        out.write(pa.table({
            "account_id": acc.ids.take(pa.array(account)),
            "date": pa.array(day, pa.date32()),
            "kind": pa.array(SURVEY_KINDS[kind]),
            "score": pa.array(score),
            "respondent": c_names.take(pa.array(contact)),
            "comment": pa.array(comment, pa.string()),
        }))
    out.close()


def write_opportunities(seed: int, acc: Accounts, cal: Calendar, total: int, path: Path) -> None:
    counts = month_counts(_rng(seed, "opportunities"), intensity(acc, cal, OPPORTUNITY_RATE, 0.5, 0.5), total)
    last_day = cal.stops[-1] - 1
    out, done = Writer(path), 0
    width = max(7, len(str(total)))
    for m in range(len(cal.months)):
        rng = _rng(seed, "opportunities", m)
        account, created = expand(rng, acc, counts, m)
        k = account.size
        closed = created + rng.integers(14, 150, k)
        still_open = closed > last_day
        p_win = np.where(acc.role[account] == DETERIORATING, 0.25, 0.55)
        status = np.where(still_open, "open", np.where(rng.random(k) < p_win, "won", "lost"))
        line = acc.line_order[account, rng.integers(0, len(PRODUCT_LINES), k)]
        amount = np.round(OPPORTUNITY_SIZE[acc.tier[account]] * rng.lognormal(0, 0.5, k) / 100) * 100
        out.write(pa.table({
            "opportunity_id": _ids("OP", np.arange(done + 1, done + k + 1), width),
            "account_id": acc.ids.take(pa.array(account)),
            "created_at": pa.array(created, pa.date32()),
            "closed_at": pa.array(np.where(still_open, np.datetime64("NaT"), closed), pa.date32()),
            "status": pa.array(status),
            "amount": pa.array(amount),
            "kind": pa.array(OPPORTUNITY_KINDS[rng.choice(4, k, p=OPPORTUNITY_KIND_P)]),
            "product_line": pa.array(PRODUCT_LINES[line]),
        }))
        done += k
    out.close()


def write_costs(seed: int, acc: Accounts, cal: Calendar, ticket_counts: np.ndarray, path: Path) -> None:
    """Per active account x month a retention and a service cost; per month portfolio-level
    acquisition (for the accounts that joined), marketing and sales costs."""
    rng = _rng(seed, "costs")
    out = Writer(path)
    joined = np.bincount(
        ((acc.since[acc.role == NEW].astype("datetime64[M]") - cal.months[0]).astype(np.int64)),
        minlength=len(cal.months))
    for m in range(len(cal.months)):
        active = np.flatnonzero(acc.length[:, m] > 0)
        k = active.size
        tier = acc.tier[active]
        retention = RETENTION_COST[tier] * rng.lognormal(0, 0.2, k)
        service = SERVICE_COST[tier] * rng.lognormal(0, 0.2, k) + 180.0 * ticket_counts[active, m]
        portfolio = [
            ("acquisition", 22_000.0 * joined[m] * rng.lognormal(0, 0.15)),
            ("marketing", 35.0 * acc.n * cal.season[m] * rng.lognormal(0, 0.1)),
            ("sales", 80.0 * acc.n * rng.lognormal(0, 0.1)),
        ]
        portfolio = [(c, a) for c, a in portfolio if a > 0]
        ids = acc.ids.take(pa.array(active))
        out.write(pa.table({
            "date": pa.array(np.full(2 * k + len(portfolio), cal.starts[m]), pa.date32()),
            "category": pa.array(["retention"] * k + ["service"] * k + [c for c, _ in portfolio]),
            "amount": pa.array(np.round(np.concatenate([retention, service, [a for _, a in portfolio]]), 2)),
            "account_id": pa.concat_arrays([ids, ids, pa.nulls(len(portfolio), pa.string())]),
        }))
    out.close()


# --------------------------------------------------------------------------- the project

def write_project(root: Path) -> None:
    """configs/ of the bench project: the example project's kpis, tiers and reports, every source a Parquet file."""
    configs = root / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    for name in ("kpis.yaml", "tiers.yaml", "reports.yaml"):
        shutil.copyfile(EXAMPLE_CONFIGS / name, configs / name)
    (configs / "project.yaml").write_text(
        "name: Compute benchmark\n"
        "timezone: Asia/Shanghai\n"
        "locale: en\n"
        "currency: CNY\n"
        "fiscal_year_start: 1\n"
        "output_dir: output\n"
        "smtp:\n  transport: outbox\n  from: key-accounts@example.com\n"
        "admins:\n  - reporting-admin@example.com\n",
        encoding="utf-8",
    )
    sources = "".join(
        f"  {name}:\n    kind: parquet\n    entity: {name}\n    path: data/{name}.parquet\n" for name in ENTITY_NAMES
    )
    (configs / "sources.yaml").write_text("sources:\n" + sources, encoding="utf-8")


def stamp_for(sizes: Sizes, seed: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "end": END, "months": MONTHS, "sizes": asdict(sizes)}


def ensure_data(sizes: Sizes, seed: int, quiet: bool = False) -> tuple[Path, float | None]:
    """The bench project for these sizes and seed, generated unless its stamp matches.

    Returns (project directory, generation seconds or None when it was up to date)."""
    root = project_dir(sizes, seed)
    data = root / "data"
    stamp_path = data / "stamp.json"
    wanted = stamp_for(sizes, seed)
    files = [data / f"{name}.parquet" for name in ENTITY_NAMES]
    up_to_date = (
        stamp_path.is_file() and json.loads(stamp_path.read_text()) == wanted and all(f.is_file() for f in files)
    )
    write_project(root)  # cheap, and keeps the configs in step with the example project
    if up_to_date:
        return root, None
    started = time.perf_counter()
    stamp_path.unlink(missing_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    generate(data, sizes, seed, quiet)
    stamp_path.write_text(json.dumps(wanted, indent=2) + "\n")
    return root, time.perf_counter() - started


def generate(data: Path, sizes: Sizes, seed: int, quiet: bool = False) -> None:
    def step(name: str, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        if not quiet:
            print(f"  generated {name:<14} {time.perf_counter() - t0:6.1f} s", flush=True)
        return result

    cal = Calendar.ending(END, MONTHS)
    acc, accounts = make_accounts(_rng(seed, "accounts"), sizes.accounts, cal)
    pq.write_table(accounts, data / "accounts.parquet")
    contacts = step("contacts", write_contacts, seed, acc, sizes.contacts, data / "contacts.parquet")
    step("orders", write_orders, seed, acc, cal, sizes.orders, data / "orders.parquet")
    step("interactions", write_interactions, seed, acc, cal, sizes.interactions, contacts,
         data / "interactions.parquet")
    tickets = step("tickets", write_tickets, seed, acc, cal, sizes.tickets, data / "tickets.parquet")
    step("surveys", write_surveys, seed, acc, cal, sizes.surveys, contacts, data / "surveys.parquet")
    step("opportunities", write_opportunities, seed, acc, cal, sizes.opportunities, data / "opportunities.parquet")
    step("costs", write_costs, seed, acc, cal, tickets, data / "costs.parquet")


def add_size_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row count (0.1 for a quick run)")
    parser.add_argument("--accounts", type=int, help="number of accounts (after --scale)")
    parser.add_argument("--orders", type=int, help="number of order lines (after --scale)")
    parser.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compute.generate", description=__doc__.split("\n\n")[0])
    add_size_options(parser)
    args = parser.parse_args(argv)
    sizes = sizes_from(args.scale, args.accounts, args.orders)
    root, seconds = ensure_data(sizes, args.seed)
    if seconds is None:
        print(f"data up to date in {root} (seed {args.seed}); nothing generated")
    else:
        print(f"generated {root} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
