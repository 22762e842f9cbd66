"""Cross-reference rules: checks that span keys or files. Each returns a list of Issues."""
from __future__ import annotations

import zoneinfo

import duckdb
from croniter import croniter

from ..errors import Issue, did_you_mean
from .catalog import BUILTIN_KPIS
from .entities import ENTITIES
from .formula import Formula
from .loader import Document

DUCKDB_TYPES = {"string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "number": "DOUBLE",
                "integer": "BIGINT", "boolean": "BOOLEAN"}


def check_all(models: dict, docs: dict[str, Document], templates_exist) -> list[Issue]:
    project, sources, kpis, tiers, reports = (models[f] for f in
                                              ("project.yaml", "sources.yaml", "kpis.yaml", "tiers.yaml", "reports.yaml"))
    provided = {s.entity for s in sources.sources.values()}
    known_kpis = set(BUILTIN_KPIS) | set(kpis.kpis)
    return [
        *check_timezone(project.timezone, docs["project.yaml"], ("timezone",)),
        *check_accounts_source(provided, docs["sources.yaml"]),
        *check_custom_kpis(kpis, known_kpis, provided, docs["kpis.yaml"]),
        *check_tiers(tiers, kpis, known_kpis, provided, docs["tiers.yaml"]),
        *check_reports(reports, set(tiers.tiers), docs["reports.yaml"], templates_exist),
    ]


def check_timezone(name: str, doc: Document, path: tuple) -> list[Issue]:
    try:
        zoneinfo.ZoneInfo(name)
        return []
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, zoneinfo.available_timezones())
        return [doc.issue(path, f'unknown time zone "{name}"{hint or "; use an IANA name such as Asia/Shanghai"}')]


def check_accounts_source(provided: set[str], doc: Document) -> list[Issue]:
    if "accounts" in provided:
        return []
    return [doc.issue(("sources",), "no source provides the accounts entity; every project needs one")]


def check_custom_kpis(kpis, known: set[str], provided: set[str], doc: Document) -> list[Issue]:
    issues = []
    for kpi_id, opts in kpis.kpis.items():
        path = ("kpis", kpi_id)
        builtin = kpi_id in BUILTIN_KPIS
        if not builtin and not (opts.expression or opts.formula):
            issues.append(doc.issue(path, f'"{kpi_id}" is not a built-in KPI{did_you_mean(kpi_id, BUILTIN_KPIS)}; '
                                    "a custom KPI needs expression: or formula:", key=True))
            continue
        if not builtin and not opts.direction:
            issues.append(doc.issue(path, "a custom KPI needs direction: up or down", key=True))
        if opts.expression:
            if opts.entity not in provided:
                issues.append(doc.issue((*path, "entity"), f"no source provides {opts.entity}"))
            issues += _check_sql(opts, doc, path)
        if opts.formula:
            issues += _check_formula(kpi_id, opts.formula, kpis, known, doc, path)
    return issues


def _check_sql(opts, doc: Document, path: tuple) -> list[Issue]:
    """Bind the expression against an empty table of the entity: catches syntax, unknown columns, non-aggregates."""
    con = duckdb.connect()
    try:
        columns = ", ".join(f'"{f.name}" {DUCKDB_TYPES[f.type]}' for f in ENTITIES[opts.entity].fields)
        con.execute(f"CREATE TABLE {opts.entity} ({columns})")
        con.execute("SET enable_external_access = false")
        issues = []
        for key in ("expression", "denominator"):
            text = getattr(opts, key)
            if not text:
                continue
            try:
                con.execute(f"SELECT account_id, {text} FROM {opts.entity} GROUP BY account_id")
            except duckdb.Error as exc:
                first_line = str(exc).splitlines()[0].split(": ", 1)[-1]
                issues.append(doc.issue((*path, key), f"invalid SQL aggregate: {first_line}"))
        return issues
    finally:
        con.close()


def _check_formula(kpi_id, text, kpis, known, doc, path) -> list[Issue]:
    try:
        formula = Formula(text)
    except ValueError as exc:
        return [doc.issue((*path, "formula"), str(exc))]
    unknown = sorted(formula.names - known)
    if unknown:
        return [doc.issue((*path, "formula"), f'unknown KPI "{unknown[0]}" in formula{did_you_mean(unknown[0], known)}')]
    if _formula_cycle(kpi_id, kpis):
        return [doc.issue((*path, "formula"), "formula refers back to itself through other formulas")]
    return []


