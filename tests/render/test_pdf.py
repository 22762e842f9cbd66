"""PDFs read back: pages, text, fonts, metadata, bookmarks, PDF/A-3b and attachments, determinism, pixels."""
from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pypdf import PdfReader

from reporter.render import archive_pdf_bytes, render_report, scorecard_csv, scorecard_json

HERE = Path(__file__).parent


def _text(reader: PdfReader) -> str:
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, synthetic):
    """One run per locale and report, shared by the tests of this module (rendering is the slow part)."""
    root = tmp_path_factory.mktemp("project")
    (root / "notes" / synthetic.period).mkdir(parents=True)
    (root / "notes" / synthetic.period / "A001.md").write_text(synthetic.note, encoding="utf-8")
    config = synthetic.config(root)
    details = {a: synthetic.details(a) for a in ("A001", "A002", "A003")}
    run = dict(generated_at=synthetic.generated_at, report_id=synthetic.report_id)
    en = render_report(config, "reviews", synthetic.scorecard(), details, None, synthetic.charts, root / "out" / "en",
                       formats=("pdf", "html"), locale="en", **run)
    zh = render_report(config, "reviews", synthetic.scorecard(), details, None, synthetic.charts, root / "out" / "zh",
                       formats=("pdf",), locale="zh_CN", accounts=["A002", "A001"], **run)
    portfolio = render_report(config, "leadership", synthetic.scorecard(), details, None, synthetic.charts,
                              root / "out" / "portfolio", formats=("pdf",), **run)
    pdf = {(a.locale, a.account_id): a for a in en + zh + portfolio if a.format == "pdf"}
    return SimpleNamespace(config=config, root=root, en=en, zh=zh, portfolio=portfolio, pdf=pdf, details=details,
                           reader=lambda locale, account: PdfReader(pdf[(locale, account)].path))


def test_artifacts_written_atomically(rendered):
    out = rendered.root / "out" / "en"
    assert sorted(p.name for p in out.iterdir()) == [
        "A001-acme-industrial-gmbh.html", "A001-acme-industrial-gmbh.pdf", "A002.html", "A002.pdf",
        "A003-img-src-file-etc-passwd-link-rel-attachm.html", "A003-img-src-file-etc-passwd-link-rel-attachm.pdf"]
    for artifact in rendered.en + rendered.zh + rendered.portfolio:
        assert hashlib.sha256(artifact.path.read_bytes()).hexdigest() == artifact.sha256
    assert [a.account_id for a in rendered.zh] == ["A002", "A001"]
    assert rendered.portfolio[0].path.name == "leadership-2026-10.pdf" and rendered.portfolio[0].account_id is None


def test_review_pages_text_and_page_numbers(rendered):
    reader = rendered.reader("en", "A001")
    assert len(reader.pages) >= 4
    text = _text(reader)
    for expected in ("Acme Industrial GmbH", "61.5 / 100", "€482,350", "31.2%", "+0.7 pp", "Off target",
                     "Book the quarterly business review with the CFO", "Appendix: KPI definitions",
                     "Confidential: prepared for Key accounts (test)", "report run-2026-10-0001"):
        assert expected in text, expected
    pages = len(reader.pages)
    for number, page in enumerate(reader.pages, 1):
        assert f"Page {number} of {pages}" in page.extract_text()


def test_chinese_review(rendered):
    reader = rendered.reader("zh_CN", "A002")
    assert len(reader.pages) >= 4
    text = _text(reader)
    assert "长城精密制造有限公司" in text and "执行摘要" in text and "¥" not in text  # EUR project: €
    assert "€128,400" in text and "达标" in text
    squeezed = re.sub(r"\s", "", reader.pages[0].extract_text())
    assert f"第1页，共{len(reader.pages)}页" in squeezed
    assert reader.trailer["/Root"]["/Lang"] == "zh-CN"


def test_fonts_embedded(rendered):
    for key in (("en", "A001"), ("zh_CN", "A002"), ("en", None)):
        reader = rendered.reader(*key)
        seen = 0
        for page in reader.pages:
            for font in page["/Resources"]["/Font"].values():
                font = font.get_object()
                descendants = font.get("/DescendantFonts")
                target = descendants[0].get_object() if descendants else font
                descriptor = target["/FontDescriptor"].get_object()
                assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")), font["/BaseFont"]
                seen += 1
        assert seen


