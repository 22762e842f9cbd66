"""The render and deliver benchmarks' project: the sample portfolio at 1,000 accounts, and its
computed scorecard.

The project is the shipped example (`reporter init --sample`: `write_sample_data` with 24 months
ending 2026-10 and the example configs), with three changes for the benchmarks:

* the accounts have `--owners` distinct owners (owner<k>@example.com, round robin), so the
  delivery benchmark sends to 200 people;
* `account_reviews` covers every account (the example filters to strategic and key tiers);
* SMTP goes to 127.0.0.1, port ``$BENCH_SMTP_PORT`` (the delivery benchmark's local server).

Loading and computing (``pipeline.load`` + ``compute_scorecard`` + ``compute.details``) happen
once; the result is kept in a pickle next to the project, keyed by the code and data it came
from, so the render benchmark times rendering only.

Health history: the scorecard has no per-account health series yet, so the health trend chart of
every review would say "no data". The render benchmark wants six drawn charts per review, so it
computes the scorecards of the 11 months before the period (the same ``build_scorecard``) and
gives each account its 12 monthly health scores as ``health_trend``, the series the chart draws.
"""
from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO = BENCH_DIR.parent
DATA_ROOT = BENCH_DIR / "data"
EXAMPLE_CONFIGS = REPO / "configs"
DATA_VERSION = 1
END = "2026-10"
PERIOD = "2026-10"
MONTHS = 24
GENERATED_AT = datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc)
HISTORY_PERIODS = 12

FIRST = ("Li", "Emma", "Zhang", "Daniel", "Chen", "Sophie", "Wang", "Raj", "Olivia", "Kenji",
         "Priya", "Lukas", "Min", "Sarah", "Thomas", "Jing", "Wei", "Anna", "Marco", "Aiko")
LAST = ("Wei", "Clarke", "Min", "Weber", "Jing", "Martin", "Fang", "Patel", "Tan", "Sato")

REPORTS_YAML = """\
# yaml-language-server: $schema=schema.json
# The benchmark's reports: every account reviewed, each owner one email with all their reviews.
reports:
  leadership_scorecard:
    kind: portfolio_scorecard
    title: Key-account portfolio scorecard
    audience:
      recipients:
        - {email: ceo@example.com, name: Chen Jing, locale: zh_CN}
        - {email: cfo@example.com, name: Daniel Moore}
    formats: [pdf]

  account_reviews:
    kind: account_review
    title: Key-account review
    audience:
      account_owner: true
      one_email_per: owner
      bcc: [kam-archive@example.com]
    formats: [pdf]
"""

SMTP_BLOCK = """smtp:
  transport: smtp
  host: 127.0.0.1
  port: ${BENCH_SMTP_PORT:-2525}
  security: none
  from: key-accounts@example.com
  timeout: 60
  max_attempts: 3
  retry_delay: 0.1
"""


def owner(k: int) -> tuple[str, str]:
    return f"{FIRST[k % len(FIRST)]} {LAST[(k // len(FIRST)) % len(LAST)]}", f"owner{k:03d}@example.com"


def project_dir(accounts: int, owners: int, seed: int) -> Path:
    return DATA_ROOT / f"render_{accounts}a_{owners}o_seed{seed}"


def ensure_project(accounts: int = 1000, owners: int = 200, seed: int = 7) -> tuple[Path, float | None]:
    """The benchmark project, generated unless its stamp matches. (directory, seconds or None)."""
    from reporter.sample.data import write_sample_data

    root = project_dir(accounts, owners, seed)
    stamp = {"version": DATA_VERSION, "accounts": accounts, "owners": owners, "seed": seed, "months": MONTHS,
             "end": END}
    stamp_path = root / "stamp.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return root, None
    started = time.perf_counter()
    if root.exists():
        shutil.rmtree(root)
    (root / "configs").mkdir(parents=True)
    (root / "output").mkdir()
    for source in sorted(EXAMPLE_CONFIGS.iterdir()):
        if source.suffix in (".yaml", ".json"):
            shutil.copyfile(source, root / "configs" / source.name)
    (root / "configs" / "reports.yaml").write_text(REPORTS_YAML, encoding="utf-8")
    project = (root / "configs" / "project.yaml").read_text(encoding="utf-8")
    head, _, rest = project.partition("smtp:\n")
    tail = rest[rest.index("\n\n"):] if "\n\n" in rest else "\n"
    (root / "configs" / "project.yaml").write_text(head + SMTP_BLOCK + tail, encoding="utf-8")
    data = root / "data" / "demo"
    write_sample_data(data, accounts=accounts, months=MONTHS, seed=seed, end=END)
    _spread_owners(data / "accounts.csv", owners)
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    return root, time.perf_counter() - started


