"""Commentary written by account teams: ``notes/<period>/<account_id>.md``, rendered to safe HTML.

Format of a note (Markdown, CommonMark)::

    ## Highlights
    - Renewal of the 2027 framework agreement signed on 12 October.

    ## Risks
    - The new CFO is reviewing all suppliers above CNY 5m.

    ## Actions
    - Book the quarterly business review — Li Wei — 2026-11-30
    - Send the revised SLA proposal | Anna Berg | 2026-12-15
    - Introduce our CTO to their new CIO

Sections are recognised by their heading (Highlights/亮点, Risks/风险, Actions/Action
items/Next steps/行动/行动项/下一步; any heading level, any other heading is kept as it
is). Each list item under the actions heading becomes a row of a table: the action,
then optionally its owner and its due date (YYYY-MM-DD), separated by an em dash (—),
an en dash (–), a spaced hyphen ( - ) or a vertical bar (|).

Safety: raw HTML is shown as text (markdown-it "commonmark" with html off), images are
not rendered, and only http(s) and mailto links are kept; any other link is dropped
and its text kept. Headings are shifted to h3/h4 so a note cannot break the outline.
"""
from __future__ import annotations

import re
from datetime import date
from html import escape
from pathlib import Path

from markdown_it import MarkdownIt

from ..errors import Issue, RenderError

MAX_NOTE_BYTES = 1_000_000
_SECTIONS = {
    "highlights": ("highlights", "highlight", "亮点", "要点"),
    "risks": ("risks", "risk", "风险", "风险点"),
    "actions": ("actions", "action items", "action", "next steps", "行动", "行动项", "下一步", "下一步行动"),
}
_ALLOWED_LINK = ("http://", "https://", "mailto:")
_SEPARATOR = re.compile(r"\s+[—–]\s+|\s*—\s*|\s+-\s+|\s*\|\s*")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SAFE_PART = re.compile(r"^[\w][\w .@+-]*$")


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    # Accept every destination at parse time so that a refused link can be dropped while
    # its text is kept (see _drop_unsafe_links); the parser's own check would leave the
    # raw "[text](javascript:...)" source on the page instead.
    md.validateLink = lambda url: True
    md.core.ruler.push("drop_unsafe_links", _drop_unsafe_links)
    md.core.ruler.push("shift_headings", _shift_headings)
    return md


def _allowed(href: str) -> bool:
    return href.strip().lower().startswith(_ALLOWED_LINK)


def _strip_links(tokens) -> list:
    kept, dropping = [], []
    for token in tokens:
        if token.type == "link_open":
            ok = _allowed(token.attrGet("href") or "")
            dropping.append(not ok)
            if ok:
                kept.append(token)
        elif token.type == "link_close":
            if not dropping.pop():
                kept.append(token)
        else:
            kept.append(token)
    return kept


def _drop_unsafe_links(state) -> None:
    for token in state.tokens:
        if token.type == "inline" and token.children:
            token.children = _strip_links(token.children)


def _shift_headings(state) -> None:
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = "h3" if token.tag in ("h1", "h2") else "h4"


_MD = _markdown()


def _section_of(title: str) -> str | None:
    key = title.strip().strip(":：").strip().lower()
    for section, names in _SECTIONS.items():
        if key in names:
            return section
    return None


def _inline(text: str) -> str:
    return _MD.renderInline(text.strip())


def _split_action(text: str) -> tuple[str, str, str]:
    """(action, owner, due) from "action — owner — 2026-11-30"; owner and due may be missing."""
    parts = [p.strip() for p in _SEPARATOR.split(text.strip())]
    parts = [p for p in parts if p]
    due = parts.pop() if len(parts) > 1 and _ISO_DATE.match(parts[-1]) else ""
    owner = parts.pop() if len(parts) > 1 else ""
    return " — ".join(parts), owner, due


def _due_text(due: str, i18n) -> str:
    if not due or i18n is None:
        return escape(due)
    try:
        return escape(i18n.date(date.fromisoformat(due)))
    except ValueError:
        return escape(due)


