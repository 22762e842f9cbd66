"""Every sources test gets a fresh project directory with two accounts (A1, A2)."""
from __future__ import annotations

from pathlib import Path

import pytest
from source_helpers import ACCOUNTS_CSV, write


@pytest.fixture
def root(tmp_path) -> Path:
    write(tmp_path, "data/accounts.csv", ACCOUNTS_CSV)
    return tmp_path