def _formula_cycle(start: str, kpis) -> bool:
    seen, stack = set(), [start]
    while stack:
        current = stack.pop()
        opts = kpis.kpis.get(current)
        if opts is None or not opts.formula:
            continue
        for name in Formula(opts.formula).names:
            if name == start:
                return True
            if name not in seen:
                seen.add(name)
                stack.append(name)
    return False


def kpi_direction(kpi_id: str, kpis) -> str:
    opts = kpis.kpis.get(kpi_id)
    if opts is not None and opts.direction:
        return opts.direction
    return BUILTIN_KPIS[kpi_id].direction if kpi_id in BUILTIN_KPIS else "up"


def kpi_needs(kpi_id: str, kpis) -> tuple[str, ...]:
    opts = kpis.kpis.get(kpi_id)
    if opts is not None and opts.entity:
        return (opts.entity,)
    if opts is not None and opts.formula:
        return tuple(e for name in Formula(opts.formula).names for e in kpi_needs(name, kpis))
    return BUILTIN_KPIS[kpi_id].needs[:1] if kpi_id in BUILTIN_KPIS else ()


def check_tiers(tiers, kpis, known: set[str], provided: set[str], doc: Document) -> list[Issue]:
    issues = []
    for tier_name, tier in tiers.tiers.items():
        for kpi_id, setting in tier.kpis.items():
            path = ("tiers", tier_name, "kpis", kpi_id)
            if kpi_id not in known:
                issues.append(doc.issue(path, f'unknown KPI "{kpi_id}"{did_you_mean(kpi_id, known)}', key=True))
                continue
            missing = [e for e in kpi_needs(kpi_id, kpis) if e not in provided]
            if missing:
                issues.append(doc.issue(path, f"{kpi_id} needs {missing[0]} data, but no source provides it; "
                                        f"add a source with entity: {missing[0]} or drop the KPI", key=True))
            issues += _check_thresholds(setting, kpi_direction(kpi_id, kpis), doc, path)
    for name in (tiers.tier_rule.revenue_at_least if tiers.tier_rule else {}):
        if name not in tiers.tiers:
            issues.append(doc.issue(("tier_rule", "revenue_at_least", name),
                                    f'unknown tier "{name}"{did_you_mean(name, tiers.tiers)}', key=True))
    for account, targets in tiers.overrides.items():
        for kpi_id in targets:
            if kpi_id not in known:
                issues.append(doc.issue(("overrides", account, kpi_id),
                                        f'unknown KPI "{kpi_id}"{did_you_mean(kpi_id, known)}', key=True))
    return issues


def _check_thresholds(setting, direction: str, doc: Document, path: tuple) -> list[Issue]:
    if setting.green is None or setting.amber is None:
        return []
    inverted = setting.green < setting.amber if direction == "up" else setting.green > setting.amber
    if not inverted:
        return []
    better = "higher" if direction == "up" else "lower"
    return [doc.issue((*path, "green"), f"thresholds inverted: this KPI is better {better}, so green "
                      f"({setting.green:g}) must be {'>=' if direction == 'up' else '<='} amber ({setting.amber:g})")]


def check_reports(reports, tier_names: set[str], doc: Document, templates_exist) -> list[Issue]:
    issues = []
    for name, report in reports.reports.items():
        path = ("reports", name)
        for tier in report.filter.tiers:
            if tier not in tier_names:
                issues.append(doc.issue((*path, "filter", "tiers"), f'unknown tier "{tier}"{did_you_mean(tier, tier_names)}'))
        if report.template and not templates_exist(report.template):
            issues.append(doc.issue((*path, "template"), f'template "{report.template}" not found in the project\'s '
                                    "report_templates/ or the built-in templates"))
        if report.schedule is not None:
            sched = report.schedule
            if not croniter.is_valid(sched.cron):
                issues.append(doc.issue((*path, "schedule", "cron"), f'invalid cron expression "{sched.cron}": '
                                        'expected five fields "minute hour day-of-month month day-of-week", e.g. "0 7 1 * *"'))
            issues += check_timezone(sched.timezone, doc, (*path, "schedule", "timezone"))
    return issues
