"""Charts for reviews and the leadership scorecard: matplotlib Figure API to SVG strings.

No pyplot: charts are ``Figure`` objects printed through the SVG and Agg canvases, so
no global figure state accumulates across a thousand reviews. One shared theme (``THEME``,
applied with ``rc_context``) sets fonts, sizes and the byte-for-byte determinism
switches (fixed hash salt, no date, glyphs as paths so the PDF needs no chart fonts).

Speed, measured rather than guessed: most of a small chart's cost is text (every label
is laid out and turned into glyph paths, ~0.5 ms each) and matplotlib's tick machinery
(three lines and two texts per tick, re-measured on every draw). So layouts are fixed
in inches (no tight_layout), month and y labels are plain texts at fixed levels, bars
are one PolyCollection each, and charts carry few labels. Glyph count also drives the
PDF's cost: WeasyPrint redraws every glyph path of an embedded SVG.

The review charts go further (``_Plate``): each kind's figure is built once per process and
set of labels, with everything that does not depend on the account (axes, band fills, month
labels, fixed scales, legends), and rasterised once; a review only adds and draws its data
artists over a copy of those pixels. Measured on the benchmark's reviews: ~420 -> ~100 ms CPU
for the six charts (PNG), the pictures unchanged. At most ``PLATES_KEPT`` figures are kept.

Colours are Okabe-Ito, and status is never colour alone: band names, legends, cell
letters and tables say it in words. Every chart has an alt sentence and a table
(header row first, all strings) for the HTML fallback.

Text comes from a ``t(key) -> str`` callable (or a dict) supplied by the caller's i18n;
``EN_LABELS`` lists every key used here and ``default_t`` serves them in English.
Keys ending in ``.alt`` are ``str.format`` templates.
"""
from __future__ import annotations

import functools
import io
import math
import re
import struct
import subprocess
import threading
import warnings
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font, RenderMode
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.transforms import ScaledTranslation
from zlib_ng import zlib_ng

from ..errors import RenderError

# --- theme -----------------------------------------------------------------------------

GREEN, AMBER, RED, NO_DATA, PRIMARY = "#009E73", "#E69F00", "#D55E00", "#999999", "#0072B2"
SKY, PURPLE, YELLOW, INK, GRID, MUTED = "#56B4E9", "#CC79A7", "#F0E442", "#333333", "#DDDDDD", "#444444"

STATUS_COLOURS = {
    "green": GREEN, "amber": AMBER, "red": RED,
    "no_data": NO_DATA, "low_sample": "#CCCCCC", "ok": SKY,
    "insufficient_data": NO_DATA, "not_scored": NO_DATA,
}
# Band names drawn in the status colour; amber text is darkened to stay readable on white.
STATUS_TEXT_COLOURS = {"green": GREEN, "amber": "#9A6A00", "red": RED}
CHANNELS = ("meeting", "call", "email", "visit", "review")
CHANNEL_COLOURS = {"meeting": PRIMARY, "call": SKY, "email": PURPLE, "visit": YELLOW, "review": INK,
                   "other": "#BBBBBB"}
SENIORITIES = ("staff", "manager", "director", "executive")

THEME: dict[str, object] = {
    # The documents' stack (styles/base.css): Noto Sans for Latin, Noto Sans CJK for Chinese, then
    # DejaVu for what both lack (per-glyph fallback). The documents' Noto Sans Symbols is left out:
    # it is there for arrows, and no chart draws one.
    "font.family": ["Noto Sans", "Noto Sans CJK SC", "DejaVu Sans"],
    "font.size": 7.0,
    "axes.titlesize": 7.0,
    "axes.titlelocation": "left",
    "axes.titley": 1.0,  # fixed: an automatic title position re-measures all tick labels per draw
    "axes.titlepad": 3.0,
    "axes.labelsize": 6.5,
    "xtick.labelsize": 6.0,
    "ytick.labelsize": 6.0,
    "legend.fontsize": 6.5,
    "legend.frameon": False,
    "legend.handlelength": 1.4,
    "legend.handletextpad": 0.4,
    "legend.columnspacing": 1.0,
    "legend.borderaxespad": 0.0,
    "text.color": "#222222",
    "axes.labelcolor": "#222222",
    "axes.edgecolor": "#666666",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,  # month charts draw their own grid lines (see _y_axis)
    "grid.color": GRID,
    "grid.linewidth": 0.5,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.bottom": False,  # no tick marks: labels and grid carry the scale
    "ytick.left": False,
    "xtick.major.pad": 2.0,
    "ytick.major.pad": 2.0,
    "lines.linewidth": 1.3,
    "lines.markersize": 3.0,
    "patch.linewidth": 0.0,
    "figure.facecolor": "white",
    "figure.dpi": 72.0,
    "axes.unicode_minus": True,
    # determinism and portability of the SVG
    "svg.fonttype": "path",
    "svg.hashsalt": "reporter-charts",
    "svg.image_inline": True,
    "path.simplify": True,
}

WIDTH = 6.3   # inches: one A4 text column with margins
HEIGHT = 2.0
SVG_METADATA = {"Date": None}


_IN_THEME: ContextVar[bool] = ContextVar("chart_theme", default=False)


