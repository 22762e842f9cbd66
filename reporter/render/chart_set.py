"""The charts of one report run: ``charts_for_report`` builds the ``charts_for(account_or_None)``
callable that ``render_report`` takes (and whose result ``archive_pdf_bytes`` takes as ``charts=``).

Chart texts come from the locale's label files (``chart.*``, ``channel.*``, ``seniority.*`` and
``status.*`` keys of report_templates/i18n/<locale>.yaml, a project's own files overriding single
keys), the health bands from tiers.yaml. The portfolio's charts are drawn once per factory.
"""
from __future__ import annotations

from typing import Callable, Iterable

from ..errors import RenderError
from .charts import Chart, account_charts, image_formats, portfolio_charts
from .i18n import i18n_for

__all__ = ["charts_for_report", "health_bands"]


def health_bands(config) -> dict[str, float]:
    """The project's health bands in the shape the charts take."""
    bands = config.tiers.health_bands
    return {"red_below": bands.red_below, "green_from": bands.green_from}


def charts_for_report(
    config,
    report_name: str,
    scorecard: dict,
    details_by_account: dict[str, dict] | None,
    portfolio_details: dict | None,
    locale: str | None = None,
    formats: Iterable[str] = ("svg",),
) -> Callable[[dict | None], list[Chart]]:
    """``charts_for(account)``: the review charts of a scorecard account; ``charts_for(None)``: the portfolio's.

    ``locale`` None means the project's locale, as in ``render_report``. Labels come from
    ``i18n_for(config, locale)``; a key no label file defines falls back to English (charts.EN_LABELS).
    ``formats``: the chart encodings to draw, ``svg`` (the HTML's) and/or ``png`` (the PDF's,
    see ``html.chart_view``); a PDF-only run asks for ``png`` alone.
    """
    if report_name not in config.reports:
        raise RenderError(f'no report "{report_name}" in reports.yaml; reports are: {", ".join(config.reports)}')
    i18n = i18n_for(config, locale)
    t = i18n.labels  # a mapping: charts._translator looks keys up and falls back to English
    bands = health_bands(config)
    details_by_account = details_by_account or {}
    portfolio: list[Chart] | None = None
    formats = tuple(formats)

    def charts_for(account: dict | None) -> list[Chart]:
        nonlocal portfolio
        if account is None:
            if portfolio is None:
                with image_formats(formats):
                    portfolio = portfolio_charts(scorecard, portfolio_details or {}, t, i18n.locale, bands)
            return list(portfolio)
        details = details_by_account.get(str(account["account_id"])) or {}
        with image_formats(formats):
            return account_charts(account, details, bands, t, i18n.locale)

    return charts_for