def _actions_table(items: list[str], i18n) -> str:
    def label(key, default):
        return escape(i18n.t(key) if i18n is not None else default)

    rows = []
    for item in items:
        action, owner, due = _split_action(item)
        rows.append(f"<tr><td>{_inline(action)}</td><td>{_inline(owner)}</td>"
                    f"<td class=\"nowrap\">{_due_text(due, i18n)}</td></tr>")
    head = (f"<thead><tr><th scope=\"col\">{label('notes.action', 'Action')}</th>"
            f"<th scope=\"col\">{label('notes.owner', 'Owner')}</th>"
            f"<th scope=\"col\">{label('notes.due', 'Due')}</th></tr></thead>")
    return f"<table class=\"actions\">{head}<tbody>{''.join(rows)}</tbody></table>\n"


def _render_actions(tokens, env, i18n) -> str:
    """Top-level lists become the action table; anything else is rendered as written."""
    out, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if token.type in ("bullet_list_open", "ordered_list_open") and token.level == 0:
            close = token.type.replace("_open", "_close")
            j, items = i + 1, []
            while tokens[j].type != close or tokens[j].level != 0:
                if tokens[j].type == "inline" and tokens[j].level == 3:  # the first paragraph of an item
                    items.append(tokens[j].content.replace("\n", " "))
                j += 1
            out.append(_actions_table(items, i18n))
            i = j + 1
        else:
            j = i + 1
            while j < len(tokens) and not (tokens[j].type in ("bullet_list_open", "ordered_list_open")
                                           and tokens[j].level == 0):
                j += 1
            out.append(_MD.renderer.render(tokens[i:j], _MD.options, env))
            i = j
    return "".join(out)


def render_notes(text: str, i18n=None) -> str:
    """Sanitised HTML of a note, one <section> per heading; the actions list becomes a table."""
    env: dict = {}
    tokens = _MD.parse(text, env)
    # Split at top-level headings: (section kind, heading tokens, body tokens).
    parts: list[tuple[str, list, list]] = [("intro", [], [])]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open" and token.level == 0:
            kind = _section_of(tokens[i + 1].content) or "other"
            parts.append((kind, tokens[i:i + 3], []))
            i += 3
            continue
        parts[-1][2].append(token)
        i += 1
    html = []
    for kind, heading, body in parts:
        if not heading and not body:
            continue
        inner = _MD.renderer.render(heading, _MD.options, env) if heading else ""
        inner += _render_actions(body, env, i18n) if kind == "actions" else _MD.renderer.render(body, _MD.options, env)
        html.append(f"<section class=\"notes-section notes-{kind}\">\n{inner}</section>\n")
    return "".join(html)


def notes_path(root: Path, period: str, account_id: str) -> Path:
    """notes/<period>/<account_id>.md under root; refuses anything that could leave notes/."""
    for what, value in (("period", period), ("account id", account_id)):
        value = str(value)
        if not _SAFE_PART.match(value) or ".." in value or len(value) > 128:
            raise RenderError([Issue(f'{what} "{value}" cannot name a notes file: use letters, digits, '
                                     'spaces and . _ - @ + only (no "/", no "..")', path=what)])
    notes_dir = (Path(root) / "notes").resolve()
    path = (notes_dir / str(period) / f"{account_id}.md").resolve()
    if not path.is_relative_to(notes_dir):  # a symlink pointing out of notes/
        raise RenderError([Issue(f"{path} is outside {notes_dir}; notes are read from notes/ only")])
    return path


def load_notes(root: Path, period: str, account_id: str, i18n=None) -> str | None:
    """The rendered note of an account for a period, or None when the team wrote none."""
    path = notes_path(root, period, account_id)
    if not path.is_file():
        return None
    raw = path.read_bytes()
    if len(raw) > MAX_NOTE_BYTES:
        raise RenderError([Issue(f"note is {len(raw)} bytes; at most {MAX_NOTE_BYTES} are read", str(path))])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RenderError([Issue(f"not UTF-8 text (byte {exc.start}); save the note as UTF-8", str(path))]) from None
    return render_notes(text, i18n)
