"""Helpers for the sources tests: tiny projects written into tmp_path, loaded through the real models."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from reporter.config.models import Sources
from reporter.errors import DataError
from reporter.sources import load_sources

HORIZON = (date(2025, 1, 1), date(2026, 1, 1))
ACCOUNTS_CSV = "account_id,name,tier\nA1,Acme,strategic\nA2,Beta,key\n"


def write(root: Path, relative: str, text: str, encoding: str = "utf-8") -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return relative


def sources(**by_name: dict) -> dict:
    """Validated Source models; an `accounts` csv source is added unless given."""
    by_name.setdefault("accounts", {"kind": "csv", "entity": "accounts", "path": "data/accounts.csv"})
    return Sources.model_validate({"sources": by_name}).sources


def load(root: Path, **by_name: dict):
    return load_sources(sources(**by_name), root, HORIZON)


def load_error(root: Path, **by_name: dict) -> list[str]:
    """The blocking issues, as the CLI prints them."""
    with pytest.raises(DataError) as caught:
        load(root, **by_name)
    return [str(issue) for issue in caught.value.issues]


def csv_source(path: str, **options) -> dict:
    return {"kind": "csv", "entity": "orders", "path": path, **options}
