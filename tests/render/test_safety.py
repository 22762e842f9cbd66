"""Safety of the render stage: escaping, the URL fetcher, font coverage, file names and notes."""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from urllib.request import HTTPRedirectHandler

import pytest
from pypdf import PdfReader

from reporter.config import BUILTIN_TEMPLATES
from reporter.errors import RenderError
from reporter.render import render_report
from reporter.render.files import account_file_name, safe_id, slugify, unique_file_names
from reporter.render.html import common_context, render_account_review_html
from reporter.render.notes import load_notes, notes_path, render_notes
from reporter.render.pdf import RefusedURL, TemplateFetcher, check_font_coverage, render_pdf

GENERATED = datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc)
META = {"title": "t", "author": "a", "subject": "s", "keywords": ["k"], "lang": "en"}


def _page(body: str, head: str = "") -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{head}'
            '<style>html { font-family: "Noto Sans", "Noto Sans CJK SC", sans-serif; }</style></head>'
            f"<body><p>Safety check</p>{body}</body></html>")


def _review_html(synthetic, config, account_id="A003", locale="en"):
    scorecard = synthetic.scorecard()
    account = next(a for a in scorecard["accounts"] if a["account_id"] == account_id)
    common = common_context(config, "reviews", period=synthetic.period, generated_at=synthetic.generated_at,
                            report_id=synthetic.report_id, locale=locale)
    return render_account_review_html(config, "reviews", account, synthetic.details(account_id),
                                      synthetic.charts(account), None, common)


# --------------------------------------------------------------------------- escaping

def test_hostile_account_name_is_visible_escaped_text(synthetic, render_config):
    html = _review_html(synthetic, render_config)
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;&lt;link rel=&#34;attachment&#34;" in html
    assert '<img src="file:' not in html and "<link" not in html
    assert "<script" not in html
    # Every image is an embedded data: URI and the page may not load anything else.
    assert all(src.startswith("data:") for src in re.findall(r'<img src="([^"]*)"', html))
    assert "default-src 'none'; img-src data:" in html


def test_hostile_name_pdf_has_text_and_no_attachment(synthetic, render_config, tmp_path):
    artifacts = render_report(render_config, "reviews", synthetic.scorecard(), {"A003": synthetic.details("A003")},
                              None, synthetic.charts, tmp_path, formats=("pdf",), accounts=["A003"],
                              generated_at=synthetic.generated_at, report_id=synthetic.report_id)
    reader = PdfReader(artifacts[0].path)
    text = "".join(page.extract_text() for page in reader.pages)
    assert '<img src="file:///etc/passwd"><link rel="attachment" href="file:///etc/passwd">' in text
    assert "/EmbeddedFiles" not in reader.trailer["/Root"].get("/Names", {})
    assert reader.attachments == {}
    for page in reader.pages:
        for annot in page.get("/Annots") or []:
            assert annot.get_object().get("/Subtype") != "/FileAttachment"


def test_link_rel_attachment_in_raw_html_is_not_embedded():
    html = _page('<link rel="attachment" href="file:///etc/passwd"><a rel="x" href="https://example.com">x</a>')
    reader = PdfReader(io.BytesIO(render_pdf(html, BUILTIN_TEMPLATES, META, GENERATED)))
    assert reader.attachments == {}


# --------------------------------------------------------------------------- URL fetcher

@pytest.fixture
def fetcher():
    return TemplateFetcher([BUILTIN_TEMPLATES])


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x.css",
    "https://example.com/logo.png",
    "ftp://example.com/x",
    "file:///etc/passwd",
    "file://otherhost" + str(BUILTIN_TEMPLATES / "base.html"),
    BUILTIN_TEMPLATES.as_uri() + "/../pyproject.toml",
    BUILTIN_TEMPLATES.as_uri() + "/no-such-file.css",
])
def test_fetcher_refuses(fetcher, url):
    with pytest.raises(RefusedURL):
        fetcher.fetch(url)
    assert fetcher.refused == [url]