@functools.lru_cache(maxsize=1)
def register_system_fonts() -> tuple[str, ...]:
    """Add the theme's font families that the system has but matplotlib's font list lacks; returns them.

    matplotlib keeps the font list it made the first time it ran: a face installed later (Noto
    Sans, by scripts/system-deps.sh) would be silently replaced by the next family in the stack,
    and the charts would no longer match the document. fontconfig knows the current set.
    """
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    added = []
    for family in THEME["font.family"]:
        if family in known:
            continue
        try:
            listed = subprocess.run(["fc-list", f":family={family}", "file"], capture_output=True, text=True,
                                    timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return tuple(added)  # no fontconfig tools: matplotlib's own list is all there is
        paths = [line.strip().rstrip(":") for line in listed.splitlines() if line.strip()]
        for path in sorted(p for p in paths if p.lower().endswith((".ttf", ".otf", ".ttc"))):
            font_manager.fontManager.addfont(path)
        if paths:
            added.append(family)
    return tuple(added)


@contextmanager
def theme() -> Iterator[None]:
    """The shared chart style; safe to nest (an inner block costs nothing: entering copies all rcParams)."""
    if _IN_THEME.get():
        yield
        return
    register_system_fonts()
    token = _IN_THEME.set(True)
    try:
        with matplotlib.rc_context(THEME):
            yield
    finally:
        _IN_THEME.reset(token)


# --- labels ----------------------------------------------------------------------------

EN_LABELS: dict[str, str] = {
    "chart.no_data": "No data",
    "chart.month": "Month",
    "chart.period": "Period",
    "chart.account": "Account",
    "chart.status": "Status",
    "chart.value": "Value",
    "chart.kpi": "KPI",
    "chart.target": "Target",
    "chart.change": "Change",
    "chart.responses": "Responses",
    "chart.total": "Total",
    "chart.health_trend": "Health score trend",
    "chart.health_score": "Health score",
    "chart.health_trend.alt": ("Health score for the {n} periods from {first} to {last}, on a 0-100 scale "
                               "with red below {red_below} and green from {green_from}. "
                               "Latest ({last}): {latest}, status {status}."),
    "chart.health_trend.empty_alt": "Health score trend: no health scores are available yet.",
    "chart.revenue": "Revenue by month",
    "chart.portfolio_revenue": "Portfolio revenue by month",
    "chart.this_year": "Revenue",
    "chart.prior_year": "Prior year",
    "chart.revenue.alt": ("Monthly revenue from {first} to {last} as bars, with the same months a year "
                          "earlier as a line. {last}: {latest} (prior year {prior}). "
                          "12 months: {total} (prior year {prior_total})."),
    "chart.satisfaction": "NPS and CSAT",
    "chart.nps": "NPS",
    "chart.csat": "CSAT (% scoring 4-5)",
    "chart.satisfaction.alt": ("Monthly NPS (-100 to 100) and CSAT (share of responses scoring 4-5) from "
                               "{first} to {last}. Latest NPS: {nps} from {nps_n} responses ({nps_month}); "
                               "latest CSAT: {csat} from {csat_n} responses ({csat_month})."),
    "chart.service": "Service: tickets and response times",
    "chart.tickets": "Tickets",
    "chart.complaints": "Complaints",
    "chart.first_response": "First response",
    "chart.resolution": "Resolution",
    "chart.sla": "SLA",
    "chart.service.alt": ("Tickets opened per month from {first} to {last} with complaints, and median "
                          "first-response and resolution hours against the SLA. {last}: {tickets} tickets, "
                          "{complaints} complaints, first response {first_response} h, resolution "
                          "{resolution} h, SLA {sla} h."),
    "chart.interactions": "Interactions by channel",
    "chart.interactions.alt": ("Interactions per month from {first} to {last}, stacked by channel. "
                               "{last}: {latest}; 12 months: {total} ({by_channel})."),
    "channel.meeting": "Meeting",
    "channel.call": "Call",
    "channel.email": "Email",
    "channel.visit": "Visit",
    "channel.review": "Review",
    "channel.other": "Other",
    "chart.relationship_map": "Relationship map",
    "chart.department": "Department",
    "chart.contacts": "Active contacts",
    "chart.decision_maker": "Includes a decision maker",
    "chart.decision_makers": "Decision makers",
    "chart.relationship_map.alt": ("Active contacts by department and seniority: {contacts} contacts in "
                                   "{departments} departments, {senior} at director or executive level. "
                                   "Decision makers: {decision_makers}."),
    "seniority.staff": "Staff",
    "seniority.manager": "Manager",
    "seniority.director": "Director",
    "seniority.executive": "Executive",
    "chart.kpi_status": "KPI status",
    "chart.kpi_status.alt": ("Status of {n} KPIs: {green} green, {amber} amber, {red} red, "
                             "{other} without a rated status."),
    "chart.heatmap": "KPI status by account",
    "chart.heatmap.alt": ("Grid of {kpis} KPIs for {shown} of {accounts} accounts, lowest health first; "
                          "each cell shows its status as a letter and a colour. "
                          "{green} green, {amber} amber, {red} red cells."),
    "chart.heatmap.more": "Showing {shown} of {accounts} accounts, lowest health first.",
    "chart.heatmap.key": ("{green_letter} {green} · {amber_letter} {amber} · {red_letter} {red} · "
                          "{low_sample_letter} {low_sample} · {no_data_letter} {no_data}"),
    "chart.health_vs_revenue": "Health score vs revenue",
    "chart.revenue_12m": "Revenue, last 12 months",
    "chart.clv_predicted": "Predicted CLV",
    "chart.bubble_size": "Bubble size: predicted CLV",
    "chart.health_vs_revenue.alt": ("{n} accounts by revenue over the last 12 months (across) and health score "
                                    "(up); bubble size is predicted CLV. {green} green, {amber} amber, {red} red; "
                                    "{unplaced} without a health score or revenue are not shown."),
    "status.green": "Green",
    "status.amber": "Amber",
    "status.red": "Red",
    "status.no_data": "No data",
    "status.low_sample": "Low sample",
    "status.ok": "OK",
    "status.insufficient_data": "Insufficient data",
    "status.not_scored": "Not scored",
    "status.letter.green": "G",
    "status.letter.amber": "A",
    "status.letter.red": "R",
    "status.letter.no_data": "–",
    "status.letter.low_sample": "L",
    "status.letter.ok": "·",
    "status.letter.insufficient_data": "–",
    "status.letter.not_scored": "–",
}


def default_t(key: str) -> str:
    """English labels; an unknown key comes back as itself so a gap is visible, not fatal."""
    return EN_LABELS.get(key, key)


Translate = Callable[[str], str]


def _translator(t: Translate | Mapping[str, str] | None) -> Translate:
    """Accept a callable or a labels dict; fall back to English where the caller has no text."""
    if t is None:
        return default_t
    lookup = t.get if isinstance(t, Mapping) else t

    def translate(key: str) -> str:
        text = lookup(key)
        return EN_LABELS.get(key, key) if text is None or text == key else text

    return translate


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "–"


def _fill(template: str, **values) -> str:
    """Fill a translated template; a placeholder the values lack shows as a dash, not a crash."""
    return template.format_map(_Blank(values))


# --- the chart object and SVG output ----------------------------------------------------


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    alt: str
    svg: str
    table: list[list[str]] = field(default_factory=list)
    png: bytes | None = None  # the same chart rasterised (PNG_DPI), when PNG was asked for (image_formats)


# Which encodings the chart functions produce: SVG for the HTML (vector, glyphs as paths, scales on
# any screen) and PNG for the PDF (WeasyPrint draws an SVG's glyph paths one by one, ~60 ms a
# chart; a PNG it embeds in a few milliseconds). Set for a block with ``image_formats``.
IMAGE_FORMATS = ("svg", "png")
PNG_DPI = 150
# Deflate by zlib-ng at its level 2: smaller than zlib's level 1 on charts (91 against 100 KiB for a
# review's six) in a third of the time (3.0 against 9.5 ms a review). (ISA-L was faster still, but
# its output for the same rows varied from process to process.)
PNG_COMPRESS_LEVEL = 2
_FORMATS: ContextVar[tuple[str, ...]] = ContextVar("chart_image_formats", default=("svg",))


@contextmanager
def image_formats(formats: Iterable[str]) -> Iterator[None]:
    """Charts drawn inside the block carry these encodings (``svg`` and/or ``png``); the other is
    left empty (``svg`` "" or ``png`` None)."""
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in IMAGE_FORMATS]
    if unknown or not formats:
        raise RenderError(f"unknown chart image format {', '.join(unknown) or '(none)'}; use svg and/or png")
    token = _FORMATS.set(formats)
    try:
        yield
    finally:
        _FORMATS.reset(token)


_SVG_OPEN = re.compile(r"<svg\b[^>]*>")


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _encode(fig: Figure, chart_id: str, title: str, alt: str,
            print_png: Callable[[Figure], bytes] | None = None) -> tuple[str, bytes | None]:
    """``fig`` as (SVG string, PNG bytes) in the encodings ``image_formats`` asked for; RenderError
    if a glyph has no font. ``print_png`` rasterises (default: a full draw, ``_print_png``)."""
    formats = _FORMATS.get()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        svg = _print_svg(fig, title, alt) if "svg" in formats else ""
        png = (print_png or _print_png)(fig) if "png" in formats else None
    missing = sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})
    if missing:
        raise RenderError(f"chart {chart_id}: text has characters no installed font covers "
                          f"(install a font for them): {'; '.join(missing)}")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return svg, png


def _to_svg(fig: Figure, chart_id: str, title: str, alt: str) -> str:
    """Print ``fig`` as an SVG string with <title>/<desc>; RenderError if a glyph has no font."""
    with image_formats(("svg",)):
        return _encode(fig, chart_id, title, alt)[0]


def _print_svg(fig: Figure, title: str, alt: str) -> str:
    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata=SVG_METADATA)
    svg = buf.getvalue()
    # The XML prolog and DOCTYPE get in the way of inlining; the root keeps its namespaces.
    svg = svg[svg.index("<svg"):]
    head = _SVG_OPEN.search(svg)
    return (head.group(0)[:-1] + ' role="img">'
            + f"\n <title>{_xml_escape(title)}</title>\n <desc>{_xml_escape(alt)}</desc>"
            + svg[head.end():])


# matplotlib 3.11's Agg text internals, which _Renderer's fast path drives; other versions draw as usual.
_FAST_TEXT = matplotlib.__version__.startswith("3.11.") and all(
    hasattr(FT2Font, name) for name in ("_layout", "_render_glyph", "_set_transform"))
_UNROTATED = np.array([[0x10000, 0], [0, 0x10000]])  # FreeType's 16.16 identity matrix


