"""The naive way to make the reviews, for the render benchmark's ratio: pyplot charts + WeasyPrint,
one account after another in one process.

Charts: the six review charts drawn the straightforward way with pyplot (``plt.figure``, pyplot
plotting calls with matplotlib's own ticks and ``tight_layout``, ``savefig`` to SVG or PNG,
``plt.close``), from the same details, with the same titles, alt texts and data tables. Documents:
the same templates and the same ``archive_pdf_bytes`` call as the product, but WeasyPrint as it
comes: the reporter's speed-ups (render/pdf_speed.py: shared fonts and stylesheet, one-pass font
subsetting, PNG pass-through) are switched off in this process, so every document builds its own
font configuration and parses its own stylesheet.

Run in a fresh process by bench/render/run.py (so nothing warm carries over from the measured
run) and prints one JSON line: seconds per review and what was rendered.

    python -m bench.render.baseline --project DIR --accounts 50 [--format svg|png]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the baseline is the pyplot way on purpose)

CHANNELS = ("meeting", "call", "email", "visit", "review")
SENIORITIES = ("staff", "manager", "director", "executive")
STATUS = {"green": "#009E73", "amber": "#E69F00", "red": "#D55E00"}


def _save(fig, fmt: str) -> str | bytes:
    fig.tight_layout()
    if fmt == "svg":
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
        text = buf.getvalue()
        return text[text.index("<svg"):]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    plt.close(fig)
    return buf.getvalue()


def _months(series) -> list[str]:
    return [p["month"] for p in series]


def health_trend(account, bands, fmt):
    series = account.get("health_trend") or []
    fig = plt.figure(figsize=(6.3, 2.0))
    plt.axhspan(0, bands["red_below"], color=STATUS["red"], alpha=0.12)
    plt.axhspan(bands["red_below"], bands["green_from"], color=STATUS["amber"], alpha=0.12)
    plt.axhspan(bands["green_from"], 100, color=STATUS["green"], alpha=0.12)
    x = [p["period"] for p in series]
    y = [p["health_score"] if p["health_score"] is not None else float("nan") for p in series]
    plt.plot(x, y, marker="o", color="#0072B2")
    for name, lo, hi in (("Red", 0, bands["red_below"]), ("Amber", bands["red_below"], bands["green_from"]),
                         ("Green", bands["green_from"], 100)):
        plt.text(len(x) - 0.4, (lo + hi) / 2, name, va="center", fontsize=7)
    plt.ylim(0, 100)
    plt.ylabel("Health score")
    plt.xticks(fontsize=6)
    return _save(fig, fmt)


def revenue_by_month(details, fmt):
    series = details.get("revenue_by_month") or []
    fig = plt.figure(figsize=(6.3, 2.0))
    x = _months(series)
    plt.bar(x, [p["revenue"] for p in series], color="#0072B2", label="Revenue")
    plt.plot(x, [p["prior_year_revenue"] for p in series], "k--", marker="o", label="Prior year")
    plt.legend(fontsize=7)
    plt.xticks(fontsize=6)
    plt.yticks(fontsize=6)
    return _save(fig, fmt)


def satisfaction_trend(details, fmt):
    series = details.get("surveys_by_month") or []
    fig = plt.figure(figsize=(6.3, 2.0))
    x = _months(series)
    nan = float("nan")
    plt.plot(x, [p["nps"] if p["nps"] is not None else nan for p in series], marker="o", label="NPS")
    plt.plot(x, [100 * p["csat"] if p["csat"] is not None else nan for p in series], marker="s",
             label="CSAT (% scoring 4-5)")
    plt.ylim(-105, 105)
    plt.legend(fontsize=7)
    plt.xticks(fontsize=6)
    return _save(fig, fmt)


def service(details, fmt):
    series = details.get("service_by_month") or []
    x = _months(series)
    nan = float("nan")
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.3, 2.0))
    left.bar(x, [p["tickets"] for p in series], color="#56B4E9", label="Tickets")
    left.bar(x, [p["complaints"] for p in series], color="#0072B2", label="Complaints")
    left.legend(fontsize=6)
    left.tick_params(labelsize=5)
    for key, label in (("first_response_hours", "First response"), ("resolution_hours", "Resolution"),
                       ("sla_hours", "SLA")):
        right.plot(x, [p[key] if p[key] is not None else nan for p in series], marker="o", label=label)
    right.legend(fontsize=6)
    right.tick_params(labelsize=5)
    return _save(fig, fmt)


def interaction_frequency(details, fmt):
    series = details.get("interactions_by_month") or []
    x = _months(series)
    fig = plt.figure(figsize=(6.3, 2.0))
    bottom = [0] * len(series)
    for channel in CHANNELS:
        values = [p.get(channel, 0) for p in series]
        plt.bar(x, values, bottom=bottom, label=channel.capitalize())
        bottom = [b + v for b, v in zip(bottom, values)]
    plt.legend(fontsize=6, ncols=5)
    plt.xticks(fontsize=6)
    return _save(fig, fmt)


def relationship_map(details, fmt):
    rmap = details.get("relationship_map") or {}
    departments = rmap.get("departments") or []
    cells = rmap.get("cells") or {}
    fig = plt.figure(figsize=(6.3, max(1.2, 0.3 * len(departments) + 0.8)))
    for y, department in enumerate(departments):
        for x, seniority in enumerate(SENIORITIES):
            count = (cells.get(department) or {}).get(seniority) or 0
            if count:
                plt.scatter([x], [y], s=60 + 40 * count, color="#0072B2")
                plt.text(x, y, str(count), ha="center", va="center", color="white", fontsize=6)
    plt.xticks(range(len(SENIORITIES)), [s.capitalize() for s in SENIORITIES], fontsize=6)
    plt.yticks(range(len(departments)), departments, fontsize=6)
    plt.xlim(-0.5, len(SENIORITIES) - 0.5)
    plt.ylim(-0.5, len(departments) - 0.5)
    return _save(fig, fmt)


def pyplot_charts(account, details, bands, product_charts, fmt):
    """The six charts drawn with pyplot; titles, alt texts and tables taken from the product's charts."""
    from reporter.render.charts import Chart

    images = [health_trend(account, bands, fmt), revenue_by_month(details, fmt), satisfaction_trend(details, fmt),
              service(details, fmt), interaction_frequency(details, fmt), relationship_map(details, fmt)]
    charts = []
    for chart, image in zip(product_charts, images):
        if fmt == "svg":
            charts.append(Chart(chart.id, chart.title, chart.alt, image, chart.table))
        else:
            charts.append(Chart(chart.id, chart.title, chart.alt, "", chart.table, image))
    return charts