def test_english_review_sets_trend_arrows_without_the_cjk_face(rendered):
    """Noto Sans has no arrows: they come from Noto Sans Symbols, drawn to match it, so an English
    review embeds no subset of the 19 MB CJK face for them."""
    reader = rendered.reader("en", "A001")
    assert any(arrow in _text(reader) for arrow in "↑↓→")
    fonts = {font.get_object()["/BaseFont"] for page in reader.pages for font in page["/Resources"]["/Font"].values()}
    assert any("Noto-Sans-Symbols" in name for name in fonts), fonts
    assert not any("CJK" in name for name in fonts), fonts


def test_metadata_and_bookmarks(rendered):
    reader = rendered.reader("en", "A001")
    info = reader.metadata
    assert info.title == "Key-account review: Acme Industrial GmbH (October 2026)"
    assert info.author == "Key accounts (test)"
    assert info.subject == "Key-account review of Acme Industrial GmbH for October 2026"
    assert "A001" in info["/Keywords"] and "strategic" in info["/Keywords"]
    assert info["/CreationDate"] == info["/ModDate"] == "D:20261101070000Z"
    assert reader.trailer["/Root"]["/Lang"] == "en"
    top, children = reader.outline[0], reader.outline[1]
    assert top["/Title"] == "Acme Industrial GmbH"
    assert [c["/Title"] for c in children][:3] == ["Executive summary", "KPIs against target and tier peers", "Trends"]


def test_plain_pdf_has_no_attachments(rendered):
    for artifact in rendered.pdf.values():
        reader = PdfReader(artifact.path)
        assert reader.attachments == {}
        assert "/OutputIntents" not in reader.trailer["/Root"]


def test_portfolio_pdf(rendered):
    reader = rendered.reader("en", None)
    assert len(reader.pages) >= 4
    text = _text(reader)
    for expected in ("Portfolio headline", "Strategic", "Heatmap: account × KPI status", "Top movers",
                     "At-risk accounts", "长城精密制造有限公司", "No interaction for 74 days.", "95.0%"):
        assert expected in text, expected
    boxes = [page.mediabox for page in reader.pages]
    assert boxes[0].width < boxes[0].height and any(b.width > b.height for b in boxes)  # heatmap in landscape


