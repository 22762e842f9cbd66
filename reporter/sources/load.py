"""load_sources: every source into one embedded DuckDB database, as the canonical entities."""
from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Callable

import duckdb

from ..config.entities import ENTITIES
from ..config.models import Source
from ..errors import DataError, Issue
from . import files, sql
from .base import Context, Raw, sql_ident, sql_literal
from .result import LoadResult, RejectedRow, SourceSummary
from .validate import DUCK_TYPES, stage

# Source kinds by name: a new kind is one reader function and one entry here.
READERS: dict[str, Callable[[Source, Context], Raw]] = {
    "csv": files.read_csv,
    "excel": files.read_excel,
    "parquet": files.read_parquet,
    "sql": sql.read_sql,
    "duckdb": sql.read_duckdb,
}

# The comment on a loaded table's single-column key (information_schema.columns.column_comment): its
# non-NULL values are unique, as stage() rejected every repeat. Compute may skip checking that itself.
UNIQUE_KEY_COMMENT = "unique key: duplicates rejected on load"


def load_sources(sources: dict[str, Source], root: Path, horizon: tuple[date, date]) -> LoadResult:
    """Load every source; DataError listing every blocking problem of every source, raised once at the end."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # the CLI draws its own output
    con.execute("SET TimeZone = 'UTC'")  # aware timestamps from a database become UTC, on every machine alike
    try:
        result = _load(con, sources, Path(root), horizon)
    except BaseException:
        con.close()
        raise
    # From here on the database is only queried, partly with user-written KPI SQL: no files, no network.
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return result


def _load(con, sources: dict[str, Source], root: Path, horizon: tuple[date, date]) -> LoadResult:
    for entity in ENTITIES.values():
        columns = ", ".join(f"{sql_ident(f.name)} {DUCK_TYPES[f.type]}" for f in entity.fields)
        con.execute(f"CREATE TABLE {entity.name} ({columns})")
    issues: list[Issue] = []
    if any(s.entity != "accounts" for s in sources.values()) and not any(s.entity == "accounts" for s in sources.values()):
        issues.append(Issue("no source provides accounts, which every other entity is checked against; "
                            "add one to sources.yaml"))
    # Accounts first: every other entity's account_id is checked against them.
    ordered = sorted(sources.items(), key=lambda item: item[1].entity != "accounts")
    accounts_ok = True
    by_entity: dict[str, list[str]] = {name: [] for name in ENTITIES}
    rejected: list[RejectedRow] = []
    fingerprints: dict[str, str] = {}
    summaries: list[SourceSummary] = []
    for i, (name, source) in enumerate(ordered):
        ctx = Context(con, root, horizon, name, f"__raw_{i}")
        try:
            raw = READERS[source.kind](source, ctx)
            staged = stage(con, ctx.relation, raw, source, name, ENTITIES[source.entity], by_entity[source.entity],
                           check_accounts=accounts_ok, work=f"__work_{i}")
        except DataError as e:
            issues.extend(e.issues)
            # Without its accounts every other row would be "unknown account": noise, not news.
            accounts_ok = accounts_ok and source.entity != "accounts"
            continue
        finally:
            con.execute(f"DROP VIEW IF EXISTS {ctx.relation}")
            con.execute(f"DROP TABLE IF EXISTS __work_{i}")
            con.execute(f"DROP TABLE IF EXISTS __work_{i}_problems")
        by_entity[source.entity].append(name)
        rejected.extend(staged.rejected)
        fingerprints[name] = staged.fingerprint
        summaries.append(SourceSummary(name, source.entity, raw.label, staged.loaded,
                                       len({r.row for r in staged.rejected})))
    if issues:
        raise DataError(issues)
    _mark_unique_keys(con)
    counts = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in ENTITIES}
    pairs = "".join(f"{name}\t{fp}\n" for name, fp in sorted(fingerprints.items()))
    return LoadResult(con, counts, rejected, fingerprints, hashlib.sha256(pairs.encode()).hexdigest(), by_entity,
                      summaries)


def _mark_unique_keys(con) -> None:
    """Record on each single-column key that the loader kept it unique (see UNIQUE_KEY_COMMENT): a catalog
    comment, no constraint, which would cost an index on load."""
    for entity in ENTITIES.values():
        if len(entity.key) == 1:
            con.execute(f"COMMENT ON COLUMN {entity.name}.{sql_ident(entity.key[0])} IS {sql_literal(UNIQUE_KEY_COMMENT)}")
