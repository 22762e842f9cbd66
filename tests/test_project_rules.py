"""House rules a fresh clone depends on: the schema file is current, the stages only import leftwards."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reporter.config import load_project
from reporter.config.schema import schema_text

ROOT = Path(__file__).resolve().parents[1]


def test_schema_json_is_current():
    current = (ROOT / "configs" / "schema.json").read_text(encoding="utf-8")
    assert current == schema_text(), "configs/schema.json is stale: run `reporter schema`"


def test_every_config_file_points_editors_at_the_schema():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert path.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=schema.json\n"), path


def test_shipped_example_project_is_valid():
    config = load_project(ROOT)
    assert {"account_review", "portfolio_scorecard"} <= {r.kind for r in config.reports.values()}


def test_stages_import_only_leftwards():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
