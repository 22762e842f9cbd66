"""HTML -> PDF with WeasyPrint: nothing fetched from outside the template folders, fixed metadata, same bytes every time.

Determinism: WeasyPrint 70 builds no random identifiers for the plain and PDF/A-3b
outputs. The run fixes everything that would otherwise come from the clock: the
document dates (dcterms.created/modified -> /CreationDate, /ModDate and XMP), the
attachment dates, and the file identifier (/ID), which is derived from the inputs.
Font subsets are named from a hash of the font (WeasyPrint), and HarfBuzz subsetting
is stable; fontTools, WeasyPrint's fallback subsetter, stamps fonts with the current
time unless SOURCE_DATE_EPOCH is set, so it is set to the run's time while writing.

PDF/A-3b: WeasyPrint's ``pdf/a-3b`` variant writes PDF 1.7 with XMP metadata
(pdfaid:part 3, conformance B), an sRGB OutputIntent and an /AF entry (with an
AFRelationship) for every embedded file; fonts are always embedded.

Speed: documents of one process share a font configuration, and ``pdf_speed`` keeps what
WeasyPrint would otherwise redo for every document (parsed stylesheets, font bytes, Pango
contexts, per-element pseudo-element styles); see that module for what each saves. Chart
PNGs reach the fetcher from memory (``images``, named by ``chart:`` URIs in the HTML) rather
than as base64 in the HTML, which the parser would read through character by character.
Latin text is set in Noto Sans, a small face: subsetting the 19 MB Noto Sans CJK face for
every document is left to documents with Chinese text. Python's garbage collector is paused
while WeasyPrint makes a document (``_collector_paused``), and the font coverage check parses
the HTML only when its source has a character the fonts lack.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import mimetypes
import os
import re
import subprocess
import threading
import unicodedata
from base64 import b64decode
from datetime import datetime, timezone
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable, Mapping, Sequence
from urllib.parse import unquote, unquote_to_bytes, urlsplit
from urllib.request import url2pathname

import pydyf
from weasyprint import HTML, Attachment
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from ..errors import Issue, RenderError
from . import pdf_speed

# The font stack of report_templates/styles/base.css; a test keeps the two in step.
FONT_FAMILIES = ("Noto Sans", "Noto Sans Symbols", "Noto Sans CJK SC", "sans-serif")
VARIANTS = (None, "pdf/a-3b")
_SKIPPED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}  # controls and invisible format characters


# --------------------------------------------------------------------------- URL fetcher

class RefusedURL(ValueError):
    """A URL the report may not load; WeasyPrint turns it into a fatal error (fail_on_errors)."""


class TemplateFetcher(URLFetcher):
    """Serves ``data:`` URIs, the document's chart images (``chart:`` URIs, from memory) and regular
    files inside the template folders; refuses everything else.

    No http(s), ftp or other schemes, no file outside the folders (symlinks are resolved
    first), no redirects (nothing remote is ever opened). Every refused URL is kept in
    ``refused`` so the render error can name it.
    """

    def __init__(self, allowed_dirs: Iterable[Path], images: Mapping[str, bytes] | None = None):
        super().__init__(allowed_protocols=("file", "data"), allow_redirects=False, fail_on_errors=True)
        self.allowed_dirs = [Path(d).resolve() for d in allowed_dirs]
        self.images = dict(images or {})
        self.refused: list[str] = []

    def _refuse(self, url: str, why: str):
        self.refused.append(url)
        raise RefusedURL(f"{url}: {why}")

    def fetch(self, url, headers=None):
        if url.startswith("data:"):
            mime, data = _decode_data_uri(url)
            return URLFetcherResponse(url, body=data, headers={"Content-Type": mime})
        if url in self.images:
            return URLFetcherResponse(url, body=self.images[url], headers={"Content-Type": "image/png"})
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            self._refuse(url, f"the {parts.scheme or 'relative'} scheme is not allowed; "
                              "reports load only files of the template folders and data: URIs")
        if parts.netloc not in ("", "localhost"):
            self._refuse(url, "remote file hosts are not allowed")
        path = Path(url2pathname(unquote(parts.path))).resolve()
        if not any(path.is_relative_to(d) for d in self.allowed_dirs):
            self._refuse(url, "outside the template folders " + ", ".join(str(d) for d in self.allowed_dirs))
        if not path.is_file():
            self._refuse(url, "no such file in the template folders")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path.as_uri(), body=path.read_bytes(), headers={"Content-Type": mime})


def _decode_data_uri(url: str) -> tuple[str, bytes]:
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise RefusedURL(f"{url[:60]}: malformed data: URI")
    params = header.split(";")
    mime = params[0] or "text/plain"
    if "base64" in params[1:]:
        return mime, b64decode(payload)
    return mime, unquote_to_bytes(payload)


# --------------------------------------------------------------------------- font coverage

def _fc_match(family: str) -> tuple[str, int]:
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}\t%{index}", family], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RenderError(f"cannot ask fontconfig for the font of {family!r} (fc-match: {exc}); "
                          "install fontconfig and the Noto fonts") from None
    file, _, index = out.partition("\t")
    if not file:
        raise RenderError(f"fontconfig has no font for {family!r}; install fonts-noto-core and fonts-noto-cjk")
    return file, int(index or 0)


@lru_cache(maxsize=None)
def _cmap(file: str, index: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(file, fontNumber=index, lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


@lru_cache(maxsize=None)
def covered_codepoints(families: tuple[str, ...] = FONT_FAMILIES) -> frozenset[int]:
    """Every code point some font of the stack (as fontconfig resolves each family) has a glyph for."""
    covered: set[int] = set()
    for family in families:
        covered |= _cmap(*_fc_match(family))
    return frozenset(covered)


def _needs_glyph(char: str) -> bool:
    if char.isspace() or unicodedata.category(char) in _SKIPPED_CATEGORIES:
        return False
    code = ord(char)
    return not (0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF)  # variation selectors


def check_font_coverage(texts: Iterable[tuple[str, str]], families: tuple[str, ...] = FONT_FAMILIES) -> None:
    """Fail if any character of ``texts`` ((where, text) pairs) has no glyph in the font stack."""
    covered = covered_codepoints(families)
    missing: dict[str, list[str]] = {}
    for where, text in texts:
        for char in set(text):
            if ord(char) not in covered and _needs_glyph(char):
                places = missing.setdefault(char, [])
                if where not in places:
                    places.append(where)
    if missing:
        issues = []
        for char in sorted(missing):
            name = unicodedata.name(char, "unnamed character")
            places = missing[char]
            shown = ", ".join(places[:5]) + (f" and {len(places) - 5} more" if len(places) > 5 else "")
            issues.append(Issue(f"character {char!r} (U+{ord(char):04X} {name}) has no glyph in the fonts "
                                f"{', '.join(families)}; it occurs in {shown}. Remove or replace it, "
                                "or install a font that covers it and add it to the stylesheets"))
        raise RenderError(issues)


def context_texts(value, path: str = "") -> Iterable[tuple[str, str]]:
    """(key path, text) for every string in nested dicts and lists (other objects are skipped)."""
    if isinstance(value, str):
        yield path or "text", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from context_texts(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from context_texts(item, f"{path}[{i}]")


class _TextCollector(HTMLParser):
    """Text the PDF draws: text nodes (not <style>, <script>, <title>) and data-* attributes (running headers)."""

    _SKIP = {"style", "script", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.texts: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        for name, value in attrs:
            if name.startswith("data-") and value:
                self.texts.append((f"<{tag} {name}>", value))

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        if not self.stack or self.stack[-1] not in self._SKIP:
            snippet = " ".join(data.split())[:60]
            self.texts.append((f'the text "{snippet}"', data))


def html_texts(html: str) -> list[tuple[str, str]]:
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    return collector.texts


# A character reference other than the escapes markupsafe writes may stand for a character the
# source does not show.
_OTHER_REFERENCE = re.compile(r"&(?!(?:amp|lt|gt|quot|#39|#34|#x27);)")


def _source_covered(html: str, families: tuple[str, ...] = FONT_FAMILIES) -> bool:
    """Whether every character of the HTML source, markup and styles included, has a glyph: then
    so has every text the PDF draws, and the parse that tells where a missing one is (a quarter
    of a second for a 1,000-account portfolio) is not needed."""
    if _OTHER_REFERENCE.search(html):
        return False
    covered = covered_codepoints(families)
    return all(ord(char) in covered or not _needs_glyph(char) for char in set(html))


# --------------------------------------------------------------------------- rendering

@contextlib.contextmanager
def _source_date_epoch(moment: datetime):
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(moment.timestamp()))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous


class _ErrorLog(logging.Handler):
    """WeasyPrint logs (and skips) what it cannot draw, e.g. a broken SVG: collect those to fail loudly."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


