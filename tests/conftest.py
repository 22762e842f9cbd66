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


def edit(path: Path, old: str, new: str) -> None:
    """Replace exactly one occurrence of old in a fixture file (fails loudly if the fixture changed)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


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
