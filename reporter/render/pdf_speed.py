"""Speed for many PDFs in one process: what WeasyPrint would otherwise redo for every document.

Measured on a 5-page account review (WeasyPrint 70; Noto Sans CJK, one 19 MB font file, serves
every script): the PDF took ~520 ms of CPU with these patches off and ~310 ms with them on
(charts excluded). Every patch leaves the drawing as it was; all but two give byte-identical
PDFs (checked with the patch on and off):

* ``font_configuration(key)``: one ``FontConfiguration`` per set of template folders and process,
  instead of one per document (Pango loads and measures the fonts once).
* Stylesheets: a ``<style>`` already parsed in this process (same text, base URL, media, font
  configuration and fetcher) is reused, and the ``@page`` rules and layers it adds are replayed
  into the document as a fresh parse would add them (~40 ms). A sheet that registers
  ``@counter-style`` rules or colour profiles is parsed every time.
* Font faces: a face's bytes are copied out of HarfBuzz once per process, not once per document
  (~20 ms), and subsetting takes one HarfBuzz pass instead of WeasyPrint's two (~60 ms; see
  ``harfbuzz_subset_once``). This one changes bytes: when HarfBuzz's closure adds a glyph after
  the last one drawn (a variation-sequence form, say), the single pass keeps it at its own glyph
  id rather than after the last drawn one. The glyphs drawn are the same; the output is as
  deterministic as before. A CID-keyed CFF face (Noto Sans CJK) goes in as its bare CFF cut to
  the glyphs drawn, found by CID (~4 KB instead of ~480 KB a weight, ~9 ms less a review with
  a Chinese name; the same pixels, tested).
* Pango contexts: layouts with the same font map, direction and language share one context
  instead of making one each (~40 us a layout, ~40,000 layouts in a portfolio), and what a
  layout takes from its style (font description, decoration metrics, features) is worked out
  once per style (a review: ~550 layouts over ~90 styles).
* Kept layouts: a line's Pango layout is kept from layout to drawing instead of being made and
  shaped again from the same text and style (~550 a review; ~1% of its instructions).
* ``::marker`` and the footnote/note pseudo-elements: their styles are built when asked for,
  not for every element (~30 ms; a 74-page portfolio builds ~250,000 styles fewer).
* Auto table layout: cells with the same boxes, styles and text are measured once per document
  (~30 ms for a review; ~2 s for a 1,000-account portfolio).
* PDF streams: pydyf compresses every stream twice when the PDF has an identifier; within one
  ``write`` each stream's bytes are kept, deflated by zlib-ng at level 6 rather than zlib at 9
  (~4 against ~1.6 ms a review, the same size). This one changes bytes, deterministically.
* PNG images: an 8-bit RGB or grey, non-interlaced PNG goes into the PDF with its own compressed
  pixel data (a PNG's IDAT is what a PDF Flate image with PNG predictors holds) instead of being
  decoded and compressed again (~8 ms a chart).
* Backgrounds: a box whose style has square corners and no background, border image, mask or
  shadow gets its (absent) background from one answer per style instead of a dozen style
  lookups per box and page (~6 ms a review).
* Colours: a computed colour is parsed once per declared value and colour scheme, not once per
  style (~380 parses a review).
* Style lookups: a property a computed style is first asked for that the element does not
  declare takes its parent's value (inherited) or its initial value directly, without
  WeasyPrint's general path (~16,000 lookups a review, ~2% of its time).
* Percentages: what a box's used lengths take from its style alone (pixel lengths, border
  widths, box sizing) is read once per style, not each time the box is laid out (~1,100 times
  a review).
* HTML parsing: tinyhtml5 (WeasyPrint's parser) caches the regular expression of each character
  class it scans for under the wrong key, so it builds one for every scan; the cache is filled
  under the right key (a third of the parsing time, ~10 ms a review).
* Layout context: WeasyPrint's context holds its image getter, a partial that holds the context,
  so the context and all its caches reach (~15,000 of a review's ~24,000 objects: boxes, styles,
  lines) wait for the cyclic collector. The getter here holds the context weakly: they are freed
  when the document is, and the collection after a document walks a third as many objects.
* Computed styles: WeasyPrint shares an element's computed style with the elements that have the
  same parent style, matched rules and own declarations, within a document. Here that store lasts
  from one document to the next with the same stylesheets, base URL and fonts (the own declarations,
  from style and lang attributes, keyed by their text), so a review's ~150 element styles, and what
  is worked out once per style, are made once per process (~5% of a review's instructions).

Each patch is installed only on the WeasyPrint version it was written against (70.x); with any
other version nothing is patched (slower, same drawing). The caches are per process (the
stylesheets and the store of computed styles per thread).
"""
from __future__ import annotations

import functools
import io
import re
import struct
import threading
import weakref
from contextvars import ContextVar

import weasyprint
from zlib_ng import zlib_ng

SUPPORTED = weasyprint.__version__.split(".")[0] == "70"

_lock = threading.Lock()
_installed = False
_local = threading.local()
_in_font_init: ContextVar[bool] = ContextVar("reporter_in_font_init", default=False)


# --------------------------------------------------------------------------- font configuration

_font_configs: dict[tuple, object] = {}


def font_configuration(key: tuple):
    """The process's ``FontConfiguration`` for documents that load fonts from the same folders."""
    from weasyprint.text.fonts import FontConfiguration

    with _lock:
        config = _font_configs.get(key)
        if config is None:
            config = _font_configs[key] = FontConfiguration()
        return config


# --------------------------------------------------------------------------- install

def install() -> bool:
    """Install the patches (once per process). Returns whether they are active."""
    global _installed
    if not SUPPORTED:
        return False
    with _lock:
        if not _installed:
            _patch_stylesheets()
            _patch_fonts()
            _patch_streams()
            _patch_table_widths()
            _patch_marker_styles()
            _patch_layout_contexts()
            _patch_png()
            _patch_html_parser()
            _patch_backgrounds()
            _patch_colors()
            _patch_style_lookups()
            _patch_percentages()
            _patch_kept_layouts()
            _patch_context_cycle()
            _patch_shared_styles()
            _installed = True
    return True


