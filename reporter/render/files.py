"""Safe output file names: the account id (made safe) plus an ASCII slug of the name.

``A001`` + "Acme Corp" -> ``A001-acme-corp``; a Chinese name has no ASCII letters and
gives ``A002`` alone (no transliteration guess). Ids are data, so an id with ``/``,
``..`` or other unsafe characters is neutralised and tagged with a hash of the original
id: two different ids never map to the same name, and nothing escapes the output folder.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")
SLUG_MAX = 40
ID_MAX = 64


def slugify(text: str, max_length: int = SLUG_MAX) -> str:
    """Lower-case ASCII words joined by hyphens; '' when nothing ASCII is left (e.g. a Chinese name)."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def safe_id(account_id: str) -> str:
    """The id itself when it is a plain token (letters, digits, _ and -, at most 64 characters);
    otherwise its safe characters plus the first 8 hex digits of its SHA-256, so that "A/1" and
    "A_1" stay apart."""
    text = str(account_id)
    if _SAFE_ID.match(text) and len(text) <= ID_MAX:
        return text
    if not text.strip():
        raise ValueError("an empty account id cannot name a file")
    cleaned = _UNSAFE_RUN.sub("-", text).strip("-_")[:ID_MAX] or "id"
    return f"{cleaned}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def account_file_stem(account_id: str, name: str | None) -> str:
    slug = slugify(name or "")
    base = safe_id(account_id)
    return f"{base}-{slug}" if slug else base


def account_file_name(account_id: str, name: str | None, ext: str) -> str:
    return f"{account_file_stem(account_id, name)}.{ext}"


def report_file_name(report_name: str, period: str, ext: str) -> str:
    """One document per run (the portfolio scorecard): ``<report>-<period>.<ext>``."""
    return f"{slugify(report_name, 60) or 'report'}-{slugify(period, 20) or 'period'}.{ext}"


def unique_file_names(accounts: list[dict], ext: str) -> dict[str, str]:
    """account_id -> file name for a batch; fails if two accounts would share a file (duplicate ids)."""
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for account in accounts:
        account_id = str(account["account_id"])
        name = account_file_name(account_id, account.get("name"), ext)
        key = name.lower()  # case-insensitive file systems (macOS, Windows) would merge A1 and a1
        if key in seen and seen[key] != account_id:
            raise ValueError(f'accounts "{seen[key]}" and "{account_id}" would both be written to {name}')
        seen[key] = account_id
        names[account_id] = name
    return names
