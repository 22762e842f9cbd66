"""The project a user writes, as pydantic models: one model per YAML file, extra keys forbidden.

Field descriptions end up in configs/schema.json, which editors use for completion and hints.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import did_you_mean
from .entities import ENTITIES

NonNegative = Annotated[float, Field(ge=0)]
EntityName = Literal["accounts", "orders", "surveys", "tickets", "interactions", "contacts", "opportunities", "costs"]
WindowName = Literal["month", "quarter", "trailing_90d", "trailing_12m", "ytd", "lifetime"]
LocaleName = Literal["en", "zh_CN"]
Unit = Literal["percent", "currency", "count", "number", "days", "hours", "ratio", "score"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- project.yaml

class Smtp(Strict):
    transport: Literal["outbox", "smtp"] = Field("outbox", description="outbox writes .eml files to output/outbox/; smtp sends")
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = Field(None, description="Use ${ENV_VAR}; never write a secret into the file")
    sender: str = Field("reports@example.com", alias="from", description="From address")
    timeout: float = Field(30, gt=0)
    max_attempts: int = Field(4, ge=1, description="tries per email on 4xx replies and connection errors")
    retry_delay: float = Field(1.0, ge=0, description="seconds before the first retry; doubles each time, with jitter")


class Project(Strict):
    name: str
    timezone: str = "UTC"
    locale: LocaleName = "en"
    currency: str = Field("USD", min_length=3, max_length=3)
    fiscal_year_start: int = Field(1, ge=1, le=12, description="Month in which the fiscal year starts")
    history_months: int = Field(36, ge=13, description="How much history SQL sources are asked for")
    output_dir: str = "output"
    ledger_url: str | None = Field(None, description="SQLAlchemy URL of the delivery ledger; default SQLite in output/state/")
    retention_years: int = Field(7, ge=1)
    smtp: Smtp = Smtp()
    admins: list[str] = Field(default_factory=list, description="Receive a summary when a delivery fails")


# --------------------------------------------------------------------------- sources.yaml

class SourceBase(Strict):
    entity: EntityName
    columns: dict[str, str] = Field(
        default_factory=dict, description="canonical field -> column name in the source, for names that differ"
    )
    dates: dict[str, str] = Field(
        default_factory=dict, description="canonical field -> strptime format, e.g. '%d/%m/%Y'; never guessed"
    )
    on_error: Literal["reject_rows", "fail"] = "fail"
    allow_negative: list[str] = Field(default_factory=list, description="fields where negative values are valid")

    @model_validator(mode="after")
    def _known_fields(self):
        fields = ENTITIES[self.entity].field_names
        for key in (*self.columns, *self.dates, *self.allow_negative):
            if key not in fields:
                raise ValueError(f'"{key}" is not a field of {self.entity}; fields are: {", ".join(fields)}')
        return self


class FileOptions(SourceBase):
    path: str = Field(description="relative to the project directory")


class CsvSource(FileOptions):
    kind: Literal["csv"]
    encoding: Literal["utf-8", "utf-8-sig", "gbk", "gb18030", "latin-1"] = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)
    decimal: Literal[".", ","] = "."
    thousands: Literal[",", ".", " ", "'"] | None = None

    @model_validator(mode="after")
    def _separators_differ(self):
        if self.thousands == self.decimal:
            raise ValueError("decimal and thousands separators must differ")
        return self


class ExcelSource(FileOptions):
    kind: Literal["excel"]
    sheet: str | int = 0


class ParquetSource(FileOptions):
    kind: Literal["parquet"]


class SqlSource(SourceBase):
    kind: Literal["sql"]
    url: str = Field(description="SQLAlchemy URL, normally ${ENV_VAR}")
    query: str = Field(description="may use :period_start and :period_end (the history the run needs)")


class DuckdbSource(SourceBase):
    kind: Literal["duckdb"]
    path: str
    query: str


Source = Annotated[Union[CsvSource, ExcelSource, ParquetSource, SqlSource, DuckdbSource], Field(discriminator="kind")]


class Sources(Strict):
    sources: dict[str, Source]


# --------------------------------------------------------------------------- kpis.yaml

class Label(Strict):
    en: str
    zh_CN: str | None = None


class KpiOptions(Strict):
    """Options of a built-in KPI, or the definition of a custom one."""

    window: WindowName | None = None
    min_sample: int | None = Field(None, ge=0)
    method: Literal["top2", "mean"] | None = Field(None, description="csat: share of 4-5 scores (top2) or mean")
    label: Label | None = None
    unit: Unit | None = None
    direction: Literal["up", "down"] | None = None
    definition: str | None = None
    # custom aggregate KPI
    entity: EntityName | None = None
    expression: str | None = Field(None, description="SQL aggregate over the entity, e.g. sum(amount) filter (where ...)")
    denominator: str | None = None
    # custom formula KPI
    formula: str | None = Field(None, description="arithmetic over other KPI ids, e.g. revenue / interaction_frequency")

    @model_validator(mode="after")
    def _one_kind(self):
        if self.expression and self.formula:
            raise ValueError("a KPI has either expression: or formula:, not both")
        if self.expression and not self.entity:
            raise ValueError("an expression: KPI needs entity: (the table it aggregates)")
        return self


class Kpis(Strict):
    min_sample: int = Field(5, ge=0, description="default minimum sample for survey KPIs")
    clv_monthly_discount_rate: float = Field(0.01, ge=0, lt=1)
    kpis: dict[str, KpiOptions] = Field(default_factory=dict)


# --------------------------------------------------------------------------- tiers.yaml

class TierKpi(Strict):
    weight: NonNegative = 1.0
    target: float | None = None
    green: float | None = Field(None, description="threshold for green (>= for up KPIs, <= for down KPIs)")
    amber: float | None = Field(None, description="threshold for amber; worse than this is red")
    critical: bool = Field(False, description="a red critical KPI caps the account's health status")


class WarningThresholds(Strict):
    order_drop_pct: NonNegative = Field(40, description="order frequency down this % vs trailing-12m average")
    complaint_ratio: NonNegative = Field(2, description="complaints up this many times vs the prior window")
    nps_detractor: bool = True
    no_contact_days: NonNegative = 60
    p_alive: float = Field(0.5, ge=0, le=1)
    health_drop: NonNegative = 10


class Tier(Strict):
    label: Label | None = None
    kpis: dict[str, TierKpi]
    warnings: WarningThresholds = WarningThresholds()


class HealthBands(Strict):
    red_below: float = Field(50, ge=0, le=100)
    green_from: float = Field(75, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self):
        if self.red_below > self.green_from:
            raise ValueError("red_below must not be above green_from")
        return self


class TierRule(Strict):
    """Tier by trailing-12m revenue: the first band whose minimum the account reaches."""

    revenue_at_least: dict[str, NonNegative]


class Tiers(Strict):
    tier_rule: TierRule | None = Field(None, description="omit to take the tier column of accounts")
    scoring: Literal["bands", "linear"] = "bands"
    health_bands: HealthBands = HealthBands()
    tiers: dict[str, Tier]
    overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="account_id -> {kpi: target}"
    )


# --------------------------------------------------------------------------- reports.yaml

class Recipient(Strict):
    email: str
    name: str | None = None
    locale: LocaleName | None = None


class Audience(Strict):
    recipients: list[Recipient | str] = Field(default_factory=list)
    account_owner: bool = Field(False, description="each owner receives only their own accounts")
    one_email_per: Literal["owner", "account"] = "owner"
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)

    @field_validator("recipients")
    @classmethod
    def _as_objects(cls, value):
        return [Recipient(email=r) if isinstance(r, str) else r for r in value]


class Filter(Strict):
    tiers: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list)


class Schedule(Strict):
    cron: str = Field(description='five-field cron, e.g. "0 7 1 * *" (07:00 on the 1st)')
    timezone: str = "UTC"
    period: Literal["previous_month", "previous_quarter", "previous_year"] = "previous_month"
    catch_up: int = Field(3, ge=0, description="how many missed periods a restart still runs")


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SHORTHAND = re.compile(
    r"^(?P<every>daily|weekly on (?P<weekday>[a-z]+)|monthly on day (?P<day>\d{1,2})|quarterly on day (?P<qday>\d{1,2}))"
    r" at (?P<hour>\d{1,2}):(?P<minute>\d{2})(?: (?P<tz>[A-Za-z_]+/[A-Za-z_/+-]+|UTC))?$",
    re.IGNORECASE,
)


def schedule_from_text(text: str) -> Schedule:
    """'monthly on day 1 at 07:00 [Asia/Shanghai]' -> the same Schedule the cron form gives."""
    m = _SHORTHAND.match(" ".join(text.split())) if text else None
    if not m:
        raise ValueError(
            f'cannot read schedule "{text}": write e.g. "monthly on day 1 at 07:00", "weekly on monday at 08:30", '
            '"daily at 06:00", optionally followed by a time zone, or a block with cron:'
        )
    hour, minute = int(m["hour"]), int(m["minute"])
    if hour > 23 or minute > 59:
        raise ValueError(f'"{text}": {hour:02d}:{minute:02d} is not a time of day')
    if m["weekday"]:
        weekday = m["weekday"].lower()
        if weekday not in _WEEKDAYS:
            raise ValueError(f'"{weekday}" is not a weekday{did_you_mean(weekday, _WEEKDAYS)}')
        dom, month, dow, period = "*", "*", str((_WEEKDAYS.index(weekday) + 1) % 7), "previous_month"
    elif m["day"] or m["qday"]:
        day = int(m["day"] or m["qday"])
        if not 1 <= day <= 28:
            raise ValueError(f'"{text}": the day must be 1-28 so that every month has it')
        quarterly = bool(m["qday"])
        dom, month, dow = str(day), "1,4,7,10" if quarterly else "*", "*"
        period = "previous_quarter" if quarterly else "previous_month"
    else:
        dom, month, dow, period = "*", "*", "*", "previous_month"
    return Schedule(cron=f"{minute} {hour} {dom} {month} {dow}", timezone=m["tz"] or "UTC", period=period)


class Report(Strict):
    kind: Literal["account_review", "portfolio_scorecard"]
    title: str | None = None
    template: str | None = Field(None, description="default: <kind>.html")
    filter: Filter = Filter()
    audience: Audience = Audience()
    locale: LocaleName | None = None
    formats: list[Literal["pdf", "html"]] = Field(default_factory=lambda: ["pdf"])
    page_size: Literal["A4", "letter"] = "A4"
    subject: str | None = None
    body: str | None = None
    max_attachment_mb: float = Field(10, gt=0)
    schedule: Schedule | str | None = Field(
        None, description='a cron block, or a shorthand such as "monthly on day 1 at 07:00 Asia/Shanghai"'
    )

    @field_validator("schedule")
    @classmethod
    def _shorthand(cls, value):
        return schedule_from_text(value) if isinstance(value, str) else value


class Reports(Strict):
    reports: dict[str, Report]


FILES: dict[str, type[Strict]] = {
    "project.yaml": Project,
    "sources.yaml": Sources,
    "kpis.yaml": Kpis,
    "tiers.yaml": Tiers,
    "reports.yaml": Reports,
}