def test_page_one_is_not_blank(rendered, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    subprocess.run(["pdftoppm", "-r", "40", "-f", "1", "-l", "1", "-png", str(rendered.pdf[("en", "A001")].path),
                    str(tmp_path / "page")], check=True)
    pixels = image.imread(next(tmp_path.glob("page*.png")))
    ink = (pixels[..., :3].min(axis=2) < 0.9).mean()
    assert 0.02 < ink < 0.6, f"{ink:.1%} of page 1 is ink"


def test_archive_variant_is_pdf_a_3b_with_both_attachments(rendered, synthetic):
    scorecard = synthetic.scorecard()
    account = scorecard["accounts"][1]
    pdf = archive_pdf_bytes(rendered.config, "reviews", scorecard, "A002", rendered.details["A002"],
                            synthetic.charts(account), generated_at=synthetic.generated_at,
                            report_id=synthetic.report_id, locale="zh_CN")
    assert pdf.startswith(b"%PDF-1.7")
    reader = PdfReader(io.BytesIO(pdf))
    catalog = reader.trailer["/Root"]
    xmp = catalog["/Metadata"].get_object().get_data().decode("utf-8")
    assert re.search(r'pdfaid:part(="|>)3', xmp) and re.search(r'pdfaid:conformance(="|>)B', xmp)
    intent = catalog["/OutputIntents"][0].get_object()
    assert intent["/S"] == "/GTS_PDFA1" and "/DestOutputProfile" in intent
    part = {k: scorecard[k] for k in ("period", "period_start", "period_end", "currency")} | {"account": account}
    assert reader.attachments == {
        "A002-scorecard.csv": [scorecard_csv("2026-10", [account])],
        "A002-scorecard.json": [scorecard_json(part)],
    }
    assert len(catalog["/AF"]) == 2
    assert all(f.get_object()["/AFRelationship"] == "/Data" for f in catalog["/AF"])
    assert "长城精密制造有限公司" in _text(reader)
    csv_text = reader.attachments["A002-scorecard.csv"][0].decode("utf-8-sig")
    assert csv_text.splitlines()[0].startswith("period,account_id,name,tier,health_score")
    assert "A002,长城精密制造有限公司,key,82.0" in csv_text
    # same inputs, same bytes
    again = archive_pdf_bytes(rendered.config, "reviews", synthetic.scorecard(), "A002", rendered.details["A002"],
                              synthetic.charts(account), generated_at=synthetic.generated_at,
                              report_id=synthetic.report_id, locale="zh_CN")
    assert again == pdf


def test_hostile_account_archive_embeds_only_our_two_files(rendered, synthetic):
    scorecard = synthetic.scorecard()
    reader = PdfReader(io.BytesIO(archive_pdf_bytes(rendered.config, "reviews", scorecard, "A003",
                                                    rendered.details["A003"], synthetic.charts(scorecard["accounts"][2]),
                                                    generated_at=synthetic.generated_at, report_id=synthetic.report_id)))
    stem = "A003-img-src-file-etc-passwd-link-rel-attachm"
    assert sorted(reader.attachments) == [f"{stem}-scorecard.csv", f"{stem}-scorecard.json"]
    assert all(b"root:" not in data for files in reader.attachments.values() for data in files)
    assert synthetic.injection in _text(reader)


def test_portfolio_archive_holds_the_whole_scorecard(rendered, synthetic):
    scorecard = synthetic.scorecard()
    reader = PdfReader(io.BytesIO(archive_pdf_bytes(rendered.config, "leadership", scorecard,
                                                    charts=synthetic.charts(None), generated_at=synthetic.generated_at,
                                                    report_id=synthetic.report_id)))
    assert sorted(reader.attachments) == ["leadership-2026-10-scorecard.csv", "leadership-2026-10-scorecard.json"]
    assert reader.attachments["leadership-2026-10-scorecard.json"][0] == scorecard_json(scorecard)


def test_two_renders_are_byte_identical(rendered, synthetic, tmp_path):
    again = render_report(rendered.config, "reviews", synthetic.scorecard(), rendered.details, None, synthetic.charts,
                          tmp_path / "again", formats=("pdf", "html"), locale="en",
                          generated_at=synthetic.generated_at, report_id=synthetic.report_id)
    assert [a.sha256 for a in again] == [a.sha256 for a in rendered.en]


def test_byte_identical_in_another_process(rendered, synthetic, tmp_path):
    """Another interpreter with another hash seed (set iteration order) writes the same bytes."""
    script = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from pathlib import Path
import conftest as c
from reporter.render import render_report
root = Path({str(rendered.root)!r})
config = c.make_config(root)
details = {{a: c.build_details(a) for a in ("A001", "A002", "A003")}}
arts = render_report(config, "reviews", c.build_scorecard(), details, None, c.build_charts, Path({str(tmp_path)!r}),
                     formats=("pdf",), locale="zh_CN", accounts=["A002", "A001"], generated_at=c.GENERATED_AT,
                     report_id=c.REPORT_ID)
print(" ".join(a.sha256 for a in arts))
"""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True,
                         cwd=HERE.parents[1]).stdout.split()
    assert out == [a.sha256 for a in rendered.zh]


def test_letter_page_size(synthetic, tmp_path):
    config = synthetic.config(tmp_path, page_size="letter")
    artifact = render_report(config, "leadership", synthetic.scorecard(), {}, None, synthetic.charts, tmp_path / "out",
                             formats=("pdf",), generated_at=synthetic.generated_at, report_id=synthetic.report_id)[0]
    box = PdfReader(artifact.path).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collector_left_as_it_was(enabled):
    """The collector is paused while WeasyPrint makes a document, and left as the caller had it, also on failure."""
    import gc
    from datetime import datetime, timezone

    from reporter.config import BUILTIN_TEMPLATES
    from reporter.errors import RenderError
    from reporter.render.pdf import render_pdf

    moment = datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc)
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"></head><body><p>Collector</p>{}'
            "</body></html>")
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        render_pdf(page.format(""), BUILTIN_TEMPLATES, {"title": "t"}, moment)
        assert gc.isenabled() is enabled
        with pytest.raises(RenderError):
            render_pdf(page.format('<img src="https://example.com/x.png">'), BUILTIN_TEMPLATES, {"title": "t"}, moment)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def _patched_pdf(page: str) -> bytes:
    """``page`` as a PDF with pdf_speed's patches installed (as every render has them)."""
    from datetime import datetime, timezone

    from reporter.config import BUILTIN_TEMPLATES
    from reporter.render import pdf_speed
    from reporter.render.pdf import render_pdf

    assert pdf_speed.install()
    return render_pdf(page, BUILTIN_TEMPLATES, {"title": "t"}, datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc))