_collector_lock = threading.Lock()
_collector_pauses = [0, False]  # documents being laid out now; whether the collector was on before the first


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while WeasyPrint makes a document, then one young collection.

    WeasyPrint builds every box, style and line of a document before it writes the first byte
    (a 1,000-account portfolio: over a million objects, all alive until the PDF is written). With
    the collector on, its full collections walk them again and again as they grow, together with
    the caller's data (the scorecard): about a third of a portfolio's time. Paused, what the
    document leaves behind is freed once, by a collection of the youngest generation only (the
    objects made since the pause), when the last document being made is done. A caller that
    turned the collector off keeps it off.
    """
    with _collector_lock:
        if _collector_pauses[0] == 0:
            _collector_pauses[1] = gc.isenabled()
            gc.disable()
        _collector_pauses[0] += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses[0] -= 1
            resume = _collector_pauses[0] == 0 and _collector_pauses[1]
            if resume:
                gc.enable()
        if resume:
            gc.collect(0)


def _unique_associated_files(document, pdf) -> None:
    """WeasyPrint 70 lists each embedded file twice in the catalog's /AF (from the name tree and from
    the file specifications); keep one reference per file."""
    if "AF" in pdf.catalog:
        pdf.catalog["AF"] = pydyf.Array(dict.fromkeys(pdf.catalog["AF"]))


def _w3c(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _identifier(html: str, metadata: dict, variant, attachments, generated_at: datetime) -> bytes:
    digest = hashlib.sha256()
    for part in (html, repr(sorted((k, str(v)) for k, v in metadata.items())), str(variant), _w3c(generated_at)):
        digest.update(part.encode("utf-8") + b"\0")
    for name, data, description in attachments:
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(data).digest() + (description or "").encode())
    return digest.hexdigest()[:32].encode("ascii")


def render_pdf(
    html: str,
    base_dir: Path,
    metadata: dict,
    generated_at: datetime,
    variant: str | None = None,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    allowed_dirs: Iterable[Path] | None = None,
    images: Mapping[str, bytes] | None = None,
) -> bytes:
    """The PDF of ``html`` (relative URLs resolve against ``base_dir``).

    metadata: title, author, subject, keywords (list), lang. ``generated_at`` (aware) is
    the creation and modification date. ``variant`` "pdf/a-3b" makes the archive variant;
    ``attachments`` are (file name, bytes, description) and are the only files embedded
    (a ``<link rel="attachment">`` in the HTML is ignored). ``allowed_dirs`` (default:
    ``base_dir``) are the folders the URL fetcher may read; ``images`` are the PNGs the HTML
    names by ``chart:`` URI (``html.print_images``).
    """
    if variant not in VARIANTS:
        raise RenderError(f'unknown PDF variant "{variant}"; use one of: none, pdf/a-3b')
    if generated_at.tzinfo is None:
        raise RenderError("generated_at must be an aware datetime (the run's time, with its time zone)")
    if not _source_covered(html):
        check_font_coverage(html_texts(html))
    base_dir = Path(base_dir).resolve()
    fetcher = TemplateFetcher(allowed_dirs if allowed_dirs is not None else [base_dir], images)
    pdf_speed.install()
    font_config = pdf_speed.font_configuration(tuple(str(d) for d in fetcher.allowed_dirs))
    moment = generated_at.astimezone(timezone.utc)
    errors = _ErrorLog()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(errors)
    with _collector_paused():
        try:
            document = HTML(string=html, base_url=base_dir.as_uri() + "/", url_fetcher=fetcher).render(
                font_config=font_config)
            meta = document.metadata
            meta.title = metadata.get("title") or meta.title
            meta.authors = [metadata["author"]] if metadata.get("author") else []
            meta.description = metadata.get("subject")
            meta.keywords = [str(k) for k in metadata.get("keywords") or []]
            meta.lang = metadata.get("lang") or meta.lang
            meta.generator = metadata.get("generator", "reporter")
            meta.created = meta.modified = _w3c(moment)
            meta.attachments = []  # only our own files are embedded, never one a document links to
            meta.custom = {}
            files = [Attachment(string=data, name=name, description=description, created=moment.replace(tzinfo=None),
                                modified=moment.replace(tzinfo=None), relationship="Data")
                     for name, data, description in attachments]
            with _source_date_epoch(moment):
                pdf = document.write_pdf(
                    pdf_variant=variant,
                    pdf_identifier=_identifier(html, metadata, variant, attachments, moment),  # chart: URIs are digests
                    attachments=files or None,
                    uncompressed_pdf=False,
                    finisher=_unique_associated_files,
                )
            del document  # its boxes are garbage before the collector resumes
        except FatalURLFetchingError as exc:
            refused = fetcher.refused or [str(exc)]
            raise RenderError([Issue(f"the report refers to {url}, which may not be loaded; "
                                     "reports load only files of the template folders and data: URIs")
                               for url in refused]) from None
        finally:
            logger.removeHandler(errors)
    if errors.messages:
        raise RenderError([Issue(f"WeasyPrint could not render part of the document: {m}") for m in errors.messages])
    return pdf