class _Renderer(RendererAgg):
    """RendererAgg with a faster way to draw unrotated text set in one font (no fallback glyphs).

    matplotlib 3.11 shapes every text again on each draw (~0.3 ms) and sets the font size again
    before every glyph, which makes FreeType redo its per-size work (~40 us a glyph). Here each
    text's glyph ids and offsets are kept (they depend only on the text, the font file, the size,
    the resolution and the hinting), the size is set once per text, and each glyph is rendered
    at the same position as matplotlib would: the pixels are the same (tested). No FT2Font object
    is kept: the font comes from matplotlib's own cache on every draw. ~10 ms a review.

    Glyph images are kept too: FreeType hints a glyph before it moves it, so the image of a glyph
    depends on its position only through the position's fraction of a pixel (1/64ths), and one
    drawn a whole number of pixels away is the same image moved. Labels and numbers repeat at the
    same places (grids, axes) from review to review.
    """

    _layouts: "OrderedDict[tuple, tuple]" = OrderedDict()
    _KEEP = 4096
    _glyphs: "OrderedDict[tuple, tuple]" = OrderedDict()
    _GLYPHS_KEPT = 16384
    _lock = threading.Lock()

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath or angle or not _FAST_TEXT:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        font = self._prepare_font(prop)
        features = mtext.get_fontfeatures() if mtext is not None else None
        language = mtext.get_language() if mtext is not None else None
        flags = get_hinting_flag()
        size = prop.get_size_in_points()
        key = (s, font.fname, size, self.dpi, flags, features if features is None else tuple(features), language)
        with self._lock:
            glyphs = self._layouts.get(key)
        if glyphs is None:
            items = font._layout(s, flags=flags, features=features, language=language)
            if any(item.ft_object is not font for item in items):  # a fallback font: matplotlib's own way
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            glyphs = tuple((item.glyph_index, item.x, item.y) for item in items)
            with self._lock:
                self._layouts[key] = glyphs
                while len(self._layouts) > self._KEEP:
                    self._layouts.popitem(last=False)
        mode = RenderMode.NORMAL if gc.get_antialiased() else RenderMode.MONO
        face = (font.fname, size, self.dpi, flags, mode)
        sized = False
        for index, dx, dy in glyphs:  # as RendererAgg._draw_text_glyphs_and_boxes at angle 0
            at_x, at_y = round(0x40 * (x + dx)), round(0x40 * (self.height - y + dy))  # 26.6 fixed point
            key = (face, index, at_x & 0x3F, at_y & 0x3F)
            with self._lock:
                image = self._glyphs.get(key)
            if image is None:
                if not sized:
                    font.set_size(size, self.dpi)
                    sized = True
                font._set_transform(_UNROTATED, [at_x & 0x3F, at_y & 0x3F])
                bitmap = font._render_glyph(index, flags, mode)
                buffer = np.array(bitmap.buffer)
                if mode is RenderMode.MONO:
                    buffer *= 0xff
                image = (buffer, bitmap.left, bitmap.top)
                with self._lock:
                    self._glyphs[key] = image
                    if len(self._glyphs) > self._GLYPHS_KEPT:
                        self._glyphs.popitem(last=False)
            buffer, left, top = image
            self._renderer.draw_text_image(buffer, left + (at_x >> 6), int(self.height) - (top + (at_y >> 6))
                                           + buffer.shape[0], 0, gc)


class _Canvas(FigureCanvasAgg):
    """An Agg canvas that draws with one renderer per image size for the whole process.

    matplotlib caches text metrics per renderer; a fresh canvas per chart would lay out every
    label from scratch, while month names, axis labels and legend entries repeat in every review.
    Drawing clears the renderer first, so nothing of one chart shows in the next.
    """

    _renderers: "OrderedDict[tuple, RendererAgg]" = OrderedDict()
    _KEEP = 24

    def get_renderer(self):
        w, h = self.figure.bbox.size
        key = (w, h, self.figure.dpi)
        renderer = self._renderers.pop(key, None)
        if renderer is None:
            renderer = _Renderer(w, h, self.figure.dpi)
            while len(self._renderers) >= self._KEEP:
                self._renderers.popitem(last=False)
        self._renderers[key] = renderer
        self.renderer = renderer
        return renderer


def _print_png(fig: Figure) -> bytes:
    """``fig`` rasterised at PNG_DPI as an opaque RGB PNG (no metadata: same figure, same bytes)."""
    with _png_dpi(fig):
        canvas = _Canvas(fig)
        canvas.draw()
        return _png_bytes(canvas)


@contextmanager
def _png_dpi(fig: Figure) -> Iterator[None]:
    dpi = fig.dpi
    fig.dpi = PNG_DPI  # sizes are in inches and points, so the picture is the SVG's, only finer
    try:
        yield
    finally:
        fig.dpi = dpi


def _png_bytes(canvas: FigureCanvasAgg) -> bytes:
    """The canvas as an opaque 8-bit RGB PNG, every scanline unfiltered (filter type 0, no metadata).

    Charts are mostly runs of flat colour, which deflate alone packs about as small as PNG's adaptive
    filters do (measured: 17.9 vs 17.8 KiB a chart) in well under PIL's time.
    """
    rgba = np.asarray(canvas.buffer_rgba())
    height, width = rgba.shape[:2]
    rows = np.empty((height, 1 + 3 * width), np.uint8)
    rows[:, 0] = 0  # each row's filter type
    # The pixels are copied straight into place (copy=False raises rather than copy, so the view
    # is the rows' own memory), a channel at a time: numpy copies one byte-strided channel about
    # five times faster than 3-byte pixels (0.25 against 1.3 ms a chart).
    pixels = rows[:, 1:].reshape(height, width, 3, copy=False)
    for channel in range(3):
        pixels[..., channel] = rgba[..., channel]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, not interlaced
    return b"".join((b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header),
                     _png_chunk(b"IDAT", zlib_ng.compress(rows, PNG_COMPRESS_LEVEL)), _png_chunk(b"IEND", b"")))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# --- figures kept for the process ------------------------------------------------------------


class _Plate:
    """A chart kind's figure, built once per process and key: what every chart of that kind shares
    (axes, fills, month labels, fixed scales, legends, fixed texts) is drawn by ``build``; a chart
    adds its data artists inside ``with plate.data() as axes:``, encodes, and they are taken out.

    Building axes and laying out their labels is most of a fresh figure's cost, and the shared
    parts repeat in every review. For PNG the shared part is also rasterised once: each chart
    starts from a copy of those pixels (matplotlib's blitting) and draws only its data artists
    and the spines, which a full draw paints over the data (zorder 2.5). So what ``build`` draws
    must not depend on the data: no artist placed in data coordinates on an axis whose limits a
    chart sets. SVG is always a full draw.
    """

    def __init__(self, fig: Figure):
        self.fig = fig
        self.shared = {artist for ax in fig.axes for artist in ax.get_children()}
        # Spines are drawn again over each chart's data, as a full draw layers them.
        self.over = {spine for ax in fig.axes if ax.axison for spine in ax.spines.values() if spine.get_visible()}
        self.background = None

    @contextmanager
    def data(self) -> Iterator[list]:
        try:
            yield self.fig.axes
        finally:
            for artist in self._added():
                artist.remove()

    def _added(self) -> list:
        return [artist for ax in self.fig.axes for artist in ax.get_children() if artist not in self.shared]

    def encode(self, chart_id: str, title: str, alt: str) -> tuple[str, bytes | None]:
        try:
            return _encode(self.fig, chart_id, title, alt, print_png=self._print_png)
        except RenderError:
            self.background = None  # a shared text may be what failed: draw (and check) it again next time
            raise

    def _print_png(self, fig: Figure) -> bytes:
        with _png_dpi(fig):
            canvas = _Canvas(fig)
            renderer = canvas.get_renderer()
            if self.background is None:
                self.background = self._draw_shared(canvas)
            renderer.restore_region(self.background)
            for ax in fig.axes:  # each axes' own artists in its draw order: by zorder, then as added
                drawn = [a for a in ax.get_children() if a not in self.shared or a in self.over]
                for artist in sorted(drawn, key=lambda a: a.get_zorder()):
                    artist.draw(renderer)
            return _png_bytes(canvas)

    def _draw_shared(self, canvas: FigureCanvasAgg):
        hidden = [a for a in self._added() + list(self.over) if a.get_visible()]
        for artist in hidden:
            artist.set_visible(False)
        try:
            canvas.draw()
        finally:
            for artist in hidden:
                artist.set_visible(True)
        return canvas.copy_from_bbox(self.fig.bbox)


_plates = threading.local()  # a plate is mutable while a chart is drawn on it: one set per thread
PLATES_KEPT = 32


def _plate(key: tuple, build: Callable[[], Figure]) -> _Plate:
    """The plate of ``key`` (chart kind, sizes, texts: everything ``build`` draws), built on first use."""
    kept = getattr(_plates, "kept", None)
    if kept is None:
        kept = _plates.kept = OrderedDict()
    plate = kept.pop(key, None)
    if plate is None:
        plate = _Plate(build())
        while len(kept) >= PLATES_KEPT:
            kept.popitem(last=False)
    kept[key] = plate
    return plate


