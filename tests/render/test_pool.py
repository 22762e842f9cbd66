"""Many documents at once: the worker pool gives the same bytes as one process, every job once, and
keeps a failing account to itself. Charts for the PDF are PNG; the HTML keeps SVG."""
from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from reporter.render import pdf_speed, pool
from reporter.render.chart_set import charts_for_report
from reporter.render.charts import PNG_DPI, WIDTH, account_charts, revenue_by_month
from reporter.render.html import chart_uri, chart_view, print_images
from reporter.render.pool import Job, RenderContext, render_documents, render_one

from render.test_charts import make_details


@pytest.fixture
def context(tmp_path, synthetic):
    config = synthetic.config(tmp_path)
    scorecard = synthetic.scorecard()
    details = {a: synthetic.details(a) for a in ("A001", "A002", "A003")}
    return RenderContext(config, "reviews", scorecard, details, None, synthetic.generated_at, synthetic.report_id)


JOBS = [Job(a, locale) for a in ("A001", "A002", "A003") for locale in ("en", "zh_CN")]


def test_pool_renders_every_job_once_with_the_bytes_of_one_process(context, monkeypatch):
    monkeypatch.setattr(pool, "MIN_JOBS_FOR_POOL", 1)
    seen = []
    pooled = render_documents(context, JOBS, workers=2, progress=lambda done, total, r: seen.append((done, total)))
    assert sorted(pooled) == sorted(j.key for j in JOBS)
    assert seen == [(n, len(JOBS)) for n in range(1, len(JOBS) + 1)]
    assert len({r.pid for r in pooled.values()}) >= 2  # the parent renders one, the workers the rest
    for job in JOBS:
        result = pooled[job.key]
        assert result.error is None and result.pdf.startswith(b"%PDF-")
        assert result.rss > 0 and result.peak_rss >= result.rss
        assert render_one(context, job).pdf == result.pdf  # byte for byte, whichever process made it


def test_a_failing_account_does_not_stop_the_others(context, monkeypatch):
    monkeypatch.setattr(pool, "MIN_JOBS_FOR_POOL", 1)
    context.account("A002")["name"] = "Phoenician \U00010900 Trading"  # no installed font has this glyph
    results = render_documents(context, JOBS, workers=2)
    assert all(results[("A002", locale)].error and "U+10900" in results[("A002", locale)].error
               for locale in ("en", "zh_CN"))
    assert all(results[(a, locale)].pdf for a in ("A001", "A003") for locale in ("en", "zh_CN"))


def test_recycled_workers_give_the_same_documents(context, monkeypatch):
    monkeypatch.setattr(pool, "MIN_JOBS_FOR_POOL", 1)
    once = render_documents(context, JOBS, workers=2)
    recycled = render_documents(context, JOBS, workers=2, recycle_after=1)
    assert {k: r.pdf for k, r in once.items()} == {k: r.pdf for k, r in recycled.items()}


def test_few_jobs_render_in_this_process(context):
    results = render_documents(context, JOBS[:2], workers=2)
    assert {r.pid for r in results.values()} == {__import__("os").getpid()}


# --------------------------------------------------------------------------- chart encodings

def test_png_charts_for_the_pdf_svg_for_the_html(context):
    charts = charts_for_report(context.config, "reviews", context.scorecard, context.details, None, "en",
                               formats=("png",))(context.account("A001"))
    assert charts and all(c.svg == "" and c.png.startswith(b"\x89PNG") for c in charts)
    image = Image.open(io.BytesIO(charts[1].png))
    assert image.mode == "RGB" and image.size[0] == round(WIDTH * PNG_DPI)
    both = account_charts(context.account("A001"), context.details["A001"], {"red_below": 50, "green_from": 75},
                          formats=("svg", "png"))
    assert all(c.svg.startswith("<svg") and c.png for c in both)
    assert [c.png for c in both] == [c.png for c in charts]  # the same pictures, whatever else is drawn
    view_print, view_html = chart_view(both[1], for_print=True), chart_view(both[1])
    assert view_print.uri == chart_uri(both[1].png) and view_html.uri.startswith("data:image/svg+xml")
    assert print_images(both)[view_print.uri] == both[1].png  # what render_pdf's fetcher serves for that URI


def test_png_is_deterministic_and_svg_only_by_default():
    alone = revenue_by_month(make_details(5))
    assert alone.png is None and alone.svg.startswith("<svg")
    first = account_charts({"kpis": {}}, make_details(5), {"red_below": 50, "green_from": 75}, formats=("png",))
    second = account_charts({"kpis": {}}, make_details(5), {"red_below": 50, "green_from": 75}, formats=("png",))
    assert [c.png for c in first] == [c.png for c in second]


def test_png_holds_exactly_the_canvas_pixels():
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from reporter.render import charts

    fig = Figure(figsize=(3.1, 1.3), dpi=97)  # odd sizes: rows whose length is not a multiple of 4
    ax = fig.add_subplot()
    ax.bar(range(5), [3, 1, 4, 1, 5], color="#E69F00")
    ax.text(0.5, 0.5, "Σ 42", transform=ax.transAxes)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    decoded = Image.open(io.BytesIO(charts._png_bytes(canvas)))
    assert decoded.mode == "RGB"
    assert np.array_equal(np.asarray(decoded), np.asarray(canvas.buffer_rgba())[..., :3])


def test_png_pixel_data_goes_into_the_pdf_as_is():
    image = Image.new("RGB", (7, 3), "#0072B2")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    width, height, idat = pdf_speed.png_idat(out.getvalue())
    assert (width, height) == (7, 3) and idat[:1] == b"\x78"  # a zlib stream
    rgba = io.BytesIO()
    Image.new("RGBA", (7, 3)).save(rgba, format="PNG")
    assert pdf_speed.png_idat(rgba.getvalue()) is None  # alpha: WeasyPrint's own path
    assert pdf_speed.png_idat(b"GIF89a" + struct.pack(">I", 0)) is None