def _spread_owners(path: Path, owners: int) -> None:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    for i, row in enumerate(rows):
        row["owner_name"], row["owner_email"] = owner(i % owners)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- computed inputs

@dataclass
class Computed:
    scorecard: dict
    details: dict
    portfolio: dict
    report_ids: dict[str, str]
    seconds: dict[str, float]       # load, scorecard, details, history (when computed, not cached)
    cached: bool


def _code_key(root: Path) -> str:
    digest = hashlib.sha256()
    for folder in ("reporter/compute", "reporter/sources", "reporter/config"):
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    for path in sorted((root / "configs").iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update((root / "stamp.json").read_bytes())
    return digest.hexdigest()[:16]


def ensure_computed(root: Path, period: str = PERIOD, history: bool = True) -> Computed:
    """Load and compute once (pipeline.load + compute_scorecard + compute.details), cached by code and data."""
    cache = root / f"computed-{period}-{'h' if history else 'n'}-{_code_key(root)}.pkl"
    if cache.is_file():
        with cache.open("rb") as handle:
            computed = pickle.load(handle)
        computed.cached = True
        return computed
    for old in root.glob(f"computed-{period}-*.pkl"):
        old.unlink()
    from reporter import pipeline
    from reporter.clock import FixedClock
    from reporter.compute.details import account_details, portfolio_details

    seconds = {}
    t0 = time.perf_counter()
    loaded = pipeline.load(root, period, FixedClock(GENERATED_AT))
    seconds["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorecard = pipeline.compute_scorecard(loaded)
    seconds["scorecard"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = [a["account_id"] for a in scorecard["accounts"]]
    details = account_details(loaded.data.con, loaded.period, ids)
    portfolio = portfolio_details(loaded.data.con, loaded.period)
    seconds["details"] = time.perf_counter() - t0
    if history and not any(a.get("health_trend") for a in scorecard["accounts"]):
        t0 = time.perf_counter()
        _add_health_history(loaded, scorecard)
        seconds["history"] = time.perf_counter() - t0
    report_ids = {name: pipeline._report_id(loaded, name) for name in loaded.config.reports}
    loaded.data.con.close()
    computed = Computed(scorecard, details, portfolio, report_ids, seconds, False)
    with cache.open("wb") as handle:
        pickle.dump(computed, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return computed


def _add_health_history(loaded, scorecard: dict) -> None:
    """Each account's health score over the 12 months ending with the period, from the scorecards
    of the 11 months before it (build_scorecard, as for the period itself)."""
    from reporter.compute.periods import add_months, parse_period
    from reporter.compute.scorecard import build_scorecard

    period = loaded.period
    scores: dict[str, list] = {a["account_id"]: [] for a in scorecard["accounts"]}
    labels = []
    for back in range(HISTORY_PERIODS - 1, 0, -1):
        start = add_months(period.start, -back)
        past = parse_period(f"{start.year:04d}-{start.month:02d}", loaded.config.project.fiscal_year_start)
        card = build_scorecard(loaded.data.con, loaded.config, past)
        by_id = {a["account_id"]: a.get("health_score") for a in card["accounts"]}
        labels.append(past.label)
        for account_id, series in scores.items():
            series.append(by_id.get(account_id))
    labels.append(period.label)
    for account in scorecard["accounts"]:
        series = scores[account["account_id"]] + [account.get("health_score")]
        account["health_trend"] = [{"period": label, "health_score": score} for label, score in zip(labels, series)]