def test_plain_backgrounds_shortcut_draws_what_weasyprint_draws(monkeypatch):
    """pdf_speed gives boxes without any background their (absent) background from one answer per
    style; boxes with colours, rounded corners, shadows or hidden ones go WeasyPrint's way: the
    same PDF either way."""
    from weasyprint.layout import background

    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>'
            "th { background: #f4f6f8 } .chip { border-radius: 3px; background: #009E73; color: white }"
            " .shadow { box-shadow: 2px 2px 3px #888 } .hidden { visibility: hidden; background: red }"
            " .round { border-radius: 4px; border: 1px solid #ccc }"
            "</style></head><body><h1>Backgrounds</h1><table><tr><th>KPI</th><td>plain</td></tr>"
            '<tr><th>Status</th><td><span class="chip">On target</span></td></tr></table>'
            '<p class="shadow">shadow</p><p class="hidden">hidden</p><div class="round"><p>inside</p></div>'
            + "<p>filler</p>" * 80 + "</body></html>")
    shortcut = _patched_pdf(page)
    patched = background.layout_box_backgrounds
    assert patched.__wrapped__ is not patched
    monkeypatch.setattr(background, "layout_box_backgrounds", patched.__wrapped__)
    assert _patched_pdf(page) == shortcut


def test_kept_colours_draw_what_weasyprint_draws(monkeypatch):
    """pdf_speed parses each declared colour once per colour scheme: the same PDF as parsing it for
    every style, with named, hex, rgba, transparent and currentcolor values and two schemes."""
    from weasyprint.css import computed_values

    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>'
            "p { color: #0b3d91; border-bottom: 1px solid currentcolor; text-decoration: underline }"
            " .a { color: rgba(213, 94, 0, 0.6); background: gray } .b { color: teal; outline: 2px dotted }"
            " .c { background: transparent; color: light-dark(#111, #eee); color-scheme: dark }"
            "</style></head><body>"
            + '<p>one</p><p class="a">two</p><p class="b">three</p><p class="c">four</p>' * 5 + "</body></html>")
    first = _patched_pdf(page)
    kept = computed_values.COMPUTER_FUNCTIONS["color"]
    assert kept.__wrapped__ is not kept
    for prop, function in list(computed_values.COMPUTER_FUNCTIONS.items()):
        if function is kept:
            monkeypatch.setitem(computed_values.COMPUTER_FUNCTIONS, prop, kept.__wrapped__)
    assert _patched_pdf(page) == first


def test_style_lookup_shortcut_gives_what_weasyprint_gives(monkeypatch):
    """pdf_speed answers undeclared properties (inherited: the parent's value; others: the initial
    value) without WeasyPrint's general path: the same PDF as that path, with inherited, initial,
    logical (margin-inline-start), variable and calc() values in play."""
    from weasyprint.css import ComputedStyle

    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>'
            ":root { --gap: 6px } body { font-size: 11pt; color: #1f2933 }"
            " .a { margin-inline-start: 2em; padding: var(--gap) } .b { width: calc(50% - 1em); direction: rtl }"
            " td { border-bottom: 1px solid #ccc } em { letter-spacing: 0.05em }"
            "</style></head><body><h1>Styles</h1>"
            + '<p class="a">one <em>two</em></p><div class="b"><p>three</p></div>'
              "<table><tr><th>KPI</th><td>4.5%</td></tr></table>" * 6 + "</body></html>")
    first = _patched_pdf(page)
    shortcut = ComputedStyle.__missing__
    assert shortcut.__wrapped__ is not shortcut
    monkeypatch.setattr(ComputedStyle, "__missing__", shortcut.__wrapped__)
    assert _patched_pdf(page) == first


