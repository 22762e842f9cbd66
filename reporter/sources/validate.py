"""One source's raw rows -> canonical typed rows in the entity's table, vectorised in DuckDB SQL.

One statement converts every mapped column (a cell that does not convert becomes NULL and keeps
its raw text in `__badN`); a second collects every problem as a row (row, column, value, problem).
Python only formats the problem rows; the good rows go straight into the entity table.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import duckdb

from ..config.entities import BOOLEAN, DATE, INTEGER, NUMBER, STRING, TIMESTAMP, Entity, Field
from ..errors import DataError, Issue, did_you_mean
from .base import Raw, first_line, sql_ident, sql_literal
from .result import RejectedRow

DUCK_TYPES = {STRING: "VARCHAR", DATE: "DATE", TIMESTAMP: "TIMESTAMP", NUMBER: "DOUBLE", INTEGER: "BIGINT",
              BOOLEAN: "BOOLEAN"}
ISO_DATE = "%Y-%m-%d"
ISO_TIMESTAMPS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
                  "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f", ISO_DATE)
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "y", "1", "是"), ("false", "no", "n", "0", "否")
NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"}
FAIL_LISTED = 20  # on_error: fail lists this many problems per source, then counts the rest


@dataclass(frozen=True)
class Conversion:
    source: str                     # SQL over the raw column: trimmed text, or the typed column as is
    value: Callable[[str], str]     # SQL over that: the canonical value, NULL if empty or not convertible
    problem: str | None = None      # what a cell that does not convert should have looked like


@dataclass(frozen=True)
class Staged:
    loaded: int
    rejected: list[RejectedRow]
    fingerprint: str


def stage(con: duckdb.DuckDBPyConnection, relation: str, raw: Raw, source, name: str, entity: Entity,
          earlier: list[str], check_accounts: bool, work: str) -> Staged:
    """Convert and check `relation`, append the good rows to the entity table; DataError if blocking."""
    found = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall() if r[0] != "__row"}
    mapping = _preflight(con, found, source, entity, raw)
    conversions = {f.name: _conversion(f, mapping[f.name], found[mapping[f.name]], source)
                   for f in entity.fields if f.name in mapping}
    # Three levels: raw column -> __tN (trimmed text or typed) -> canonical value -> __badN (raw text if it failed).
    inner, typed, outer = [], [], [sql_ident(f) for f in entity.field_names]
    for i, f in enumerate(entity.fields):
        c = conversions.get(f.name)
        if c is None:  # not in this source: the column exists, empty
            typed.append(f"CAST(NULL AS {DUCK_TYPES[f.type]}) AS {sql_ident(f.name)}")
            continue
        inner.append(f"{c.source} AS __t{i}")
        typed.append(f"{c.value(f'__t{i}')} AS {sql_ident(f.name)}")
        if c.problem:
            typed.append(f"__t{i}")
            outer.append(f"CASE WHEN {sql_ident(f.name)} IS NULL THEN CAST(__t{i} AS VARCHAR) END AS __bad{i}")
    con.execute(f"CREATE TEMP TABLE {work} AS SELECT __row, {', '.join(outer)} FROM "
                f"(SELECT __row, {', '.join(typed)} FROM (SELECT __row, {', '.join(inner)} FROM {relation}))")
    checks = _checks(source, entity, mapping, conversions, earlier, check_accounts, work)
    problems = f"{work}_problems"
    con.execute(f"CREATE TEMP TABLE {problems} AS {' UNION ALL '.join(checks)}" if checks else
                f"CREATE TEMP TABLE {problems} (__row BIGINT, __ord INTEGER, __column VARCHAR, __value VARCHAR, "
                f"__problem VARCHAR)")
    total, bad_rows = con.execute(f"SELECT count(*), count(DISTINCT __row) FROM {problems}").fetchone()
    ordered = f"SELECT __row, __column, coalesce(__value, ''), __problem FROM {problems} ORDER BY __row, __ord"
    if total and source.on_error == "fail":
        listed = [RejectedRow(name, raw.label, *r).issue() for r in con.execute(f"{ordered} LIMIT {FAIL_LISTED}").fetchall()]
        if total > FAIL_LISTED:
            listed.append(Issue(f"... and {total - FAIL_LISTED} more problems ({bad_rows} bad rows in all); with "
                                "on_error: reject_rows the good rows load and the bad ones are reported", file=raw.label))
        raise DataError(listed)
    rejected = [RejectedRow(name, raw.label, *r) for r in con.execute(ordered).fetchall()] if total else []
    columns = ", ".join(sql_ident(f) for f in entity.field_names)
    good = f"SELECT {columns} FROM {work}" + (f" WHERE __row NOT IN (SELECT __row FROM {problems})" if total else "")
    loaded = con.execute(f"INSERT INTO {entity.name} {good}").fetchone()[0]
    return Staged(loaded, rejected, raw.fingerprint or rows_sha256(con, good))


def _preflight(con, found: dict[str, str], source, entity: Entity, raw: Raw) -> dict[str, str]:
    """canonical field -> source column; blocking if a required or mapped column is absent or a format is bad."""
    mapping, issues = {}, _check_formats(con, source, raw.label)
    for f in entity.fields:
        column = source.columns.get(f.name, f.name)
        if column in found:
            mapping[f.name] = column
        elif f.required or f.name in source.columns:
            what = "required column" if f.required else "column"
            mapped = f" (mapped to {f.name} under columns:)" if f.name in source.columns else ""
            issues.append(Issue(f'missing {what} "{column}"{mapped}; columns found: {", ".join(found)}'
                                f"{did_you_mean(column, found)}", file=raw.label, line=raw.header_row))
    for field_name in source.dates:
        if entity.field(field_name).type not in (DATE, TIMESTAMP):
            issues.append(Issue(f"dates: {field_name} is not a date or timestamp field", file=raw.label))
    if issues:
        raise DataError(issues)
    return mapping


def _conversion(f: Field, column: str, duck_type: str, source) -> Conversion:
    col, family = sql_ident(column), _family(duck_type)
    target = DUCK_TYPES[f.type]
    if (f.type, family) in ((DATE, "temporal"), (TIMESTAMP, "temporal"), (NUMBER, "number"), (BOOLEAN, "boolean")):
        return Conversion(col, lambda t: f"CAST({t} AS {target})")  # typed by the source already
    if f.type == INTEGER and family == "number":
        return Conversion(col, lambda t: f"CASE WHEN {t} = round({t}) THEN TRY_CAST({t} AS BIGINT) END",
                          "expected a whole number")
    text = f"nullif(trim(CAST({col} AS VARCHAR)), '')"
    if f.type == STRING and not f.choices:
        return Conversion(text, lambda t: t)
    if f.type == STRING:  # codes: matched case-insensitively, stored as the canonical lower case
        listed = ", ".join(sql_literal(c) for c in f.choices)
        return Conversion(text, lambda t: f"CASE WHEN lower({t}) IN ({listed}) THEN lower({t}) END",
                          f"expected one of {', '.join(f.choices)}")
    if f.type in (DATE, TIMESTAMP):
        fmt = source.dates.get(f.name)
        formats = [fmt] if fmt else [ISO_DATE] if f.type == DATE else list(ISO_TIMESTAMPS)
        listed = ", ".join(sql_literal(x) for x in formats)
        shown = fmt or (ISO_DATE if f.type == DATE else "%Y-%m-%d %H:%M[:%S]")

        def parsed(t: str) -> str:
            # DuckDB's %Y also reads "26": a year before 1000 is a typo, never a date in this domain.
            return f"CASE WHEN year(try_strptime({t}, [{listed}])) >= 1000 THEN CAST(try_strptime({t}, [{listed}]) AS {target}) END"

        return Conversion(text, parsed, f"expected a {'date' if f.type == DATE else 'timestamp'} in the form {shown}")
    if f.type == BOOLEAN:
        yes, no = (", ".join(sql_literal(w) for w in words) for words in (TRUE_WORDS, FALSE_WORDS))
        return Conversion(text, lambda t: f"CASE WHEN lower({t}) IN ({yes}) THEN true WHEN lower({t}) IN ({no}) THEN false END",
                          "expected true/false, yes/no, y/n, 1/0 or 是/否")
    return _number(f, text, getattr(source, "decimal", "."), getattr(source, "thousands", None))


def _number(f: Field, text: str, decimal: str, thousands: str | None) -> Conversion:
    # A strict pattern first: a bare cast would also take "nan", "inf" and misplaced separators.
    digits = rf"(?:\d+|\d{{1,3}}(?:[{thousands}]\d{{3}})+)" if thousands else r"\d+"
    if f.type == INTEGER:
        pattern, example, target = rf"[+-]?{digits}", f"1{thousands or ''}234", "BIGINT"
    else:
        pattern = rf"[+-]?(?:{digits}(?:[{decimal}]\d*)?|[{decimal}]\d+)(?:[eE][+-]?\d+)?"
        example, target = f"1{thousands or ''}234{decimal}56", "DOUBLE"

    def value(t: str) -> str:
        plain = f"replace({t}, {sql_literal(thousands)}, '')" if thousands else t
        plain = f"replace({plain}, {sql_literal(decimal)}, '.')" if decimal != "." else plain
        return f"CASE WHEN regexp_full_match({t}, {sql_literal(pattern)}) THEN TRY_CAST({plain} AS {target}) END"

    return Conversion(text, value, f"expected a {'whole ' if f.type == INTEGER else ''}number like {example}")


def _family(duck_type: str) -> str:
    t = duck_type.upper()
    if t == "DATE" or t.startswith("TIMESTAMP"):
        return "temporal"
    if t in NUMERIC_TYPES or t.startswith("DECIMAL"):
        return "number"
    return "boolean" if t == "BOOLEAN" else "text"


def _checks(source, entity: Entity, mapping: dict[str, str], conversions: dict[str, Conversion],
            earlier: list[str], check_accounts: bool, work: str) -> list[str]:
    """One SELECT per rule, each giving (__row, __ord, __column, __value, __problem) for the rows that break it."""
    order = {f.name: i for i, f in enumerate(entity.fields)}

    def problem_rows(field_name: str, value_sql: str, problem_sql: str, where: str, join: str = "") -> str:
        return (f"SELECT {work}.__row, {order[field_name]} AS __ord, {sql_literal(mapping[field_name])} AS __column, "
                f"CAST({value_sql} AS VARCHAR) AS __value, {problem_sql} AS __problem FROM {work}{join} WHERE {where}")

    checks = []
    for f in entity.fields:
        if f.name not in mapping:
            continue
        name, i = sql_ident(f.name), order[f.name]
        if conversions[f.name].problem:
            checks.append(problem_rows(f.name, f"__bad{i}", sql_literal(conversions[f.name].problem), f"__bad{i} IS NOT NULL"))
        if f.required:
            not_bad = f" AND __bad{i} IS NULL" if conversions[f.name].problem else ""
            checks.append(problem_rows(f.name, "''", sql_literal(f"expected a value ({f.name} is required)"),
                                       f"{name} IS NULL{not_bad}"))
        if f.name in entity.non_negative and f.name not in source.allow_negative:
            checks.append(problem_rows(f.name, name, sql_literal(f"expected a number ≥ 0 (list {f.name} under "
                                                                 "allow_negative: if negatives are valid)"), f"{name} < 0"))
    if entity.name != "accounts" and "account_id" in mapping and check_accounts:
        checks.append(problem_rows("account_id", "account_id", sql_literal("expected an account_id listed in accounts"),
                                   "account_id IS NOT NULL AND NOT EXISTS "
                                   f"(SELECT 1 FROM accounts a WHERE a.account_id = {work}.account_id)"))
    if entity.key and all(k in mapping for k in entity.key):
        keys = [sql_ident(k) for k in entity.key]
        shown = f"concat_ws(', ', {', '.join(f'{work}.{k}' for k in keys)})"
        present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
        # Only keys that occur twice are looked at row by row: cheap on millions of unique ids.
        checks.append(problem_rows(
            entity.key[0], shown, "'expected a unique value (first seen on row ' || d.__first || ')'",
            f"{work}.__row > d.__first",
            f" JOIN (SELECT {', '.join(keys)}, min(__row) AS __first FROM {work} WHERE {present} GROUP BY ALL "
            f"HAVING count(*) > 1) d ON {' AND '.join(f'd.{k} = {work}.{k}' for k in keys)}"))
        if earlier:
            loaded_from = ", ".join(f'"{s}"' for s in earlier)
            checks.append(problem_rows(
                entity.key[0], shown, sql_literal(f"expected a unique value (already loaded from {loaded_from})"),
                f"{present} AND EXISTS (SELECT 1 FROM {entity.name} e WHERE "
                f"{' AND '.join(f'e.{k} = {work}.{k}' for k in keys)})"))
    return checks


def rows_sha256(con: duckdb.DuckDBPyConnection, select: str) -> str:
    """sha256 of rows as sorted JSON lines: the same rows give the same hash, whatever order they came in."""
    digest = hashlib.sha256()
    reader = con.sql(f"SELECT CAST(to_json(r) AS VARCHAR) AS line FROM ({select}) r ORDER BY line").to_arrow_reader(100_000)
    for batch in reader:
        digest.update(("\n".join(batch.column(0).to_pylist()) + "\n").encode())
    return digest.hexdigest()


def _check_formats(con: duckdb.DuckDBPyConnection, source, label: str) -> list[Issue]:
    """A strptime format DuckDB does not understand is a config mistake: say so before converting."""
    issues = []
    for field_name, fmt in source.dates.items():
        try:
            con.execute("SELECT try_strptime('2000-01-01', ?)", [fmt])
        except duckdb.Error as e:
            issues.append(Issue(f'dates: {field_name}: "{fmt}" is not a valid date format: {first_line(e)}', file=label))
    return issues
