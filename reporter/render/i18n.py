"""Labels and locale formats: ``t(key)`` from report_templates/i18n/<locale>.yaml, numbers and dates through Babel.

Label files are read from every template folder, built-ins first, so a project's
``report_templates/i18n/zh_CN.yaml`` overrides single keys and adds new ones. A key a
template asks for and no file defines fails the render (the StrictUndefined spirit):
a report never shows a raw key or an empty label.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import yaml
from babel import Locale
from babel.dates import format_date, format_skeleton
from babel.numbers import format_currency, format_decimal, format_percent

from ..config.catalog import BUILTIN_KPIS, PORTFOLIO_KPIS
from ..errors import Issue, RenderError

LOCALES = ("en", "zh_CN")
BABEL_LOCALES = {"en": "en", "zh_CN": "zh_Hans_CN"}
HTML_LANG = {"en": "en", "zh_CN": "zh-CN"}

# Babel patterns per KPI unit; percent values are fractions (0.12 is 12%).
_UNIT_PATTERNS = {
    "count": "#,##0",
    "number": "#,##0.##",
    "days": "#,##0",
    "hours": "#,##0.#",
    "ratio": "#,##0.00",
    "score": "#,##0.#",
}
_UNIT_LABELS = {"days": "units.days", "hours": "units.hours", "ratio": "units.ratio"}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(FY)?(\d{4})-Q([1-4])$")
_YEAR = re.compile(r"^(FY)?(\d{4})$")


def _flatten(data: Any, file: Path, prefix: str = "") -> dict[str, str]:
    if not isinstance(data, dict):
        raise RenderError([Issue("expected a mapping of label keys to texts", str(file), path=prefix or None)])
    flat: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, file, path + "."))
        elif isinstance(value, str):
            flat[path] = value
        else:
            raise RenderError([Issue(f"expected a text, got {type(value).__name__} {value!r}; quote it", str(file),
                                     path=path)])
    return flat


_LABEL_CACHE: dict[tuple, tuple[dict[str, str], tuple[Path, ...]]] = {}


def load_labels(template_dirs: Iterable[Path], locale: str) -> tuple[dict[str, str], tuple[Path, ...]]:
    """Merged labels of ``locale`` (later folders in ``template_dirs`` lose) and the files read, highest first."""
    if locale not in LOCALES:
        raise RenderError(f'unknown locale "{locale}"; supported locales are {", ".join(LOCALES)}')
    files = tuple(d / "i18n" / f"{locale}.yaml" for d in template_dirs if (d / "i18n" / f"{locale}.yaml").is_file())
    if not files:
        raise RenderError(f"no label file i18n/{locale}.yaml in any template folder "
                          f"({', '.join(str(d) for d in template_dirs)})")
    key = tuple((str(f), f.stat().st_mtime_ns) for f in files)
    if key not in _LABEL_CACHE:
        labels: dict[str, str] = {}
        for file in reversed(files):  # built-ins first, the project's own file last so it wins
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise RenderError([Issue(f"cannot read label file: {exc}", str(file))]) from None
            labels.update(_flatten(data, file))
        _LABEL_CACHE[key] = (labels, files)
    return _LABEL_CACHE[key]


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


@dataclass
class I18n:
    """Labels and formats of one locale; every text it returns is plain text (templates escape it)."""

    locale: str
    currency: str
    labels: dict[str, str]
    files: tuple[Path, ...]
    timezone: str = "UTC"

    @property
    def babel(self) -> str:
        return BABEL_LOCALES[self.locale]

    @property
    def lang(self) -> str:
        return HTML_LANG[self.locale]

    # ------------------------------------------------------------------ labels

    def get(self, key: str) -> str | None:
        return self.labels.get(key)

    def t(self, key: str, **values) -> str:
        try:
            text = self.labels[key]
        except KeyError:
            where = " or ".join(str(f) for f in self.files)
            raise RenderError([Issue(f'missing label "{key}" for locale {self.locale}; add it to {where}',
                                     str(self.files[-1]), path=key)]) from None
        if not values:
            return text
        try:
            return text.format(**{k: "" if v is None else v for k, v in values.items()})
        except (KeyError, IndexError, ValueError) as exc:
            raise RenderError([Issue(f'label "{key}" has a placeholder the template does not fill ({exc}): "{text}"',
                                     str(self.files[0]), path=key)]) from None

    # ------------------------------------------------------------------ numbers and dates

    def number(self, value, digits: int | None = None) -> str:
        if _is_missing(value):
            return self.t("common.none")
        pattern = "#,##0.##" if digits is None else ("#,##0." + "0" * digits if digits else "#,##0")
        return format_decimal(value, pattern, locale=self.babel)

    def score(self, value) -> str:
        """A health score (0-100): at most one decimal."""
        if _is_missing(value):
            return self.t("common.none")
        return format_decimal(value, "#,##0.#", locale=self.babel)

    def label_or(self, value, prefix: str) -> str:
        """The label ``prefix.value`` if the label files have one, else the value as it is (data such as
        opportunity kinds or seniorities may be free text)."""
        if value is None or value == "":
            return self.t("common.none")
        return self.labels.get(f"{prefix}.{value}", str(value))

    def signed(self, value, pattern: str = "#,##0.#") -> str:
        if _is_missing(value):
            return self.t("common.none")
        if value == 0:
            return format_decimal(0, pattern, locale=self.babel)
        return format_decimal(value, f"+{pattern};-{pattern}", locale=self.babel)

    def percent(self, value, digits: int = 1) -> str:
        if _is_missing(value):
            return self.t("common.none")
        pattern = "#,##0." + "0" * digits + "%" if digits else "#,##0%"
        return format_percent(value, pattern, locale=self.babel)

    def money(self, value, digits: int | None = None) -> str:
        """Amount in the project currency; no cents from 100 up (tables of large amounts stay readable)."""
        if _is_missing(value):
            return self.t("common.none")
        if digits is None:
            digits = 0 if abs(value) >= 100 else 2
        pattern = Locale.parse(self.babel).currency_formats["standard"].pattern.split(";")[0]
        pattern = re.sub(r"\.0+", "." + "0" * digits if digits else "", pattern)
        return format_currency(value, self.currency, pattern, locale=self.babel, currency_digits=False)

    def date(self, value, fmt: str = "medium") -> str:
        if value is None or value == "":
            return self.t("common.none")
        return format_date(as_date(value), fmt, locale=self.babel)

    def timestamp(self, value: datetime) -> str:
        """A run's timestamp in the project time zone, language-neutral (ISO-like) for audit."""
        local = value.astimezone(ZoneInfo(self.timezone))
        return f"{local:%Y-%m-%d %H:%M} {self.timezone}"

    def period(self, label: str) -> str:
        label = str(label)
        if m := _MONTH.match(label):
            return format_skeleton("yMMMM", date(int(m[1]), int(m[2]), 1), locale=self.babel)
        if m := _QUARTER.match(label):
            return self.t("period.fiscal_quarter" if m[1] else "period.quarter", year=m[2], quarter=m[3])
        if m := _YEAR.match(label):
            return self.t("period.fiscal_year" if m[1] else "period.year", year=m[2])
        return label

    # ------------------------------------------------------------------ KPIs and statuses

    def unit_value(self, value, unit: str | None) -> str:
        if _is_missing(value):
            return self.t("common.none")
        if unit == "percent":
            return self.percent(value)
        if unit == "currency":
            return self.money(value)
        text = format_decimal(value, _UNIT_PATTERNS.get(unit or "number", "#,##0.##"), locale=self.babel)
        return self.t(_UNIT_LABELS[unit], value=text) if unit in _UNIT_LABELS else text

    def kpi_value(self, kpi: dict) -> str:
        return self.unit_value(kpi.get("value"), kpi.get("unit"))

    def kpi_target(self, kpi: dict) -> str:
        return self.unit_value(kpi.get("target"), kpi.get("unit"))

    def kpi_change(self, kpi: dict) -> str:
        """Change against the previous period: percentage points for percent KPIs, else in the KPI's unit."""
        change, unit = kpi.get("change"), kpi.get("unit")
        if _is_missing(change):
            return self.t("common.none")
        if unit == "percent":
            return self.t("units.pp", value=self.signed(change * 100))
        if unit == "currency":
            text = self.money(abs(change))
            return text if change == 0 else ("+" if change > 0 else "-") + text
        text = self.signed(change, _UNIT_PATTERNS.get(unit or "number", "#,##0.##"))
        return self.t(_UNIT_LABELS[unit], value=text) if unit in _UNIT_LABELS else text

    def kpi_label(self, kpi_id: str, kpi: dict | None = None) -> str:
        label = (kpi or {}).get("label") or {}
        if isinstance(label, dict) and (label.get(self.locale) or label.get("en")):
            return label.get(self.locale) or label["en"]
        info = BUILTIN_KPIS.get(kpi_id) or PORTFOLIO_KPIS.get(kpi_id)
        return info.label(self.locale) if info else kpi_id

    def status_label(self, status: str | None) -> str:
        return self.t(f"status.{status or 'no_data'}")

    def health_label(self, status: str | None) -> str:
        return self.t(f"health.{status or 'not_scored'}")

    def trend_label(self, trend: str | None) -> str:
        return self.t(f"trend.{trend or 'none'}")

    def window_label(self, window: str | None) -> str:
        return self.t(f"window.{window}") if window else self.t("common.none")

    def warning_reason(self, warning: dict) -> str:
        reasons = warning.get("reasons") or {}
        return reasons.get(self.locale) or warning.get("reason") or reasons.get("en") or warning.get("code", "")


def make_i18n(template_dirs: Iterable[Path], locale: str, currency: str, timezone: str = "UTC") -> I18n:
    dirs = list(template_dirs)
    labels, files = load_labels(dirs, locale)
    return I18n(locale=locale, currency=currency, labels=labels, files=files, timezone=timezone)


def i18n_for(config, locale: str | None = None) -> I18n:
    """The I18n of a project: its locale unless one is given, its currency and time zone."""
    project = config.project
    return make_i18n(config.template_dirs(), locale or project.locale, project.currency, project.timezone)