# --------------------------------------------------------------------------- stylesheets

def _patch_stylesheets() -> None:
    import weasyprint.css as css_module

    original = css_module.CSS

    def cached_css(*args, string=None, base_url=None, media_type="print", font_config=None,
                   counter_style=None, color_profiles=None, page_rules=None, layers=None, **kwargs):
        if args or string is None or kwargs.get("layer") is not None or font_config is None:
            return original(*args, string=string, base_url=base_url, media_type=media_type,
                            font_config=font_config, counter_style=counter_style,
                            color_profiles=color_profiles, page_rules=page_rules, layers=layers, **kwargs)
        cache = getattr(_local, "stylesheets", None)
        if cache is None:
            cache = _local.stylesheets = {}
        fetcher = kwargs.get("url_fetcher")
        key = (string, base_url, media_type, id(font_config), type(fetcher).__name__,
               tuple(str(d) for d in getattr(fetcher, "allowed_dirs", ())))
        entry = cache.get(key)
        if entry is None:
            counters = {} if counter_style is None else counter_style
            profiles = {} if color_profiles is None else color_profiles
            counters_before, profiles_before = dict(counters), dict(profiles)
            own_rules, own_layers = [], []
            sheet = original(string=string, base_url=base_url, media_type=media_type, font_config=font_config,
                             counter_style=counters, color_profiles=profiles, page_rules=own_rules,
                             layers=own_layers, **kwargs)
            cacheable = counters == counters_before and profiles == profiles_before
            entry = (sheet, own_rules, own_layers, font_config) if cacheable else None
            if cacheable and len(cache) < 64:
                cache[key] = entry
            # As a fresh parse: the document's lists get the rules, and the sheet refers to them.
            document_rules = [] if page_rules is None else page_rules
            document_layers = [] if layers is None else layers
            document_rules.extend(own_rules)
            document_layers.extend(own_layers)
            sheet.page_rules, sheet.layers = document_rules, document_layers
            return sheet
        sheet, own_rules, own_layers, _ = entry
        document_rules = [] if page_rules is None else page_rules
        document_layers = [] if layers is None else layers
        document_rules.extend(own_rules)
        document_layers.extend(own_layers)
        sheet.page_rules, sheet.layers = document_rules, document_layers
        return sheet

    css_module.CSS = cached_css  # only find_stylesheets (the document's <style> and <link>) looks it up here


# --------------------------------------------------------------------------- fonts