def test_fast_stream_data_holds_what_pydyf_writes():
    """The PDF streams are deflated by zlib-ng: the same dictionary and, inflated, the same bytes as
    pydyf's own zlib stream."""
    import re
    import zlib

    import pydyf

    from reporter.render import pdf_speed

    stream = pydyf.Stream([b"BT /F1 12 Tf (reporter) Tj ET"] * 200, pydyf.Dictionary({"Type": "/XObject"}),
                          compress=True)
    assert pdf_speed.install()
    pydyf_data = pydyf.Stream.data.fget.__wrapped__  # pydyf's own, under the patch
    ours, theirs = pdf_speed._fast_stream_data(stream), pydyf_data(stream)
    assert ours != theirs  # zlib and zlib-ng differ in bytes, not in content

    def parts(data: bytes) -> tuple[bytes, bytes]:
        head, body = data.split(b"\nstream\n", 1)
        return re.sub(rb"/Length \d+", b"", head), zlib.decompress(body[: -len(b"\nendstream")])

    assert parts(ours) == parts(theirs)
    assert b"/Filter /FlateDecode" in ours


def test_layout_setup_once_per_style_draws_what_weasyprint_draws(monkeypatch):
    """pdf_speed works out a text layout's font description, decoration metrics and font features
    once per style: the same PDF as WeasyPrint's own setup for every layout, with underlined,
    struck-through, small-caps, tabular-figure, bold, italic, Chinese and right-to-left text."""
    from weasyprint.text import line_break

    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>'
            "u { text-decoration: underline } s { text-decoration: line-through }"
            " .caps { font-variant-caps: small-caps } .num { font-variant-numeric: tabular-nums }"
            " .rtl { direction: rtl } :lang(zh) { font-size: 12pt }"
            "</style></head><body><h1>Texts</h1>"
            + ('<p>plain <u>under</u> <s>struck</s> <b>bold</b> <i>italic</i> <span class="caps">Caps</span></p>'
               '<p class="num">1,234.5 · 98.7%</p><p lang="zh">长城精密制造有限公司</p><p class="rtl">right to left</p>') * 4
            + "</body></html>")
    first = _patched_pdf(page)
    setup = line_break.Layout.setup
    assert setup.__wrapped__ is not setup
    monkeypatch.setattr(line_break.Layout, "setup", setup.__wrapped__)
    assert _patched_pdf(page) == first


def test_percentages_from_the_style_once_lay_out_what_weasyprint_lays_out(monkeypatch):
    """pdf_speed reads a box's pixel lengths, border widths and box sizing once per style; the same
    PDF as WeasyPrint resolving them for every layout, with percentages, auto, calc(), border-box,
    min/max sizes, collapsed table borders, flex items and page margins in play."""
    import importlib

    from weasyprint.layout import percent

    from reporter.render import pdf_speed

    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>'
            "@page { size: A5; margin: 10% 8mm } .a { margin: 5% 2em; padding: 3% 4px; width: 60% }"
            " .b { box-sizing: border-box; width: calc(50% - 1em); padding: 6px; border: 3px solid #333;"
            " min-height: 2em; max-width: 300px } .c { box-sizing: padding-box; padding: 1em; width: 40% }"
            " table { border-collapse: collapse; width: 80% } td { border: 2px solid #999; padding: 2% }"
            " .flex { display: flex; gap: 4px } .flex > div { min-width: auto; flex: 1 }"
            "</style></head><body>"
            + ('<div class="a">a</div><div class="b">b</div><div class="c">c</div>'
               '<table><tr><td>1</td><td style="width: 30%">2</td></tr></table>'
               '<div class="flex"><div>x</div><div>longer text</div></div>') * 5
            + "</body></html>")
    first = _patched_pdf(page)
    patched = percent.resolve_percentages
    assert patched.__wrapped__ is not patched
    for name in pdf_speed._PERCENTAGE_CALLERS:
        module = importlib.import_module(f"weasyprint.layout.{name}")
        if getattr(module, "resolve_percentages", None) is patched:
            monkeypatch.setattr(module, "resolve_percentages", patched.__wrapped__)
    assert _patched_pdf(page) == first