def test_fetcher_refuses_file_outside_and_symlinks_out(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (templates / "link.txt").symlink_to(outside)
    fetcher = TemplateFetcher([templates])
    for url in (outside.as_uri(), (templates / "link.txt").as_uri()):
        with pytest.raises(RefusedURL):
            fetcher.fetch(url)


def test_fetcher_serves_template_files_and_data_uris(fetcher):
    css = fetcher.fetch((BUILTIN_TEMPLATES / "styles" / "base.css").as_uri())
    assert b"Noto Sans" in css.read() and css.content_type == "text/css"
    assert fetcher.fetch("data:text/plain;base64,aGk=").read() == b"hi"
    assert fetcher.fetch("data:image/svg+xml,%3Csvg%2F%3E").read() == b"<svg/>"
    assert not any(isinstance(h, HTTPRedirectHandler) for h in fetcher.handlers)


@pytest.mark.parametrize("body, head, url", [
    ('<img src="http://127.0.0.1:9/pixel.png" alt="">', "", "http://127.0.0.1:9/pixel.png"),
    ("", '<link rel="stylesheet" href="file:///etc/passwd">', "file:///etc/passwd"),
    ("", '<style>@import url("https://example.com/x.css");</style>', "https://example.com/x.css"),
    ('<img src="../../etc/passwd" alt="">', "", "passwd"),
])
def test_render_fails_naming_the_refused_url(body, head, url):
    with pytest.raises(RenderError) as info:
        render_pdf(_page(body, head), BUILTIN_TEMPLATES, META, GENERATED)
    assert url in str(info.value)


# --------------------------------------------------------------------------- font coverage

def test_font_coverage_accepts_latin_and_chinese():
    check_font_coverage([("a", "Acme Corp € 12,5% ↑↓→ — · ×"), ("b", "长城精密制造有限公司 第 1 页，共 6 页")])


@pytest.mark.parametrize("char", ["\U0001F9FF", "\U00010900"])  # nazar amulet (emoji), Phoenician alef
def test_uncovered_character_in_account_name_fails(synthetic, render_config, tmp_path, char):
    scorecard = synthetic.scorecard()
    scorecard["accounts"][1]["name"] = f"长城精密 {char}"
    out = tmp_path / "out"
    with pytest.raises(RenderError) as info:
        render_report(render_config, "reviews", scorecard, {}, None, synthetic.charts, out,
                      formats=("pdf",), accounts=["A002"], generated_at=synthetic.generated_at,
                      report_id=synthetic.report_id)
    message = str(info.value)
    assert f"U+{ord(char):04X}" in message and "account.name" in message
    assert not out.exists()


def test_uncovered_character_in_note_fails(synthetic, render_config, render_root, tmp_path):
    (render_root / "notes" / synthetic.period / "A002.md").write_text("## Risks\n- \U00010900 contract\n",
                                                                        encoding="utf-8")
    with pytest.raises(RenderError, match=r"U\+10900.*notes"):
        render_report(render_config, "reviews", synthetic.scorecard(), {}, None, synthetic.charts, tmp_path,
                      formats=("html",), accounts=["A002"], generated_at=synthetic.generated_at,
                      report_id=synthetic.report_id)


def test_uncovered_character_in_html_fails_before_rendering():
    with pytest.raises(RenderError, match="U\\+1F9FF"):
        render_pdf(_page("<p>\U0001F9FF</p>"), BUILTIN_TEMPLATES, META, GENERATED)


@pytest.mark.parametrize("reference", ["&#x1F9FF;", "&#129535;"])
def test_uncovered_character_written_as_a_reference_fails(reference):
    with pytest.raises(RenderError, match="U\\+1F9FF"):
        render_pdf(_page(f"<p>{reference}</p>"), BUILTIN_TEMPLATES, META, GENERATED)


# --------------------------------------------------------------------------- file names

def test_file_names_from_id_and_slug():
    assert account_file_name("A001", "Acme Corp", "pdf") == "A001-acme-corp.pdf"
    assert account_file_name("A002", "长城精密制造有限公司", "pdf") == "A002.pdf"
    assert account_file_name("A003", "Société Générale", "html") == "A003-societe-generale.html"
    assert slugify("<img src=x>") == "img-src-x"


def test_similar_names_do_not_collide():
    names = unique_file_names([{"account_id": "A1", "name": "Acme Corp"},
                               {"account_id": "A2", "name": "ACME corp!"}], "pdf")
    assert names == {"A1": "A1-acme-corp.pdf", "A2": "A2-acme-corp.pdf"}


@pytest.mark.parametrize("account_id", ["../../etc/passwd", "A/1", "..", ".hidden", "A 1", "a\\b", "x" * 80])
def test_unsafe_ids_are_neutralised(account_id):
    name = account_file_name(account_id, "Acme", "pdf")
    assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")
    assert re.fullmatch(r"[A-Za-z0-9_-]+-[0-9a-f]{8}-acme\.pdf", name)


def test_neutralised_ids_stay_apart():
    assert safe_id("A/1") != safe_id("A_1") != safe_id("A-1")
    assert len({safe_id(i) for i in ("A/1", "A:1", "A 1", "A?1")}) == 4


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="both be written"):
        unique_file_names([{"account_id": "A1", "name": "x"}, {"account_id": "a1", "name": "X"}], "pdf")


# --------------------------------------------------------------------------- notes

@pytest.mark.parametrize("account_id", ["../A001", "A001/../../x", "..", "/etc/passwd", "A\x00"])
def test_notes_refuse_path_traversal(render_root, account_id):
    with pytest.raises(RenderError, match="cannot name a notes file"):
        load_notes(render_root, "2026-10", account_id)


def test_notes_refuse_symlink_out_of_notes(render_root, tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_text("# secret")
    (render_root / "notes" / "2026-10" / "A009.md").symlink_to(outside)
    with pytest.raises(RenderError, match="outside"):
        notes_path(render_root, "2026-10", "A009")


def test_missing_note_is_none(render_root):
    assert load_notes(render_root, "2026-10", "A404") is None


def test_notes_are_sanitised(synthetic):
    html = render_notes(synthetic.note + "\n![x](http://example.com/x.png) <file:///etc/passwd>\n")
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "javascript:" not in html and "a bad link" in html
    assert '<a href="https://example.com/survey">the survey</a>' in html
    assert "<img" not in html
    assert 'href="file:' not in html and "file:///etc/passwd" in html


def test_notes_actions_become_a_table(synthetic):
    html = render_notes(synthetic.note)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td[^>]*>(.*?)</td></tr>", html)
    assert rows == [
        ("Book the quarterly business review with the CFO", "Li Wei", "2026-11-30"),
        ("Send the revised SLA proposal", "Anna Berg", "2026-12-15"),
        ("Introduce our CTO to their new CIO", "Daniel Moore", ""),
        ("Prepare the cloud migration business case", "", ""),
    ]
    assert '<section class="notes-section notes-highlights">' in html
    assert "<h3>Risks</h3>" in html  # headings shifted below the document's h1/h2