# --- layout helpers -----------------------------------------------------------------------


def _figure(width: float = WIDTH, height: float = HEIGHT) -> Figure:
    return Figure(figsize=(width, height), dpi=72)


def _add_axes(fig: Figure, left: float, bottom: float, width: float, height: float):
    """Axes at a rectangle in inches, with fixed axis-label positions.

    Left automatic, matplotlib re-measures every tick label of the axis and its siblings
    on each draw just to place the axis labels.
    """
    w, h = fig.get_size_inches()
    ax = fig.add_axes((left / w, bottom / h, width / w, height / h))
    ax.xaxis.set_label_coords(0.5, -0.26 / height)
    ax.yaxis.set_label_coords(-0.36 / width, 0.5)
    return ax


def _axes(fig: Figure, left: float, right: float, bottom: float, top: float):
    """Axes placed by margins in inches: a fixed layout, no tight_layout pass."""
    w, h = fig.get_size_inches()
    return _add_axes(fig, left, bottom, w - left - right, h - bottom - top)


def _axes_pair(fig: Figure, left: float, right: float, bottom: float, top: float, gap: float):
    w, h = fig.get_size_inches()
    inner = (w - left - right - gap) / 2
    return (_add_axes(fig, left, bottom, inner, h - bottom - top),
            _add_axes(fig, left + inner + gap, bottom, inner, h - bottom - top))


def _offset(ax, transform, dx_pt: float, dy_pt: float):
    return transform + ScaledTranslation(dx_pt / 72, dy_pt / 72, ax.figure.dpi_scale_trans)


def _month_axis(ax, labels: list[str], every: int = 1) -> None:
    """Period labels under x = 0..n-1 as plain texts; with ``every`` > 1 the latest is always labelled."""
    ax.set_xticks([])
    n = len(labels)
    ax.set_xlim(-0.6, n - 0.4)
    below = _offset(ax, ax.get_xaxis_transform(), 0, -3)
    shown = [i for i in range(n) if (n - 1 - i) % every == 0]
    for i, text in zip(shown, _period_ticks([labels[i] for i in shown])):
        ax.text(i, 0, text, transform=below, ha="center", va="top", fontsize=6, color=MUTED, linespacing=1.1)


def _y_axis(ax, levels: list[float], fmt: Callable[[float], str], grid: bool = True) -> None:
    """Y labels as plain texts at fixed levels, and the grid as one LineCollection."""
    ax.set_yticks([])
    left_of = _offset(ax, ax.get_yaxis_transform(), -3, 0)
    for v in levels:
        ax.text(0, v, fmt(v), transform=left_of, ha="right", va="center", fontsize=6, color=MUTED)
    if grid:
        ax.add_collection(LineCollection([((0, v), (1, v)) for v in levels], colors=GRID, linewidths=0.5,
                                         transform=ax.get_yaxis_transform(), zorder=0.5, clip_on=False),
                          autolim=False)


def _y_scale(ax, top: float, integer: bool = False, fmt: Callable[[float], str] | None = None) -> None:
    """Y from 0 to a round number ≥ ``top`` with at most five labelled levels; no autoscale pass."""
    levels = [v for v in MaxNLocator(4, integer=integer).tick_values(0, top if top > 0 else 1) if v >= 0]
    while levels[-1] < top:  # the locator may stop one step short of the data
        levels.append(levels[-1] + (levels[1] - levels[0]))
    ax.set_ylim(0, levels[-1])
    _y_axis(ax, levels, fmt or _compact)


def _bars(ax, heights: list[float], colour: str, bottoms: list[float] | None = None, width: float = 0.7,
          edge: str | None = None) -> None:
    """Bars at x = 0..n-1 as one PolyCollection (ax.bar makes a patch per bar); ``_bar_key`` is their legend entry."""
    bottoms = bottoms or [0.0] * len(heights)
    half = width / 2
    verts = [((i - half, b), (i - half, b + h), (i + half, b + h), (i + half, b))
             for i, (h, b) in enumerate(zip(heights, bottoms)) if h]
    ax.add_collection(PolyCollection(verts, facecolors=colour, edgecolors=edge or "none",
                                     linewidths=0.3 if edge else 0.0, clip_on=False), autolim=False)


def _line(ax, values: list[float], colour: str, label: str, marker: str = "o", **kwargs) -> Line2D:
    (line,) = ax.plot(range(len(values)), values, color=colour, marker=marker, label=label, clip_on=False,
                      **kwargs)
    return line


def _bar_key(colour: str, label: str) -> Patch:
    """The legend entry of ``_bars``."""
    return Patch(facecolor=colour, label=label)


def _line_key(colour: str, label: str, marker: str = "o", **kwargs) -> Line2D:
    """The legend entry of ``_line`` with the same style."""
    return Line2D([], [], color=colour, marker=marker, label=label, **kwargs)


def _legend_above(ax, handles: list, ncols: int | None = None) -> None:
    """A one-row legend just above the axes, in the order given (bars before lines)."""
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncols=ncols or len(handles))


def _no_data_text(ax, t: Translate) -> None:
    ax.text(0.5, 0.5, t("chart.no_data"), transform=ax.transAxes, ha="center", va="center",
            color=NO_DATA, fontsize=8)


def _empty(chart_id: str, title: str, alt: str, t: Translate, header: list[str]) -> Chart:
    with theme():
        fig = _figure(WIDTH, 0.8)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        _no_data_text(ax, t)
        svg, png = _encode(fig, chart_id, title, alt)
        return Chart(chart_id, title, alt, svg, [header], png)


# --- formatting --------------------------------------------------------------------------


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _nan(v) -> float:
    return float(v) if _is_num(v) else math.nan


def _minus(text: str) -> str:
    return text.replace("-", "\u2212")


def _compact(v: float, _pos=None) -> str:
    """Axis labels: 1.2k, 3.4M; locale-neutral (en and zh_CN both group with commas)."""
    a = abs(v)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= scale:
            return _minus(f"{v / scale:.1f}".rstrip("0").rstrip(".") + suffix)
    return _minus(f"{v:.0f}") if a >= 1 or v == 0 else f"{v:.2g}"


def _money(v) -> str:
    return f"{v:,.0f}" if _is_num(v) else "–"


def _number(v, digits: int = 1) -> str:
    if not _is_num(v):
        return "–"
    text = f"{v:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _share(v) -> str:
    return f"{v * 100:.0f}%" if _is_num(v) else "–"


def _signed(v) -> str:
    return f"{v:+.0f}" if _is_num(v) else "–"


def _value(v, unit: str | None) -> str:
    """A KPI value in its catalog unit; percent and ratio are fractions (0.85 -> 85%)."""
    if not _is_num(v):
        return "–"
    if unit in ("percent", "ratio"):
        return f"{v * 100:.1f}".rstrip("0").rstrip(".") + "%"
    if unit == "currency":
        return _compact(v) if abs(v) >= 10_000 else _money(v)
    if unit == "hours":
        return f"{_number(v)} h"
    if unit == "days":
        return f"{v:,.0f} d"
    if unit == "count":
        return _number(v, 1)
    if unit == "score":
        return _number(v, 0)
    return _compact(v) if abs(v) >= 10_000 else _number(v, 2 if abs(v) < 10 else 1)


def _period_ticks(labels: list[str]) -> list[str]:
    """'2026-10' -> '10', with the year underneath wherever it differs from the label before."""
    out, year = [], None
    for lab in labels:
        if m := re.fullmatch(r"((?:FY)?\d{4})-(\d{2}|Q\d)", lab):  # month or (fiscal) quarter
            out.append(m[2] if m[1] == year else f"{m[2]}\n{m[1]}")
            year = m[1]
        else:
            out.append(lab)
    return out


