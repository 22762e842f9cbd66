"""Shared helpers: a fresh copy of the valid fixture project, and the CLI run in-process."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def project(tmp_path) -> Path:
    """A writable copy of tests/fixtures/valid (3 accounts, a dozen rows per entity)."""
    target = tmp_path / "project"
    shutil.copytree(FIXTURES / "valid", target)
    return target


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `reporter ARGS` in-process; returns (exit code, stdout, stderr)."""
    from reporter.cli import main

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["reporter", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