def test_cjk_face_embedded_as_bare_cid_cff_draws_the_same_pixels(monkeypatch, tmp_path):
    """A CID-keyed CFF face (Noto Sans CJK) is embedded as its bare CFF (/CIDFontType0C) with only
    the glyphs drawn, found by CID through its charset: a fraction of the bytes of the face with
    its glyph ids kept, the same text, and the same pixels (rasterised by poppler)."""
    from reporter.render import pdf_speed

    page = ('<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"></head><body>'
            "<h1>长城精密制造有限公司</h1><p>华东凯达信息技术有限公司 · 订单下降 52% · Acme GmbH</p>"
            "<p><i>暂无评论</i></p></body></html>")
    bare = _patched_pdf(page)
    monkeypatch.setattr(pdf_speed, "_bare_cff", lambda *args: None)  # every face keeps its glyph ids
    kept = _patched_pdf(page)

    def cjk_fonts(data: bytes) -> dict:
        reader = PdfReader(io.BytesIO(data))
        found = {}
        for font in reader.pages[0]["/Resources"]["/Font"].values():
            font = font.get_object()
            if "CJK" in font["/BaseFont"]:
                descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
                stream = descriptor["/FontFile3"].get_object()
                found[font["/BaseFont"].split("+")[1]] = (stream["/Subtype"], len(stream.get_data()))
        return found

    assert {subtype for subtype, _ in cjk_fonts(bare).values()} == {"/CIDFontType0C"}
    assert {subtype for subtype, _ in cjk_fonts(kept).values()} == {"/OpenType"}
    for name, (_, size) in cjk_fonts(bare).items():
        assert size * 20 < cjk_fonts(kept)[name][1], name
    assert _text(PdfReader(io.BytesIO(bare))) == _text(PdfReader(io.BytesIO(kept)))
    pixels = []
    for label, data in (("bare", bare), ("kept", kept)):
        (tmp_path / f"{label}.pdf").write_bytes(data)
        subprocess.run(["pdftoppm", "-r", "110", "-f", "1", "-l", "1", "-png", str(tmp_path / f"{label}.pdf"),
                        str(tmp_path / label)], check=True)
        pixels.append(next(tmp_path.glob(f"{label}-*.png")).read_bytes())
    assert pixels[0] == pixels[1]


def test_kept_layouts_draw_what_weasyprint_draws(monkeypatch):
    """pdf_speed keeps a line's Pango layout for drawing instead of shaping it again; the same PDF as
    WeasyPrint's own way, with wrapped, pre-wrapped (line feeds), justified, letter-spaced and
    ellipsised text, and a table header repeated on every page (one layout drawn more than once)."""
    from weasyprint.text import line_break

    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>'
            "@page { size: A6 } .pre { white-space: pre-wrap } .just { text-align: justify }"
            " .spaced { letter-spacing: 0.1em; word-spacing: 2px } .cut { width: 20mm; overflow: hidden;"
            " white-space: nowrap; text-overflow: ellipsis } .wrap { overflow-wrap: anywhere; width: 15mm }"
            "</style></head><body>"
            '<p class="pre">first line\nsecond line\n  indented</p>'
            + '<p class="just">A justified paragraph long enough to wrap over several lines of this small page.</p>'
              '<p class="spaced">Letter spaced words</p><div class="cut">A text far too long for its box</div>'
              '<p class="wrap">Averyveryverylongwordwithoutanyspace</p><p>长城精密制造有限公司 · 98.7%</p>' * 2
            + "<table><thead><tr><th>KPI</th><th>Value</th></tr></thead><tbody>"
            + "<tr><td>Revenue growth</td><td>8.6%</td></tr>" * 40 + "</tbody></table></body></html>")
    first = _patched_pdf(page)
    for name in ("set_text", "deactivate", "reactivate"):
        kept = getattr(line_break.Layout, name)
        assert kept.__wrapped__ is not kept
        monkeypatch.setattr(line_break.Layout, name, kept.__wrapped__)
    assert _patched_pdf(page) == first