def _short(text, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_text(status: str | None, t: Translate) -> str:
    return t(f"status.{status or 'no_data'}")


def _band_status(score, bands: Mapping) -> str:
    if not _is_num(score):
        return "no_data"
    if score < bands["red_below"]:
        return "red"
    return "amber" if score < bands["green_from"] else "green"


def _latest(rows: list[Mapping], key: str) -> Mapping:
    return next((r for r in reversed(rows) if _is_num(r.get(key))), {})


# --- account charts ----------------------------------------------------------------------


def health_trend(account_sc: Mapping, bands: Mapping, t: Translate = default_t) -> Chart:
    """Health score over the trend periods on red/amber/green bands, each band named in words."""
    t = _translator(t)
    chart_id, title = "health_trend", t("chart.health_trend")
    header = [t("chart.period"), t("chart.health_score"), t("chart.status")]
    series = account_sc.get("health_trend") or []
    if not any(_is_num(p.get("health_score")) for p in series):
        return _empty(chart_id, title, t("chart.health_trend.empty_alt"), t, header)
    labels = [str(p.get("period", "")) for p in series]
    scores = [p.get("health_score") for p in series]
    statuses = [_band_status(s, bands) for s in scores]
    if account_sc.get("health_status") and _is_num(scores[-1]):
        statuses[-1] = account_sc["health_status"]  # the scorecard may cap it (critical KPIs)
    red_below, green_from = float(bands["red_below"]), float(bands["green_from"])
    alt = _fill(t("chart.health_trend.alt"), n=len(labels), first=labels[0], last=labels[-1],
                red_below=_number(red_below, 0), green_from=_number(green_from, 0),
                latest=_number(scores[-1], 0), status=_status_text(statuses[-1], t))
    band_names = tuple(t(f"status.{s}") for s in ("red", "amber", "green"))
    with theme():
        plate = _plate(("health_trend", tuple(labels), red_below, green_from, band_names),
                       lambda: _health_plate(labels, red_below, green_from, band_names))
        with plate.data() as (ax,):
            _line(ax, [_nan(s) for s in scores], PRIMARY, "", markersize=3.5)
            last = max(i for i, s in enumerate(scores) if _is_num(s))
            ax.text(last, scores[last], f"{scores[last]:.0f}", transform=_offset(ax, ax.transData, 0, 5),
                    ha="center", va="bottom", fontsize=7, color=PRIMARY)
            svg, png = plate.encode(chart_id, title, alt)
    table = [header] + [[lab, _number(s, 1), _status_text(st, t)] for lab, s, st in zip(labels, scores, statuses)]
    return Chart(chart_id, title, alt, svg, table, png)


def _health_plate(labels: list[str], red_below: float, green_from: float, band_names: tuple[str, ...]) -> Figure:
    """The health chart without its line: 0-100 on tinted red/amber/green bands, each named beside the plot."""
    fig = _figure()
    ax = _axes(fig, left=0.35, right=0.7, bottom=0.3, top=0.1)
    n = len(labels)
    bands = (("red", 0, red_below), ("amber", red_below, green_from), ("green", green_from, 100))
    ax.add_collection(PolyCollection(
        [((-0.6, lo), (-0.6, hi), (n - 0.4, hi), (n - 0.4, lo)) for _, lo, hi in bands],
        facecolors=[_tint(STATUS_COLOURS[s]) for s, _, _ in bands], edgecolors="none", zorder=0, clip_on=False),
        autolim=False)
    right_of = _offset(ax, ax.get_yaxis_transform(), 4, 0)
    for (status, lo, hi), name in zip(bands, band_names):  # named beside the plot: it reads without colour
        ax.text(1, (lo + hi) / 2, name, transform=right_of, va="center", ha="left",
                color=STATUS_TEXT_COLOURS[status], fontsize=6.5)
    ax.set_ylim(0, 100)
    _y_axis(ax, [0, red_below, green_from, 100], lambda v: f"{v:.0f}", grid=False)
    _month_axis(ax, labels)
    return fig


def _tint(colour: str, strength: float = 0.15) -> str:
    """``colour`` mixed into white: a light fill without alpha (flat in every viewer)."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - c) * strength):02X}" for c in rgb)


def revenue_by_month(details: Mapping, t: Translate = default_t, *, chart_id: str = "revenue_by_month",
                     title_key: str = "chart.revenue") -> Chart:
    """This year's monthly revenue as bars, the same months a year earlier as a dashed line.

    Takes an account's details or ``portfolio_details`` (same ``revenue_by_month`` rows).
    """
    t = _translator(t)
    title = t(title_key)
    rows = details.get("revenue_by_month") or []
    header = [t("chart.month"), t("chart.this_year"), t("chart.prior_year"), t("chart.change")]
    if not rows:
        return _empty(chart_id, title, t("chart.no_data"), t, header)
    labels = [r["month"] for r in rows]
    revenue = [r.get("revenue") or 0.0 for r in rows]
    prior = [r.get("prior_year_revenue") or 0.0 for r in rows]
    total = details.get("revenue_12m", math.fsum(revenue))
    prior_total = details.get("prior_revenue_12m", math.fsum(prior))
    alt = _fill(t("chart.revenue.alt"), first=labels[0], last=labels[-1], latest=_money(revenue[-1]),
                prior=_money(prior[-1]), total=_money(total), prior_total=_money(prior_total))
    names = (t("chart.this_year"), t("chart.prior_year"))
    with theme():
        plate = _plate(("revenue_by_month", tuple(labels), names), lambda: _revenue_plate(labels, names))
        with plate.data() as (ax,):
            _bars(ax, revenue, PRIMARY)
            _line(ax, prior, INK, names[1], **PRIOR_YEAR_LINE)
            _y_scale(ax, max(revenue + prior))
            svg, png = plate.encode(chart_id, title, alt)
    table = [header] + [[lab, _money(r), _money(p), f"{(r / p - 1) * 100:+.0f}%" if p else "–"]
                        for lab, r, p in zip(labels, revenue, prior)]
    return Chart(chart_id, title, alt, svg, table, png)


PRIOR_YEAR_LINE = {"linestyle": "--", "linewidth": 1.0, "markersize": 2.5}


def _revenue_plate(labels: list[str], names: tuple[str, str]) -> Figure:
    fig = _figure()
    ax = _axes(fig, left=0.4, right=0.1, bottom=0.3, top=0.2)
    _month_axis(ax, labels)
    _legend_above(ax, [_bar_key(PRIMARY, names[0]), _line_key(INK, names[1], **PRIOR_YEAR_LINE)])
    return fig


def satisfaction_trend(details: Mapping, t: Translate = default_t) -> Chart:
    """Monthly NPS and CSAT on one -100..100 points scale (CSAT as a percentage); gaps where no responses."""
    t = _translator(t)
    chart_id, title = "satisfaction_trend", t("chart.satisfaction")
    rows = details.get("surveys_by_month") or []
    header = [t("chart.month"), t("chart.nps"), t("chart.responses"), t("chart.csat"), t("chart.responses")]
    if not rows:
        return _empty(chart_id, title, t("chart.no_data"), t, header)
    labels = [r["month"] for r in rows]
    nps = [_nan(r.get("nps")) for r in rows]
    csat = [_nan(r.get("csat")) * 100 for r in rows]
    last_nps, last_csat = _latest(rows, "nps"), _latest(rows, "csat")
    alt = _fill(t("chart.satisfaction.alt"), first=labels[0], last=labels[-1],
                nps=_signed(last_nps.get("nps")), nps_n=last_nps.get("nps_n", 0), nps_month=last_nps.get("month"),
                csat=_share(last_csat.get("csat")), csat_n=last_csat.get("csat_n", 0),
                csat_month=last_csat.get("month"))
    names = (t("chart.nps"), t("chart.csat"))
    with theme():
        plate = _plate(("satisfaction_trend", tuple(labels), names), lambda: _satisfaction_plate(labels, names))
        with plate.data() as (ax,):
            _line(ax, nps, PRIMARY, names[0])
            _line(ax, csat, PURPLE, names[1], marker="s")
            if all(math.isnan(v) for v in nps + csat):
                _no_data_text(ax, t)
            svg, png = plate.encode(chart_id, title, alt)
    table = [header] + [
        [r["month"], _signed(r.get("nps")), str(r.get("nps_n", 0)), _share(r.get("csat")), str(r.get("csat_n", 0))]
        for r in rows
    ]
    return Chart(chart_id, title, alt, svg, table, png)


def _satisfaction_plate(labels: list[str], names: tuple[str, str]) -> Figure:
    """One points scale for both: -100..100, with the zero line."""
    fig = _figure()
    ax = _axes(fig, left=0.4, right=0.1, bottom=0.3, top=0.2)
    ax.set_ylim(-108, 108)  # room for markers at the limits
    _y_axis(ax, [-100, -50, 0, 50, 100], lambda v: _minus(f"{v:.0f}"))
    ax.axhline(0, color="#888888", linewidth=0.6, zorder=0.6, clip_on=False)
    _month_axis(ax, labels)
    _legend_above(ax, [_line_key(PRIMARY, names[0]), _line_key(PURPLE, names[1], marker="s")])
    return fig


def service_chart(details: Mapping, t: Translate = default_t) -> Chart:
    """Tickets per month (complaints inside), and median response/resolution hours against the SLA."""
    t = _translator(t)
    chart_id, title = "service", t("chart.service")
    rows = details.get("service_by_month") or []
    header = [t("chart.month"), t("chart.tickets"), t("chart.complaints"), f"{t('chart.first_response')} (h)",
              f"{t('chart.resolution')} (h)", f"{t('chart.sla')} (h)"]
    if not rows:
        return _empty(chart_id, title, t("chart.no_data"), t, header)
    labels = [r["month"] for r in rows]
    tickets = [r.get("tickets") or 0 for r in rows]
    complaints = [r.get("complaints") or 0 for r in rows]
    hour_keys = ("first_response_hours", "resolution_hours", "sla_hours")
    hours = [v for r in rows for k in hour_keys if _is_num(v := r.get(k))]
    last = rows[-1]
    alt = _fill(t("chart.service.alt"), first=labels[0], last=labels[-1], tickets=tickets[-1],
                complaints=complaints[-1], first_response=_number(last.get("first_response_hours")),
                resolution=_number(last.get("resolution_hours")), sla=_number(last.get("sla_hours")))
    names = tuple(t(f"chart.{key}") for key in ("tickets", "complaints", "first_response", "resolution", "sla"))
    with theme():
        plate = _plate(("service", tuple(labels), names), lambda: _service_plate(labels, names))
        with plate.data() as (left, right):
            _bars(left, tickets, SKY)
            _bars(left, complaints, PRIMARY)
            _y_scale(left, max(tickets), integer=True)
            _line(right, [_nan(r.get("first_response_hours")) for r in rows], PRIMARY, names[2])
            _line(right, [_nan(r.get("resolution_hours")) for r in rows], PURPLE, names[3], marker="s")
            right.step(range(len(rows)), [_nan(r.get("sla_hours")) for r in rows], where="mid", label=names[4],
                       clip_on=False, **SLA_LINE)
            _y_scale(right, max(hours, default=0) * 1.05, fmt=lambda v: f"{v:.0f} h")
            if not hours:
                _no_data_text(right, t)
            svg, png = plate.encode(chart_id, title, alt)
    table = [header] + [
        [r["month"], str(r.get("tickets") or 0), str(r.get("complaints") or 0),
         _number(r.get("first_response_hours")), _number(r.get("resolution_hours")), _number(r.get("sla_hours"))]
        for r in rows
    ]
    return Chart(chart_id, title, alt, svg, table, png)


SLA_LINE = {"color": INK, "linestyle": "--", "linewidth": 1.0}


def _service_plate(labels: list[str], names: tuple[str, ...]) -> Figure:
    """Two half-width panels: tickets (bars) and hours (lines, the SLA as a step)."""
    fig = _figure()
    left, right = _axes_pair(fig, left=0.3, right=0.1, bottom=0.3, top=0.2, gap=0.5)
    _legend_above(left, [_bar_key(SKY, names[0]), _bar_key(PRIMARY, names[1])])
    _legend_above(right, [_line_key(PRIMARY, names[2]), _line_key(PURPLE, names[3], marker="s"),
                          Line2D([], [], drawstyle="steps-mid", label=names[4], **SLA_LINE)])
    for ax in (left, right):  # half-width panels: every other month, the latest always
        _month_axis(ax, labels, every=2)
    return fig


def interaction_frequency(details: Mapping, t: Translate = default_t) -> Chart:
    """Interactions per month stacked by channel ('other' appears when a channel is blank)."""
    t = _translator(t)
    chart_id, title = "interaction_frequency", t("chart.interactions")
    rows = details.get("interactions_by_month") or []
    if not rows:
        return _empty(chart_id, title, t("chart.no_data"), t, [t("chart.month"), t("chart.total")])
    labels = [r["month"] for r in rows]
    counts = {c: [r.get(c) or 0 for r in rows] for c in CHANNELS}
    totals = [r.get("total") or 0 for r in rows]
    counts["other"] = [max(tot - sum(counts[c][i] for c in CHANNELS), 0) for i, tot in enumerate(totals)]
    channels = [c for c in (*CHANNELS, "other") if c != "other" or any(counts["other"])]
    by_channel = ", ".join(f"{t('channel.' + c)} {sum(counts[c])}" for c in channels)
    alt = _fill(t("chart.interactions.alt"), first=labels[0], last=labels[-1], latest=totals[-1],
                total=sum(totals), by_channel=by_channel)
    names = tuple(t(f"channel.{c}") for c in channels)
    with theme():
        plate = _plate(("interaction_frequency", tuple(labels), tuple(channels), names),
                       lambda: _interaction_plate(labels, channels, names))
        with plate.data() as (ax,):
            bottom = [0] * len(rows)
            for c in channels:
                _bars(ax, counts[c], CHANNEL_COLOURS[c], bottoms=bottom, edge="white")
                bottom = [b + v for b, v in zip(bottom, counts[c])]
            _y_scale(ax, max(bottom), integer=True)
            if max(totals) == 0:
                _no_data_text(ax, t)
            svg, png = plate.encode(chart_id, title, alt)
    header = [t("chart.month")] + [t(f"channel.{c}") for c in channels] + [t("chart.total")]
    table = [header] + [[lab] + [str(counts[c][i]) for c in channels] + [str(totals[i])]
                        for i, lab in enumerate(labels)]
    return Chart(chart_id, title, alt, svg, table, png)


def _interaction_plate(labels: list[str], channels: list[str], names: tuple[str, ...]) -> Figure:
    fig = _figure()
    ax = _axes(fig, left=0.4, right=0.1, bottom=0.3, top=0.2)
    _month_axis(ax, labels)
    _legend_above(ax, [_bar_key(CHANNEL_COLOURS[c], name) for c, name in zip(channels, names)])
    return fig


def relationship_map(details: Mapping, t: Translate = default_t) -> Chart:
    """Active contacts by department (rows) and seniority (columns); a ring marks a decision maker."""
    t = _translator(t)
    chart_id, title = "relationship_map", t("chart.relationship_map")
    rmap = details.get("relationship_map") or {}
    departments = list(rmap.get("departments") or [])
    cells = rmap.get("cells") or {}
    makers = rmap.get("decision_makers") or []
    header = [t("chart.department")] + [t(f"seniority.{s}") for s in SENIORITIES] + [t("chart.decision_makers")]
    name = lambda m: str(m.get("name") or m.get("contact_id") or "–")  # noqa: E731
    maker_names = {d: ", ".join(name(m) for m in makers if m.get("department") == d) for d in departments}
    table = [header] + [[d] + [str((cells.get(d) or {}).get(s, 0)) for s in SENIORITIES] + [maker_names[d] or "–"]
                        for d in departments]
    contacts = sum(sum((cells.get(d) or {}).values()) for d in departments)
    senior = sum((cells.get(d) or {}).get(s, 0) for d in departments for s in ("director", "executive"))
    alt = _fill(t("chart.relationship_map.alt"), contacts=contacts, departments=len(departments), senior=senior,
                decision_makers=", ".join(f"{name(m)} ({m.get('department') or '–'})" for m in makers) or "–")
    if not contacts:
        return _empty(chart_id, title, alt, t, header)
    ringed = {(m.get("department"), m.get("seniority")) for m in makers}
    names = tuple(t(f"seniority.{s}") for s in SENIORITIES) + (t("chart.decision_maker") if ringed else "",)
    with theme():
        plate = _plate(("relationship_map", len(departments), names),
                       lambda: _relationship_plate(len(departments), names))
        with plate.data() as (ax,):
            points = [(x, y, (cells.get(d) or {}).get(s, 0), (d, s) in ringed)
                      for y, d in enumerate(departments) for x, s in enumerate(SENIORITIES)]
            points = [p for p in points if p[2] > 0]
            biggest = max(p[2] for p in points)
            ax.scatter([p[0] for p in points], [p[1] for p in points],
                       s=[55 + 120 * (p[2] - 1) / max(biggest - 1, 1) for p in points], color=PRIMARY,
                       edgecolors=[INK if p[3] else "none" for p in points], linewidths=1.4, zorder=2, clip_on=False)
            for x, y, count, _ in points:
                ax.text(x, y, str(count), ha="center", va="center", fontsize=6, color="white", zorder=3)
            left_of = _offset(ax, ax.get_yaxis_transform(), -6, 0)
            for y, d in enumerate(departments):
                ax.text(0, y, _short(d, 24), transform=left_of, ha="right", va="center", fontsize=6.5)
            svg, png = plate.encode(chart_id, title, alt)
    return Chart(chart_id, title, alt, svg, table, png)


def _relationship_plate(rows: int, names: tuple[str, ...]) -> Figure:
    """The grid of ``rows`` departments by seniority; the decision-maker key when ``names[-1]`` is set."""
    fig = _figure(WIDTH, 0.3 + 0.2 * rows + 0.25)
    ax = _axes(fig, left=1.4, right=0.3, bottom=0.25, top=0.3)
    ax.set_axis_off()
    ax.set_xlim(-0.5, len(SENIORITIES) - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.add_collection(LineCollection([((-0.5, y), (len(SENIORITIES) - 0.5, y)) for y in range(rows)],
                                     colors=GRID, linewidths=0.5, zorder=1, clip_on=False), autolim=False)
    above = _offset(ax, ax.get_xaxis_transform(), 0, 4)
    for x, name in enumerate(names[:-1]):
        ax.text(x, 1, name, transform=above, ha="center", va="baseline", fontsize=6.5, color=MUTED)
    if names[-1]:
        ax.legend(handles=[Line2D([], [], linestyle="none", marker="o", markersize=6, color=PRIMARY,
                                  markeredgecolor=INK, markeredgewidth=1.4, label=names[-1])],
                  loc="upper left", bbox_to_anchor=(0, -0.02 - 0.05 / fig.get_size_inches()[1]))
    return fig


def _kpi_label(kpi_id: str, kpi: Mapping, locale: str) -> str:
    label = kpi.get("label") or {}
    if isinstance(label, str):
        return label
    return label.get(locale) or label.get("en") or kpi_id


def kpi_status_strip(account_sc: Mapping, t: Translate = default_t, locale: str = "en") -> Chart:
    """One tile per KPI: name, value and status word on the status colour.

    Optional: it repeats the KPI table, and its many glyphs make it the costliest chart in a PDF.
    """
    t = _translator(t)
    chart_id, title = "kpi_status", t("chart.kpi_status")
    kpis = account_sc.get("kpis") or {}
    header = [t("chart.kpi"), t("chart.value"), t("chart.target"), t("chart.status")]
    if not kpis:
        return _empty(chart_id, title, t("chart.no_data"), t, header)
    counts = {"green": 0, "amber": 0, "red": 0, "other": 0}
    for kpi in kpis.values():
        status = kpi.get("status") or "no_data"
        counts[status if status in counts else "other"] += 1
    alt = _fill(t("chart.kpi_status.alt"), n=len(kpis), **counts)
    with theme():
        cols = 5
        fig = _figure(WIDTH, 0.06 + 0.5 * math.ceil(len(kpis) / cols))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.set_xlim(0, cols)
        ax.set_ylim(math.ceil(len(kpis) / cols), 0)
        tiles, stripes, tile_colours, stripe_colours = [], [], [], []
        for i, (kpi_id, kpi) in enumerate(kpis.items()):
            row, col = divmod(i, cols)
            status = kpi.get("status") or "no_data"
            colour = STATUS_COLOURS.get(status, NO_DATA)
            x0, y0, y1 = col + 0.03, row + 0.08, row + 0.92
            tiles.append(((x0, y0), (x0, y1), (col + 0.97, y1), (col + 0.97, y0)))
            stripes.append(((x0, y0), (x0, y1), (x0 + 0.035, y1), (x0 + 0.035, y0)))
            tile_colours.append(_tint(colour))
            stripe_colours.append(colour)
            ax.text(col + 0.11, row + 0.28, _short(_kpi_label(kpi_id, kpi, locale), 22), fontsize=6, va="center")
            ax.text(col + 0.11, row + 0.56, _value(kpi.get("value"), kpi.get("unit")), fontsize=8.5,
                    va="center", fontweight="bold")
            ax.text(col + 0.95, row + 0.78, _status_text(status, t), fontsize=5.5, va="center", ha="right",
                    color=INK)
        ax.add_collection(PolyCollection(tiles, facecolors=tile_colours, edgecolors="none"), autolim=False)
        ax.add_collection(PolyCollection(stripes, facecolors=stripe_colours, edgecolors="none"), autolim=False)
        svg, png = _encode(fig, chart_id, title, alt)
    table = [header] + [
        [_kpi_label(k, v, locale), _value(v.get("value"), v.get("unit")), _value(v.get("target"), v.get("unit")),
         _status_text(v.get("status"), t)]
        for k, v in kpis.items()
    ]
    return Chart(chart_id, title, alt, svg, table, png)


# --- portfolio charts --------------------------------------------------------------------


def _kpi_columns(accounts: list[Mapping], locale: str) -> list[tuple[str, str]]:
    """KPI ids in order of first appearance, with their label in ``locale``."""
    columns: dict[str, str] = {}
    for account in accounts:
        for kpi_id, kpi in (account.get("kpis") or {}).items():
            columns.setdefault(kpi_id, _kpi_label(kpi_id, kpi, locale))
    return list(columns.items())


def _by_health(accounts: list[Mapping]) -> list[Mapping]:
    """Lowest health first; accounts without a score after the scored ones; ties by id."""
    return sorted(accounts, key=lambda a: (not _is_num(a.get("health_score")),
                                           a.get("health_score") if _is_num(a.get("health_score")) else 0,
                                           str(a.get("account_id"))))


HEATMAP_CODES = ("green", "amber", "red", "low_sample", "ok", "no_data")


def portfolio_heatmap(scorecard: Mapping, t: Translate = default_t, locale: str = "en",
                      max_rows: int | None = 50) -> Chart:
    """Accounts × KPIs, each cell coloured by status and lettered (G/A/R/L/–) so it reads in grey.

    Shows the ``max_rows`` accounts with the lowest health (None: all); the chart and alt say so.
    """
    t = _translator(t)
    chart_id, title = "portfolio_heatmap", t("chart.heatmap")
    accounts = _by_health(list(scorecard.get("accounts") or []))
    columns = _kpi_columns(accounts, locale)
    shown = accounts[:max_rows] if max_rows else accounts
    header = [t("chart.account"), t("chart.health_score")] + [label for _, label in columns]
    if not shown or not columns:
        return _empty(chart_id, title, t("chart.no_data"), t, header)
    grid = [[(a.get("kpis") or {}).get(k, {}).get("status") or "no_data" for k, _ in columns] for a in shown]
    grid = [[s if s in HEATMAP_CODES else "no_data" for s in row] for row in grid]
    flat = [s for row in grid for s in row]
    alt = _fill(t("chart.heatmap.alt"), kpis=len(columns), shown=len(shown), accounts=len(accounts),
                green=flat.count("green"), amber=flat.count("amber"), red=flat.count("red"))
    letters = {c: t(f"status.letter.{c}") for c in HEATMAP_CODES}
    with theme():
        nrows, ncols = len(shown), len(columns)
        top, bottom, left, right = 1.05, 0.35, 1.75, 0.45  # right: room for the last slanted label
        cell_w, cell_h = min(0.32, (WIDTH - left - right) / ncols), 0.17
        fig = _figure(max(left + ncols * cell_w + right, 3.6), top + bottom + nrows * cell_h)
        ax = _axes(fig, left=left, right=fig.get_size_inches()[0] - left - ncols * cell_w, bottom=bottom, top=top)
        ax.pcolormesh([[HEATMAP_CODES.index(s) for s in row] for row in grid],
                      cmap=ListedColormap([STATUS_COLOURS[c] for c in HEATMAP_CODES]), vmin=-0.5,
                      vmax=len(HEATMAP_CODES) - 0.5, edgecolors="white", linewidth=0.6)
        for r, row in enumerate(grid):
            for c, status in enumerate(row):
                ax.text(c + 0.5, r + 0.5, letters[status], ha="center", va="center", fontsize=5.5,
                        color="white" if status in ("green", "red") else "#222222")
        ax.set_ylim(nrows, 0)
        ax.set_xlim(0, ncols)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.xaxis.tick_top()
        ax.tick_params(top=False, left=False)
        ax.set_xticks([c + 0.5 for c in range(ncols)], [_short(label, 18) for _, label in columns],
                      rotation=60, ha="left", rotation_mode="anchor")
        ax.set_yticks([r + 0.5 for r in range(nrows)],
                      [f"{_short(a.get('name') or a.get('account_id'), 22)}  {_number(a.get('health_score'), 0)}"
                       for a in shown])
        height = fig.get_size_inches()[1]
        key = _fill(t("chart.heatmap.key"), **{f"{c}_letter": letters[c] for c in HEATMAP_CODES},
                    **{c: t(f"status.{c}") for c in HEATMAP_CODES})
        fig.text(0.01, 0.08 / height, key, fontsize=6)
        if len(shown) < len(accounts):
            fig.text(0.01, 0.2 / height, _fill(t("chart.heatmap.more"), shown=len(shown), accounts=len(accounts)),
                     fontsize=6)
        svg, png = _encode(fig, chart_id, title, alt)
    table = [header] + [
        [str(a.get("name") or a.get("account_id")), _number(a.get("health_score"), 0)]
        + [_status_text(s, t) for s in row]
        for a, row in zip(shown, grid)
    ]
    return Chart(chart_id, title, alt, svg, table, png)


def _clv(account: Mapping):
    value = ((account.get("kpis") or {}).get("clv_predicted") or {}).get("value")
    return value if _is_num(value) and value > 0 else None


def health_vs_revenue(scorecard: Mapping, portfolio_details: Mapping, t: Translate = default_t,
                      bands: Mapping | None = None) -> Chart:
    """Bubbles: 12-month revenue across, health score up, size by predicted CLV, status by colour + legend."""
    t = _translator(t)
    chart_id, title = "health_vs_revenue", t("chart.health_vs_revenue")
    revenue = portfolio_details.get("account_revenue_12m") or {}
    accounts = sorted(scorecard.get("accounts") or [], key=lambda a: str(a.get("account_id")))
    header = [t("chart.account"), t("chart.revenue_12m"), t("chart.health_score"), t("chart.status"),
              t("chart.clv_predicted")]
    table = [header] + [
        [str(a.get("name") or a.get("account_id")), _money(revenue.get(a.get("account_id"))),
         _number(a.get("health_score"), 0), _status_text(a.get("health_status"), t), _money(_clv(a))]
        for a in accounts
    ]
    placed = [a for a in accounts if _is_num(a.get("health_score")) and _is_num(revenue.get(a.get("account_id")))]
    if not placed:
        return _empty(chart_id, title, t("chart.no_data"), t, header)
    groups: dict[str, list[Mapping]] = {}
    for status in ("green", "amber", "red", "insufficient_data", "not_scored"):
        if members := [a for a in placed if (a.get("health_status") or "not_scored") == status]:
            groups[status] = members
    alt = _fill(t("chart.health_vs_revenue.alt"), n=len(placed), green=len(groups.get("green", ())),
                amber=len(groups.get("amber", ())), red=len(groups.get("red", ())),
                unplaced=len(accounts) - len(placed))
    clvs = [c for c in map(_clv, placed) if c is not None]
    top_clv = max(clvs, default=None)

    def size(account) -> float:  # area grows with CLV; accounts without one get the smallest bubble
        clv = _clv(account)
        return 12.0 if clv is None or not top_clv else 12.0 + 300.0 * clv / top_clv

    with theme():
        fig = _figure(WIDTH, 2.6)
        ax = _axes(fig, left=0.45, right=0.1, bottom=0.38, top=0.25)
        ax.grid(True, color=GRID, linewidth=0.5)
        for status, members in groups.items():
            ax.scatter([revenue[a["account_id"]] for a in members], [a["health_score"] for a in members],
                       s=[size(a) for a in members], color=STATUS_COLOURS[status], alpha=0.85,
                       edgecolors="white", linewidths=0.5, label=f"{t('status.' + status)} ({len(members)})")
        xs = [revenue[a["account_id"]] for a in placed]
        if min(xs) > 0 and max(xs) / min(xs) > 50:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _p: ""))
        ax.set_ylim(0, 105)
        ax.margins(x=0.12)  # room for the name beside the right-most bubble
        if bands:
            for level in (bands["red_below"], bands["green_from"]):
                ax.axhline(level, color="#888888", linestyle=(0, (4, 3)), linewidth=0.6, zorder=0.5)
        if len(placed) <= 12:
            for a in placed:
                ax.annotate(_short(a.get("name") or a["account_id"], 18),
                            (revenue[a["account_id"]], a["health_score"]), xytext=(4, 3),
                            textcoords="offset points", fontsize=5.5, color=INK)
        ax.set_xlabel(t("chart.revenue_12m"))
        ax.set_ylabel(t("chart.health_score"))
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncols=len(groups), markerscale=0.6)
        ax.text(1.0, 1.02, t("chart.bubble_size"), transform=ax.transAxes, ha="right", va="bottom", fontsize=6,
                color=MUTED)
        svg, png = _encode(fig, chart_id, title, alt)
    return Chart(chart_id, title, alt, svg, table, png)


# --- registries and the two entry points --------------------------------------------------


@dataclass(frozen=True)
class AccountInputs:
    account_sc: Mapping
    details: Mapping
    bands: Mapping
    t: Translate
    locale: str


# Chart types by name: adding one is a function plus an entry.
ACCOUNT_CHARTS: dict[str, Callable[[AccountInputs], Chart]] = {
    "health_trend": lambda i: health_trend(i.account_sc, i.bands, i.t),
    "revenue_by_month": lambda i: revenue_by_month(i.details, i.t),
    "satisfaction_trend": lambda i: satisfaction_trend(i.details, i.t),
    "service": lambda i: service_chart(i.details, i.t),
    "interaction_frequency": lambda i: interaction_frequency(i.details, i.t),
    "relationship_map": lambda i: relationship_map(i.details, i.t),
    "kpi_status": lambda i: kpi_status_strip(i.account_sc, i.t, i.locale),
}
DEFAULT_ACCOUNT_CHARTS = ("health_trend", "revenue_by_month", "satisfaction_trend", "service",
                          "interaction_frequency", "relationship_map")


def account_charts(account_sc: Mapping, details: Mapping, bands: Mapping, t: Translate = default_t,
                   locale: str = "en", kinds: list[str] | tuple[str, ...] = DEFAULT_ACCOUNT_CHARTS,
                   formats: Iterable[str] | None = None) -> list[Chart]:
    """A review's charts in ``kinds`` order (default: the six of ``DEFAULT_ACCOUNT_CHARTS``).

    ``formats``: the image encodings to produce (``svg``, ``png``); None keeps the caller's
    ``image_formats`` (SVG unless set)."""
    unknown = [k for k in kinds if k not in ACCOUNT_CHARTS]
    if unknown:
        raise RenderError(f"unknown chart type(s) {', '.join(unknown)}; expected one of: {', '.join(ACCOUNT_CHARTS)}")
    inputs = AccountInputs(account_sc, details, bands, _translator(t), locale)
    with theme(), image_formats(_FORMATS.get() if formats is None else formats):
        return [ACCOUNT_CHARTS[kind](inputs) for kind in kinds]


def portfolio_charts(scorecard: Mapping, portfolio_details: Mapping, t: Translate = default_t,
                     locale: str = "en", bands: Mapping | None = None,
                     max_heatmap_rows: int | None = 50, formats: Iterable[str] | None = None) -> list[Chart]:
    """The leadership scorecard's charts: status heatmap, health vs revenue, portfolio revenue by month."""
    t = _translator(t)
    with theme(), image_formats(_FORMATS.get() if formats is None else formats):
        return [
            portfolio_heatmap(scorecard, t, locale, max_heatmap_rows),
            health_vs_revenue(scorecard, portfolio_details, t, bands),
            revenue_by_month(portfolio_details, t, chart_id="portfolio_revenue", title_key="chart.portfolio_revenue"),
        ]