def stock_weasyprint() -> None:
    """Switch the reporter's WeasyPrint speed-ups off in this process."""
    from weasyprint.text.fonts import FontConfiguration

    from reporter.render import pdf_speed

    pdf_speed.install = lambda: False
    pdf_speed.font_configuration = lambda key: FontConfiguration()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.render.baseline")
    parser.add_argument("--project", required=True)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--format", choices=("svg", "png"), default="svg")
    parser.add_argument("--period", default="2026-10")
    args = parser.parse_args(argv)

    from bench.render.data import GENERATED_AT, ensure_computed
    from reporter.config import load_project
    from reporter.render import archive_pdf_bytes
    from reporter.render.chart_set import charts_for_report, health_bands

    stock_weasyprint()
    root = Path(args.project)
    computed = ensure_computed(root, args.period)
    config = load_project(root)
    bands = health_bands(config)
    report = "account_reviews"
    accounts = computed.scorecard["accounts"][:args.accounts]
    labels = charts_for_report(config, report, computed.scorecard, computed.details, computed.portfolio, "en")
    sizes = []
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    for account in accounts:
        details = computed.details.get(account["account_id"]) or {}
        # The product's charts are drawn only for their titles, alt texts and tables, outside the clock.
        paused_wall, paused_cpu = time.perf_counter(), time.process_time()
        product = labels(account)
        started_wall += time.perf_counter() - paused_wall
        started_cpu += time.process_time() - paused_cpu
        charts = pyplot_charts(account, details, bands, product, args.format)
        pdf = archive_pdf_bytes(config, report, computed.scorecard, account["account_id"], details, charts=charts,
                                generated_at=GENERATED_AT, report_id=computed.report_ids[report], locale="en")
        sizes.append(len(pdf))
    wall = time.perf_counter() - started_wall
    cpu = time.process_time() - started_cpu
    result = {"accounts": len(accounts), "format": args.format, "wall_s": wall, "cpu_s": cpu,
              "s_per_review": wall / len(accounts), "reviews_per_s": len(accounts) / wall,
              "mean_pdf_bytes": sum(sizes) / len(sizes)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