def test_layout_context_freed_without_the_cyclic_collector(monkeypatch):
    """pdf_speed's image getter holds its layout context weakly, so a document's context, and the
    boxes and styles its caches hold, are freed by reference counting rather than by a collection.
    An SVG image keeps the context (to lay out its text) and still draws; either way the PDF is the
    one WeasyPrint's own getter gives."""
    import base64
    import gc
    import weakref

    from weasyprint.layout import LayoutContext

    from reporter.render import pdf_speed

    assert pdf_speed.install()
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="60" height="20"><rect width="60" height="20"'
           b' fill="#0072B2"/><text x="4" y="14" font-size="10" fill="white">SVG</text></svg>')
    image = f'<img src="data:image/svg+xml;base64,{base64.b64encode(svg).decode()}">'
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"></head><body><h1>Context</h1>{}'
            "<table><tr><th>KPI</th><td>8.6%</td></tr></table>" + "<p>filler</p>" * 60 + "</body></html>")
    contexts = []
    patched = LayoutContext.__init__

    def noted(self, *args, **kwargs):
        patched(self, *args, **kwargs)
        contexts.append(weakref.ref(self))

    monkeypatch.setattr(LayoutContext, "__init__", noted)
    was = gc.isenabled()
    gc.disable()
    try:
        plain, with_svg = _patched_pdf(page.format("")), _patched_pdf(page.format(image))
        assert len(contexts) == 2 and contexts[0]() is None
        monkeypatch.setattr(LayoutContext, "__init__", patched.__wrapped__)
        assert _patched_pdf(page.format("")) == plain
        assert _patched_pdf(page.format(image)) == with_svg
    finally:
        if was:
            gc.enable()


def test_styles_shared_across_documents_draw_what_weasyprint_draws(monkeypatch):
    """pdf_speed keeps the computed styles of a document's elements for the next document with the
    same stylesheets (keyed as WeasyPrint shares them within a document, with the element's own
    declarations by their text): later documents build far fewer styles, and every document is the
    one WeasyPrint's own cascade gives, also where style and lang attributes differ."""
    from weasyprint.css import ComputedStyle, StyleFor

    from reporter.render import pdf_speed

    assert pdf_speed.install()
    page = ('<!DOCTYPE html><html lang="LANG"><head><meta charset="utf-8"><style>'
            "h1::before { content: '§ ' } li { color: #0072B2 } .note { font-style: italic }"
            " td:first-child { font-weight: bold } table { border-collapse: collapse }"
            '</style></head><body><h1>Shared styles</h1><ol><li>first</li><li class="note">second</li></ol>'
            '<p style="color: COLOUR">coloured</p><p><span lang="zh-CN">长城精密</span> and text</p>'
            "<table><tr><td>KPI</td><td>8.6%</td></tr><tr><td>NPS</td><td>41</td></tr></table></body></html>")
    pages = [page.replace("LANG", lang).replace("COLOUR", colour) for lang, colour in
             (("en", "#D55E00"), ("zh-CN", "#009E73"), ("en", "#009E73"), ("en", "#D55E00"))]
    built = []
    counted = ComputedStyle.__init__

    def counting(self, *args, **kwargs):
        built[-1] += 1
        counted(self, *args, **kwargs)

    monkeypatch.setattr(ComputedStyle, "__init__", counting)

    def render_all() -> list[bytes]:
        built.clear()
        pdfs = []
        for html in pages:
            built.append(0)
            pdfs.append(_patched_pdf(html))
        return pdfs

    shared, shared_built = render_all(), list(built)
    patched = StyleFor.__init__
    assert patched.__wrapped__ is not patched
    monkeypatch.setattr(StyleFor, "__init__", patched.__wrapped__)
    assert render_all() == shared
    # The last document repeats the first: its elements' styles are the kept ones (pages and
    # pseudo-elements still get their own).
    assert shared_built[3] <= built[3] - 10