def _pointer(ffi, cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def _patch_fonts() -> None:
    import pydyf
    from weasyprint import pdf as weasyprint_pdf
    from weasyprint.pdf import fonts as pdf_fonts
    from weasyprint.text.ffi import ffi, harfbuzz, harfbuzz_subset

    original_data = pdf_fonts.get_hb_object_data
    original_init = pdf_fonts.Font.__init__
    # face address -> [kept reference, file bytes]. The reference keeps the face alive, so its
    # address cannot be taken by another face while the bytes are cached.
    faces: dict[int, list] = {}

    def get_hb_object_data(hb_object, ot_color=None, glyph=None):
        if ot_color is None and _in_font_init.get():
            key = _pointer(ffi, hb_object)
            entry = faces.get(key)
            if entry is None:
                entry = faces[key] = [harfbuzz.hb_face_reference(hb_object), original_data(hb_object)]
            return entry[1]
        return original_data(hb_object, ot_color, glyph)

    def font_init(self, *args, **kwargs):
        token = _in_font_init.set(True)
        try:
            original_init(self, *args, **kwargs)
        finally:
            _in_font_init.reset(token)

    pdf_fonts.get_hb_object_data = get_hb_object_data
    pdf_fonts.Font.__init__ = font_init

    if harfbuzz_subset is None or not harfbuzz.hb_version_atleast(4, 1, 0):
        return  # WeasyPrint falls back to fontTools: left as it is

    try:
        ffi.cdef("void hb_set_clear (hb_set_t *set);")
    except Exception:  # noqa: BLE001 - declared already
        pass
    drop_tables = tuple(harfbuzz.hb_tag_from_string(name, -1) for name in (
        b"BASE", b"DSIG", b"EBDT", b"EBLC", b"EBSC", b"GPOS", b"GSUB", b"JSTF", b"LTSH", b"PCLT", b"SVG "))

    def subset_face(font, gids, hinting: bool, retain_gids: bool) -> bytes | None:
        """The face of ``font`` cut down to ``gids`` in one HarfBuzz pass (None if HarfBuzz fails)."""
        hb_subset = ffi.gc(harfbuzz_subset.hb_subset_input_create_or_fail(),
                           harfbuzz_subset.hb_subset_input_destroy)
        gid_set = harfbuzz_subset.hb_subset_input_glyph_set(hb_subset)
        # An open array type: cffi parses a C type once per distinct string (pycparser, ~10 ms),
        # and a length in the type would make one string per glyph count.
        gid_array = ffi.new("hb_codepoint_t[]", sorted(gids))
        harfbuzz.hb_set_add_sorted_array(gid_set, gid_array, len(gids))
        flags = (harfbuzz_subset.HB_SUBSET_FLAGS_PASSTHROUGH_UNRECOGNIZED |
                 harfbuzz_subset.HB_SUBSET_FLAGS_DESUBROUTINIZE)
        if retain_gids:
            flags |= harfbuzz_subset.HB_SUBSET_FLAGS_RETAIN_GIDS
        if not hinting:
            flags |= harfbuzz_subset.HB_SUBSET_FLAGS_NO_HINTING
        if font.missing:
            flags |= harfbuzz_subset.HB_SUBSET_FLAGS_NOTDEF_OUTLINE
        harfbuzz_subset.hb_subset_input_set_flags(hb_subset, flags)
        drop_set = harfbuzz_subset.hb_subset_input_set(hb_subset, harfbuzz_subset.HB_SUBSET_SETS_DROP_TABLE_TAG)
        drop_array = ffi.new("hb_codepoint_t[]", drop_tables)
        harfbuzz.hb_set_add_sorted_array(drop_set, drop_array, len(drop_tables))
        # GSUB is dropped, so glyphs only reachable through its substitutions are never drawn.
        harfbuzz.hb_set_clear(harfbuzz_subset.hb_subset_input_set(
            hb_subset, harfbuzz_subset.HB_SUBSET_SETS_LAYOUT_FEATURE_TAG))
        harfbuzz.hb_set_clear(harfbuzz_subset.hb_subset_input_set(
            hb_subset, harfbuzz_subset.HB_SUBSET_SETS_LAYOUT_SCRIPT_TAG))
        hb_face = ffi.gc(harfbuzz_subset.hb_subset_or_fail(font.hb_face, hb_subset), harfbuzz.hb_face_destroy)
        return (original_data(hb_face) or None) if hb_face else None

    def harfbuzz_subset_once(self, to_unicode, hinting):
        """WeasyPrint 70's ``Font._harfbuzz_subset`` in one HarfBuzz pass instead of two; a
        CID-keyed CFF face is embedded as its bare CFF, cut to the glyphs drawn.

        WeasyPrint subsets with the glyph ids retained, then subsets the result again keeping
        glyphs 0..max to drop the empty ones after the last used glyph (and the hints). With
        retained ids HarfBuzz already ends the font at the last used glyph, so one pass with the
        second pass's flags added gives the same bytes (checked by tests/render) in a quarter
        of the time: ~5 ms instead of ~20 ms for the 65,535-glyph CJK face.

        Retained ids still leave a CJK face every empty glyph up to the last one drawn (~480 KB
        and ~9 ms for the dozen ideographs of a Chinese name, in each weight). The text shows
        glyph ids as CIDs; a bare CID-keyed CFF font (FontFile3 /CIDFontType0C) finds a CID's
        glyph through its charset, which HarfBuzz keeps when it renumbers the glyphs, and Noto
        Sans CJK's CIDs are its glyph ids (Adobe-Identity-0). So such a face is cut to the
        glyphs drawn (~4 KB, half the time) where its charset is checked to name every glyph
        drawn by its CID. (In an OpenType wrapper the CIDs would be read as glyph ids.)
        """
        if "CFF " in self.tables and not self.missing:
            compact = subset_face(self, to_unicode, hinting, retain_gids=False)
            cff = _bare_cff(compact, to_unicode) if compact else None
            if cff is not None:
                self.file_content = cff
                self.reporter_bare_cff = True
                return
        file_content = subset_face(self, to_unicode, hinting, retain_gids=True)
        if file_content:
            self.file_content = file_content
            return
        pdf_fonts.LOGGER.warning('Unable to subset "%s" with HarfBuzz', self.family)

    original_type = pdf_fonts.Font.type
    original_fonts_dictionary = pdf_fonts.build_fonts_dictionary

    @property
    def font_type(self):
        return "otf" if getattr(self, "reporter_bare_cff", False) else original_type.fget(self)

    @functools.wraps(original_fonts_dictionary)
    def build_fonts_dictionary(pdf, fonts, *args, **kwargs):
        result = original_fonts_dictionary(pdf, fonts, *args, **kwargs)
        bare = {id(font.file_content) for font in fonts.values() if getattr(font, "reporter_bare_cff", False)}
        for stream in pdf.objects:  # the font file streams WeasyPrint marked /OpenType
            if isinstance(stream, pydyf.Stream) and len(stream.stream) == 1 and id(stream.stream[0]) in bare:
                stream.extra["Subtype"] = "/CIDFontType0C"
        return result

    pdf_fonts.Font._harfbuzz_subset = harfbuzz_subset_once
    pdf_fonts.Font.type = font_type
    pdf_fonts.build_fonts_dictionary = build_fonts_dictionary
    weasyprint_pdf.build_fonts_dictionary = build_fonts_dictionary


def _bare_cff(font_file: bytes, gids) -> bytes | None:
    """The CFF table of ``font_file`` if it is a CID-keyed CFF font whose charset names each of
    ``gids`` by its CID (the glyph's id in the face it was cut from); otherwise None."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        font = TTFont(io.BytesIO(font_file), lazy=True)
        if font.sfntVersion != "OTTO" or not hasattr(font["CFF "].cff.topDictIndex[0], "ROS"):
            return None
        names = set(font.getGlyphOrder())
        table = font.reader["CFF "]
    except (TTLibError, KeyError, ValueError, AssertionError, struct.error):
        return None
    return table if all(f"cid{gid:05d}" in names for gid in gids) else None


# --------------------------------------------------------------------------- PDF streams

def _patch_streams() -> None:
    """pydyf compresses every stream twice when the PDF has an identifier (once to write it, once
    more to hash all objects for /ID); within one ``write`` each stream's bytes are kept. And it
    deflates them with zlib at level 9; zlib-ng at level 6 packs them as small in 40% of the time
    (a review's streams: 4.0 against 1.6 ms, 31-37 KiB)."""
    import pydyf

    original_write = pydyf.PDF.write
    pydyf_data = pydyf.Stream.data.fget
    original_data = _fast_stream_data if pydyf.__version__.startswith("0.13.") else pydyf_data
    memo: ContextVar[dict | None] = ContextVar("reporter_stream_memo", default=None)

    @functools.wraps(pydyf_data)
    def data(self):
        kept = memo.get()
        if kept is None:
            return original_data(self)
        entry = kept.get(id(self))
        if entry is None or entry[0] is not self:
            entry = kept[id(self)] = (self, original_data(self))
        return entry[1]

    def write(self, *args, **kwargs):
        token = memo.set({})
        try:
            return original_write(self, *args, **kwargs)
        finally:
            memo.reset(token)

    pydyf.Stream.data = property(data)
    pydyf.PDF.write = write


def _fast_stream_data(stream) -> bytes:
    """pydyf 0.13's ``Stream.data``, deflated by zlib-ng at level 6 instead of zlib at level 9."""
    import pydyf

    data = b"\n".join(pydyf._to_bytes(item) for item in stream.stream)
    extra = pydyf.Dictionary(stream.extra.copy())
    if stream.compress:
        extra["Filter"] = "/FlateDecode"
        data = zlib_ng.compress(data, 6)
    extra["Length"] = len(data)
    return b"\n".join((extra.data, b"stream", data, b"endstream"))


# --------------------------------------------------------------------------- Pango contexts

def _patch_layout_contexts() -> None:
    """WeasyPrint makes a new Pango context for every text layout it measures (~40 us each, some
    40,000 times in a portfolio). A context only carries the font map, base direction and language,
    set once when it is made and never changed, so layouts with the same three share one: the
    same shaping, the same bytes. And what a layout takes from its style (context, font
    description, decoration metrics, features) is worked out once per style, not once per layout.
    Otherwise ``Layout.setup`` of WeasyPrint 70 as it is."""
    from weasyprint.text import line_break
    from weasyprint.text.constants import LST_TO_ISO, PANGO_DIRECTION
    from weasyprint.text.ffi import FROM_UNITS, ffi, gobject, pango, unicode_to_char_p
    from weasyprint.text.fonts import font_features, get_font_description

    contexts: dict[tuple, tuple] = {}

    def context_for(font_map, direction, lang):
        key = (_pointer(ffi, font_map), direction, lang)
        cached = contexts.get(key)
        if cached is None:
            if len(contexts) >= 64:  # font maps that come and go (one per document): do not keep them all
                contexts.clear()
            # The context holds a reference to its font map, so the address in the key stays its own.
            pango_context = ffi.gc(pango.pango_font_map_create_context(font_map), gobject.g_object_unref)
            pango.pango_context_set_round_glyph_positions(pango_context, False)
            pango.pango_context_set_base_dir(pango_context, direction)
            if lang:
                lang_p, _ = unicode_to_char_p(lang)
                language = pango.pango_language_from_string(lang_p)
                pango.pango_context_set_language(pango_context, language)
            else:
                language = pango.pango_language_get_default()
            cached = contexts[key] = (pango_context, language)
        return cached

    def font_setup(style) -> tuple:
        """What a layout of ``style`` is given: context, language, font description, decoration
        metrics, font-feature attribute. WeasyPrint 70's ``Layout.setup`` as it is, once per style."""
        if style['font_language_override'] != 'normal':
            lang = LST_TO_ISO.get(style['font_language_override'].lower(), style['font_language_override'])
        elif style['lang']:
            lang = style['lang']
        else:
            lang = None
        pango_context, language = context_for(style.font_config.font_map, PANGO_DIRECTION[style['direction']], lang)

        assert not isinstance(style['font_family'], str), 'font_family should be a list'
        font_description = get_font_description(style)

        metrics = (None, None, None)
        if style['text_decoration_line'] != 'none':
            kept = ffi.gc(pango.pango_context_get_metrics(pango_context, font_description, language),
                          pango.pango_font_metrics_unref)
            metrics = (FROM_UNITS * pango.pango_font_metrics_get_ascent(kept),
                       FROM_UNITS * pango.pango_font_metrics_get_underline_position(kept),
                       FROM_UNITS * pango.pango_font_metrics_get_strikethrough_position(kept),
                       FROM_UNITS * pango.pango_font_metrics_get_underline_thickness(kept),
                       FROM_UNITS * pango.pango_font_metrics_get_strikethrough_thickness(kept))

        features = font_features(
            style['font_kerning'], style['font_variant_ligatures'],
            style['font_variant_position'], style['font_variant_caps'],
            style['font_variant_numeric'], style['font_variant_alternates'],
            style['font_variant_east_asian'], style['font_feature_settings'])
        attr = None
        if features:
            features = ','.join(f'{key} {value}' for key, value in features.items()).encode()
            attr = style.font_config.font_features.setdefault(features, pango.pango_attr_font_features_new(features))
        return pango_context, language, font_description, metrics, attr

    @functools.wraps(line_break.Layout.setup)
    def setup(self, style):
        self.style = style
        self.first_line_direction = 0
        # A style's font properties are never changed once text is laid out with it (WeasyPrint
        # changes a copy for ::first-line), and a review lays out ~550 texts with ~90 styles.
        kept = style.__dict__.get("_reporter_font_setup")
        if kept is None:
            kept = style._reporter_font_setup = font_setup(style)
        pango_context, self.language, font_description, metrics, attr = kept
        self.layout = ffi.gc(pango.pango_layout_new(pango_context), gobject.g_object_unref)
        pango.pango_layout_set_auto_dir(self.layout, False)
        pango.pango_layout_set_font_description(self.layout, font_description)
        self.ascent, self.underline_position, self.strikethrough_position = metrics[:3]
        if len(metrics) == 5:
            self.underline_thickness, self.strikethrough_thickness = metrics[3:]
        if attr is not None:
            attr_list = pango.pango_attr_list_new()
            pango.pango_attr_list_insert(attr_list, attr)
            pango.pango_layout_set_attributes(self.layout, attr_list)

    line_break.Layout.setup = setup


# --------------------------------------------------------------------------- kept layouts

# What Pango takes as a paragraph break: a text with none is laid out the same in single-paragraph mode.
_PARAGRAPH_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _patch_kept_layouts() -> None:
    """WeasyPrint lays each line of text out with a Pango layout, drops it (``Layout.deactivate``)
    and, to draw the line, makes and shapes a new one from the same text and style
    (``reactivate``): ~550 times a review. A layout whose text has no paragraph break is set in
    single-paragraph mode when its text is set (what drawing sets; without a break it lays out
    the same) and kept, and drawing uses it as it is when a new one would be the same: the same
    style, no word or letter spacing, no justification, no overflow-wrap, and not drawn before
    (drawing may change a layout: ellipsis). Its line is the whole text (a line that was cut is
    set again, alone and without a width, before it is kept), so its width, if any, changes
    nothing. Anything else goes WeasyPrint's way."""
    from weasyprint.text import line_break
    from weasyprint.text.ffi import pango

    layout_class = line_break.Layout
    original_set_text = layout_class.set_text
    original_deactivate = layout_class.deactivate
    original_reactivate = layout_class.reactivate

    @functools.wraps(original_set_text)
    def set_text(self, text, justify=False):
        original_set_text(self, text, justify)
        single = _PARAGRAPH_BREAKS.isdisjoint(self.text)
        pango.pango_layout_set_single_paragraph_mode(self.layout, single)

    def reusable(self) -> bool:
        style = self.style
        return (not self.justification_spacing and not style["word_spacing"]
                and style["letter_spacing"] == "normal"
                and style["overflow_wrap"] not in ("anywhere", "break-word")
                and _PARAGRAPH_BREAKS.isdisjoint(self.text))

    @functools.wraps(original_deactivate)
    def deactivate(self):
        if self.__dict__.pop("_reporter_drawn", False) or not reusable(self):
            original_deactivate(self)
        else:
            self._reporter_kept = True

    @functools.wraps(original_reactivate)
    def reactivate(self, style):
        kept = self.__dict__.pop("_reporter_kept", False)
        self._reporter_drawn = True
        if kept and self.style is style:
            return
        original_reactivate(self, style)

    layout_class.set_text = set_text
    layout_class.deactivate = deactivate
    layout_class.reactivate = reactivate


# --------------------------------------------------------------------------- marker styles

_LAZY_PSEUDO = frozenset(("marker", "footnote-call", "footnote-marker", "note-call", "note-marker", "note-callback"))


def _patch_marker_styles() -> None:
    """WeasyPrint's user-agent sheet styles ``::marker`` and the footnote and note pseudo-elements
    (``::footnote-call``, ``::footnote-marker``, ``::note-call``, ``::note-marker``,
    ``::note-callback``) of every element, so the cascade builds six pseudo-element styles per
    element, while only list items, footnotes and notes ever ask for one. These are built when
    first asked for, from the same cascaded values (computed styles are lazy anyway, so when they
    are built changes nothing). A 74-page portfolio has ~42,000 elements: ~250,000 styles fewer."""
    from weasyprint.css import StyleFor

    original_set = StyleFor.set_computed_styles
    original_call = StyleFor.__call__

    def set_computed_styles(self, element, parent, root=None, pseudo_type=None, base_url=None,
                            target_collector=None):
        if pseudo_type in _LAZY_PSEUDO and parent is element:
            # Kept: the cascaded values (the cascade's dict is emptied when it ends) and, once,
            # the arguments every pseudo-element of the document shares.
            state = self.__dict__.get("_reporter_lazy")
            if state is None:
                state = self.__dict__["_reporter_lazy"] = ({}, root, base_url, target_collector)
            state[0][element, pseudo_type] = self._cascaded_styles[element, pseudo_type]
            return
        original_set(self, element, parent, root, pseudo_type, base_url, target_collector)

    def call(self, element, pseudo_type=None):
        if pseudo_type in _LAZY_PSEUDO:
            state = self.__dict__.get("_reporter_lazy")
            key = (element, pseudo_type)
            cascaded = state[0].pop(key, None) if state else None
            if cascaded is not None:
                _, root, base_url, target_collector = state
                had = key in self._cascaded_styles
                self._cascaded_styles[key] = cascaded
                try:
                    original_set(self, element, element, root, pseudo_type, base_url, target_collector)
                finally:
                    if not had:
                        self._cascaded_styles.pop(key, None)
        return original_call(self, element, pseudo_type)

    StyleFor.set_computed_styles = set_computed_styles
    StyleFor.__call__ = call


# --------------------------------------------------------------------------- table cell widths

def _patch_table_widths() -> None:
    """Auto table layout measures the min- and max-content width of every cell (Pango lays out its
    text twice); cells whose boxes have the same structure, computed styles and text measure the
    same, so within one document each such cell is measured once. In a portfolio's tables most
    cells repeat (status words, scores, trends): this halves their measuring."""
    from weasyprint.formatting_structure import boxes
    from weasyprint.layout import preferred

    original_min = preferred.table_cell_min_content_width
    original_min_max = preferred.table_cell_min_max_content_width
    containers = (boxes.TableCellBox, boxes.BlockBox, boxes.LineBox, boxes.InlineBox)

    def signature(box, pins: list):
        style = box.style
        pins.append(style)
        if type(box) is boxes.TextBox:
            return (id(style), box.text)
        if not isinstance(box, containers) or isinstance(box, (boxes.ReplacedBox, boxes.InlineBlockBox)):
            return None
        parts = []
        for child in box.children:
            part = signature(child, pins)
            if part is None:
                return None
            parts.append(part)
        return (type(box).__name__, id(style), tuple(parts))

    def memo(context) -> dict:
        kept = context.__dict__.get("_reporter_cell_widths")
        if kept is None:
            kept = context.__dict__["_reporter_cell_widths"] = {}
        return kept

    def cached(kind, original, context, box, outer):
        pins: list = []
        key = signature(box, pins)
        if key is None:
            return original(context, box, outer)
        key = (kind, bool(outer), key)
        kept = memo(context)
        entry = kept.get(key)
        if entry is None:
            # The styles are kept with the value: their ids stay theirs while the entry exists.
            entry = kept[key] = (original(context, box, outer), pins)
        return entry[0]

    def table_cell_min_content_width(context, box, outer):
        return cached("min", original_min, context, box, outer)

    def table_cell_min_max_content_width(context, box, outer=True):
        return cached("min-max", original_min_max, context, box, outer)

    preferred.table_cell_min_content_width = table_cell_min_content_width
    preferred.table_cell_min_max_content_width = table_cell_min_max_content_width


# --------------------------------------------------------------------------- PNG images

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_idat(data: bytes) -> tuple[int, int, bytes] | None:
    """(width, height, concatenated IDAT data) of an 8-bit RGB or grey, non-interlaced PNG; else None."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or colour not in (0, 2) or interlace != 0:
        return None
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    return (width, height, b"".join(chunks)) if chunks else None


def _patch_png() -> None:
    from weasyprint import images

    original = images.RasterImage._get_png_data

    def get_png_data(pillow_image):
        source = getattr(pillow_image, "fp", None)
        if getattr(pillow_image, "format", None) == "PNG" and isinstance(source, io.BytesIO):
            parsed = png_idat(source.getvalue())
            if parsed and parsed[:2] == pillow_image.size and pillow_image.mode in ("RGB", "L"):
                return parsed[2]
        return original(pillow_image)

    images.RasterImage._get_png_data = staticmethod(get_png_data)


# --------------------------------------------------------------------------- backgrounds

_ZERO = (0, "px")


def _plain_background(style) -> bool:
    """Whether boxes of ``style`` get no background and square corners from WeasyPrint 70's
    ``layout_box_backgrounds`` (kept on the style: computed styles do not change once made)."""
    plain = style.__dict__.get("_reporter_plain_background")
    if plain is None:
        from weasyprint.draw.color import get_color

        plain = (all(_ZERO in style[f"border_{corner}_radius"]
                     for corner in ("top_left", "top_right", "bottom_right", "bottom_left"))
                 and style["border_image_source"][0] == "none" and style["mask_border_source"][0] == "none"
                 and (style["visibility"] == "hidden"
                      or (get_color(style, "background_color").alpha == 0
                          and not any(value for type_, value in style["background_image"] if type_ != "url")
                          and all(type_ != "url" for type_, _ in style["background_image"])))
                 and not style["box_shadow"])
        style.__dict__["_reporter_plain_background"] = plain
    return plain


def _patch_backgrounds() -> None:
    """``layout_box_backgrounds`` looks up a dozen style values for every box of every page to find
    that most boxes have no background. A box whose style has square corners, no border or mask
    image, and a transparent background without images or shadow gets what WeasyPrint gives it
    (zero corner radii, no background) from one answer per style; its children go the usual way."""
    from weasyprint.layout import background

    original = background.layout_box_backgrounds

    @functools.wraps(original)
    def layout_box_backgrounds(page, box, get_image_from_uri, layout_children=True, style=None):
        if style is not None or box is page or not _plain_background(box.style):
            return original(page, box, get_image_from_uri, layout_children, style)
        box.border_top_left_radius = box.border_top_right_radius = (0, 0)
        box.border_bottom_right_radius = box.border_bottom_left_radius = (0, 0)
        if layout_children:
            for child in box.all_children():
                background.layout_box_backgrounds(page, child, get_image_from_uri)
        box.background = None

    background.layout_box_backgrounds = layout_box_backgrounds


# --------------------------------------------------------------------------- colours

def _patch_colors() -> None:
    """Every computed colour property of every style (~380 a review, most of them the initial
    ``currentcolor`` of text decorations) is parsed again by tinycss2. The parse depends only on
    the declared value and the colour scheme: it is kept per pair (a declared token by identity;
    the token is held, so its id is never another's) and the same immutable value returned."""
    from weasyprint.css import computed_values

    original = computed_values.color
    kept: dict[tuple, tuple] = {}

    @functools.wraps(original)
    def color(style, name, values):
        scheme = style["color_scheme"]
        key = (values if isinstance(values, str) else id(values), scheme)
        try:
            entry = kept.get(key)
        except TypeError:  # an unhashable scheme
            return original(style, name, values)
        if entry is None:
            entry = (values, original(style, name, values))
            if len(kept) < 4096:
                kept[key] = entry
        return entry[1]

    for prop, function in list(computed_values.COMPUTER_FUNCTIONS.items()):
        if function is original:
            computed_values.COMPUTER_FUNCTIONS[prop] = color


# --------------------------------------------------------------------------- style lookups

def _patch_style_lookups() -> None:
    """A computed style fills in each property on first use (``ComputedStyle.__missing__``, ~16,000
    times a review). Most of those properties are not declared for the element: an inherited one
    takes its parent's value, any other its initial value. WeasyPrint's general path still
    checks logical properties, pending variables, text decorations, named pages and math
    functions for each; the shortcut answers these two plain cases directly, with the value
    and side effect (the value kept in the style) the general path gives, and hands every
    other case to it."""
    from weasyprint.css import ComputedStyle
    from weasyprint.css.computed_values import PHYSICAL_FUNCTIONS
    from weasyprint.css.functions import check_math
    from weasyprint.css.properties import INHERITED, INITIAL_NOT_COMPUTED, INITIAL_VALUES

    original = ComputedStyle.__missing__
    special = {"page", "position", "float", "display"}  # each has a rule of its own in the general path
    plain = {key for key in INITIAL_VALUES
             if key not in special and not key.startswith(("__", "text_decoration_"))}
    inherited = frozenset(plain & INHERITED)
    initial = frozenset(plain - INHERITED - INITIAL_NOT_COMPUTED)
    # A physical property (margin_left) takes the value of its logical twin (margin_inline_start)
    # when that one is declared; which twin depends on the direction (ltr, rtl).
    twins = {key: (function(block="ttb", inline="ltr"), function(block="ttb", inline="rtl"))
             for key, function in PHYSICAL_FUNCTIONS.items()}

    @functools.wraps(original)
    def missing(self, key):
        cascaded = self.cascaded
        if key not in cascaded:
            twin = twins.get(key)
            if twin is None or (twin[0] not in cascaded and twin[1] not in cascaded):
                if key in initial:
                    value = self[key] = INITIAL_VALUES[key]
                    return value
                if key in inherited and self.parent_style is not None:
                    value = self.parent_style[key]
                    # A math function left in a computed value (a percentage it could not resolve
                    # yet) is resolved again for each element: the general path does that.
                    if getattr(value, "type", None) != "function" and not (type(value) is tuple and check_math(value)):
                        self[key] = value
                        return value
        return original(self, key)

    ComputedStyle.__missing__ = missing


# --------------------------------------------------------------------------- percentages

_PERCENT_LENGTHS = (  # a box's lengths, and whether 100% is the containing block's width ("w") or, but for
    ("margin_left", "w"), ("margin_right", "w"), ("margin_top", "m"), ("margin_bottom", "m"),  # pages, "m"
    ("padding_left", "w"), ("padding_right", "w"), ("padding_top", "m"), ("padding_bottom", "m"),
    ("width", "w"), ("min_width", "w"), ("max_width", "w"))
_BORDER_WIDTHS = ("border_top_width", "border_right_width", "border_bottom_width", "border_left_width")
# The weasyprint.layout modules that import resolve_percentages by name, so each gets the patched one.
_PERCENTAGE_CALLERS = ("percent", "absolute", "block", "column", "flex", "float", "grid", "inline", "page", "table")


def _percentage_plan(style) -> tuple:
    """What ``resolve_percentages`` takes from a style: each length of _PERCENT_LENGTHS in pixels
    where it is a plain pixel length (None: a percentage, auto or calc(), resolved per box), the
    border collapse, the border widths, and whether box sizing is content-box."""
    lengths = tuple(value.value if getattr(value, "unit", None) == "px" else None
                    for value in (style[name] for name, _ in _PERCENT_LENGTHS))
    return (lengths, style["border_collapse"] == "collapse", tuple(style[name] for name in _BORDER_WIDTHS),
            style["box_sizing"] == "content-box")


def _patch_percentages() -> None:
    """WeasyPrint resolves a box's margins, paddings, sizes, borders and box sizing against its
    containing block each time the box is laid out (~1,100 times a review, with ~330 styles),
    looking each up in the style again. What depends on the style alone is taken from it once (a style's lengths are not
    changed once layout starts; WeasyPrint changes copies); percentages, auto and calc() go
    WeasyPrint's way for each box, and heights exactly as WeasyPrint 70 does them."""
    import importlib
    from math import inf

    from weasyprint.css.functions import check_math
    from weasyprint.formatting_structure import boxes
    from weasyprint.layout import percent

    original = percent.resolve_percentages
    resolve_one = percent.resolve_one_percentage

    @functools.wraps(original)
    def resolve_percentages(box, containing_block):
        style = box.style
        plan = style.__dict__.get("_reporter_percentages")
        if plan is None:
            plan = style._reporter_percentages = _percentage_plan(style)
        lengths, collapse, border_widths, content_box = plan
        if isinstance(containing_block, boxes.Box):
            cb_width, cb_height = containing_block.width, containing_block.height
        else:
            cb_width, cb_height = containing_block
        maybe_height = cb_height if isinstance(box, boxes.PageBox) else cb_width
        for (name, refer), value in zip(_PERCENT_LENGTHS, lengths):
            if value is None:
                resolve_one(box, name, cb_width if refer == "w" else maybe_height)
            else:
                setattr(box, name, value)

        if cb_height == "auto":
            height = style["height"]
            if height == "auto" or check_math(height) or height.unit == "%":
                box.height = "auto"
            else:
                assert height.unit.lower() == "px"
                box.height = height.value
            resolve_one(box, "min_height", 0)
            resolve_one(box, "max_height", inf)
        else:
            resolve_one(box, "height", cb_height)
            resolve_one(box, "min_height", cb_height)
            resolve_one(box, "max_height", cb_height)

        for name, width in zip(_BORDER_WIDTHS, border_widths):
            # border-{side}-width is set during border conflict resolution for collapsed borders
            if not (collapse and hasattr(box, name)):
                setattr(box, name, width)
        if not content_box:  # content-box shrinks nothing
            percent.adjust_box_sizing(box, "width")
            percent.adjust_box_sizing(box, "height")

    for name in _PERCENTAGE_CALLERS:
        module = importlib.import_module(f"weasyprint.layout.{name}")
        if getattr(module, "resolve_percentages", None) is original:
            module.resolve_percentages = resolve_percentages


# --------------------------------------------------------------------------- HTML parser

def _patch_html_parser() -> None:
    """tinyhtml5 2.1's ``chars_until`` looks its compiled character class up under
    ``(characters, opposite)`` but stores it under ``(regex, opposite)`` (a chained assignment
    rebinds ``characters`` first), so every call compiles it again. The entry is stored under
    the key it is looked up by, as the same expression; the scanning is tinyhtml5's own."""
    from tinyhtml5 import inputstream

    original = inputstream.HTMLUnicodeInputStream.chars_until
    cache = inputstream.characters_until_regex

    def chars_until(self, characters, opposite=False):
        key = (characters, opposite)
        if key not in cache:
            regex = "".join(f"\\x{ord(character):02x}" for character in characters)
            cache[key] = re.compile(f"[{regex}]+" if opposite else f"[^{regex}]+")
        return original(self, characters, opposite)

    inputstream.HTMLUnicodeInputStream.chars_until = chars_until


# --------------------------------------------------------------------------- layout context cycle

class _ImageGetter:
    """``LayoutContext.get_image_from_uri`` without the cycle: WeasyPrint's is a partial holding its
    own context, so the context (and through its caches, the document's boxes and styles) could only
    be freed by the cyclic collector. This holds the context weakly and passes the context itself to
    the fetch, so an SVG image that keeps it keeps it alive as before."""

    __slots__ = ("_fetch", "_context")

    def __init__(self, fetch, context):
        self._fetch, self._context = fetch, weakref.ref(context)

    def __call__(self, *args, **kwargs):
        context = self._context()
        if context is None:  # only callers holding the context call this (layout, SVG images)
            raise RuntimeError("an image was fetched for a document whose layout is over")
        return self._fetch(*args, context=context, **kwargs)


def _patch_context_cycle() -> None:
    from weasyprint.layout import LayoutContext

    original = LayoutContext.__init__

    @functools.wraps(original)
    def init(self, style_for, get_image_from_uri, *args, **kwargs):
        original(self, style_for, get_image_from_uri, *args, **kwargs)
        self.get_image_from_uri = _ImageGetter(get_image_from_uri, self)

    LayoutContext.__init__ = init


# --------------------------------------------------------------------------- shared computed styles

_SHARED_STYLES_KEPT = 20_000  # styles kept per thread; past it the store starts again (a review has ~330)


def _shared_styles(sheets, base_url, font_config) -> tuple[dict, set]:
    """The store of computed styles for documents with these stylesheets, base URL and fonts (this thread's):
    styles by cascade key, and the ids of the styles in it."""
    stores = getattr(_local, "shared_styles", None)
    if stores is None:
        stores = _local.shared_styles = {}
    key = (tuple((id(sheet), origin, specificity) for sheet, origin, specificity in sheets), base_url,
           id(font_config))
    entry = stores.get(key)
    if entry is None or len(entry[1]) > _SHARED_STYLES_KEPT:
        if len(stores) >= 8:
            stores.clear()
        # The sheets are kept with their store, so their ids in its key stay theirs.
        entry = stores[key] = ([sheet for sheet, _, _ in sheets], {}, set())
    return entry[1], entry[2]


def _patch_shared_styles() -> None:
    """``StyleFor.__init__`` as WeasyPrint 70 writes it (the cascade of every element, then its computed
    style), with one change: an element whose key is in the store of _shared_styles takes the stored
    style, and only the cascades of its pseudo-elements are made (its own is only read to compute a
    style). Documents with presentational hints go WeasyPrint's way."""
    from math import inf

    from weasyprint.css import (PROGRESS_LOGGER, StyleFor, declaration_precedence, find_style_attributes,
                                preprocess_declarations)

    original = StyleFor.__init__

    @functools.wraps(original)
    def init(self, html, sheets, presentational_hints, font_config, target_collector):
        if presentational_hints:
            return original(self, html, sheets, presentational_hints, font_config, target_collector)
        self._cascaded_styles = cascaded_styles = {}
        self._computed_styles = computed_styles = {}
        self.initial_page_sizes = {"box": None, "area": None}
        self._sheets = sheets
        self.font_config = font_config

        PROGRESS_LOGGER.info("Step 3 - Applying CSS")
        layer_order = inf
        elements_declarations = {}
        for specificity, element, declarations, base_url in find_style_attributes(
                html.etree_element, presentational_hints, html.base_url):
            style = cascaded_styles.setdefault((element, None), {})
            elements_declarations[element] = tuple(declarations)
            for name, values, importance in preprocess_declarations(base_url, declarations):
                weight = (declaration_precedence("author", importance), layer_order, specificity)
                old_weight = style.get(name, (None, None))[1]
                if old_weight is None or old_weight <= weight:
                    style[name] = values, weight

        shared, shared_ids = _shared_styles(sheets, html.base_url, font_config)
        computed_cache = {}
        for element in html.wrapper_element.iter_subtree():
            etree_element = element.etree_element
            parent = element.parent.etree_element if element.parent else None
            parent_id = id(computed_styles[parent, None]) if element.parent else None
            element_declarations = elements_declarations.get(etree_element)
            selectors_keys, matches = [], []
            for sheet, origin, sheet_specificity in sheets:
                for specificity, _, pseudo_type, (declarations, layer) in sheet.matcher.match(element):
                    layer_order = inf if layer is None else sheet.layers.index(layer)
                    selectors_keys.append((sheet, specificity, id(declarations), layer_order))
                    matches.append((origin, sheet_specificity or specificity, pseudo_type, declarations,
                                    layer_order))
            selectors_keys = tuple(selectors_keys)
            key = (parent_id, element_declarations, selectors_keys)
            style = computed_cache.get(key)
            first_here = style is None
            # Across documents the element's own declarations (its style and lang attributes) count by
            # their text; only under a parent that is shared itself (or none), so every id in the key is
            # that of an object the store keeps.
            shareable = parent_id is None or parent_id in shared_ids
            if shareable:
                shared_key = (parent_id, element_declarations and tuple(d.serialize() for d in element_declarations),
                              selectors_keys)
                if style is None:
                    style = shared.get(shared_key)
            for origin, specificity, pseudo_type, declarations, layer_order in matches:
                if pseudo_type is None and style is not None:
                    continue  # the element's own cascade only makes its computed style, which exists
                cascaded = cascaded_styles.setdefault((etree_element, pseudo_type), {})
                for name, values, importance in declarations:
                    weight = (declaration_precedence(origin, importance), layer_order, specificity)
                    old_weight = cascaded.get(name, (None, None))[1]
                    if old_weight is None or old_weight <= weight:
                        cascaded[name] = values, weight
            if style is None:
                self.set_computed_styles(etree_element, root=html.etree_element, parent=parent,
                                         base_url=html.base_url, target_collector=target_collector)
                style = computed_styles[etree_element, None]
                if shareable:
                    shared[shared_key] = style
                    shared_ids.add(id(style))
            else:
                computed_styles[etree_element, None] = style
                if first_here and target_collector and style["anchor"]:
                    target_collector.collect_anchor(style["anchor"])
            computed_cache[key] = style

        for element, pseudo_type in cascaded_styles:
            if pseudo_type:
                self.set_computed_styles(element, pseudo_type=pseudo_type, root=html.etree_element, parent=element,
                                         base_url=html.base_url, target_collector=target_collector)
        self._cascaded_styles.clear()

    StyleFor.__init__ = init
