"""`reporter validate` end to end: good data is summarised, bad data is located (file:row: column) with exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import edit

# (case, data file, old text, new text, expected first line of stderr)
DATA_CASES = [
    ("missing column", "orders.csv", "order_id,account_id,date,amount", "order_id,account_id,day,amount",
     'data/orders.csv:1: missing required column "date"; columns found: order_id, account_id, day, amount, cost, '
     "product_line"),
    ("bad date", "orders.csv", "O05,A1,2026-09-12", "O05,A1,2026-13-12",
     'data/orders.csv:6: column "date": expected a date in the form %Y-%m-%d, got "2026-13-12"'),
    ("day-first date in an ISO column", "tickets.csv", "T03,A1,2026-09-05 08:00", "T03,A1,05/09/2026 08:00",
     'data/tickets.csv:4: column "opened_at": expected a timestamp in the form %Y-%m-%d %H:%M[:%S], '
     'got "05/09/2026 08:00"'),
    ("bad number", "orders.csv", "O05,A1,2026-09-12,2500", "O05,A1,2026-09-12,25x0",
     'data/orders.csv:6: column "amount": expected a number like 1234.56, got "25x0"'),
    ("duplicate key", "orders.csv", "O05,A1", "O04,A1",
     'data/orders.csv:6: column "order_id": expected a unique value (first seen on row 5), got "O04"'),
    ("unknown account id", "orders.csv", "O05,A1", "O05,A9",
     'data/orders.csv:6: column "account_id": expected an account_id listed in accounts, got "A9"'),
    ("negative amount", "orders.csv", "O05,A1,2026-09-12,2500", "O05,A1,2026-09-12,-2500",
     'data/orders.csv:6: column "amount": expected a number ≥ 0 (list amount under allow_negative: if negatives '
     'are valid), got "-2500.0"'),
    ("value outside choices", "contacts.csv", "Procurement,manager,influencer", "Procurement,boss,influencer",
     'data/contacts.csv:3: column "seniority": expected one of staff, manager, director, executive, got "boss"'),
]


@pytest.mark.parametrize("case,file,old,new,expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_located(project, cli, case, file, old, new, expected):
    edit(project / "data" / file, old, new)
    code, _, err = cli("validate", "-p", project)
    assert code == 2
    assert err.splitlines()[0] == expected
    assert "Traceback" not in err
    assert not (project / "output").exists(), "a failed validation must write nothing"


def test_empty_file(project, cli):
    path = project / "data" / "orders.csv"
    path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    code, _, err = cli("validate", "-p", project)
    assert (code, err.splitlines()[0]) == (2, "data/orders.csv: no data rows below the header")


def test_gbk_file_read_as_utf8_suggests_the_encoding(project, cli):
    path = project / "data" / "contacts.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    code, _, err = cli("validate", "-p", project)
    assert code == 2
    assert err.splitlines()[0] == (
        "data/contacts.csv:6: cannot decode the file as utf-8 (byte 0xcd is not valid there); it reads as Chinese "
        "GB18030 (a Chinese Excel export?): set encoding: gb18030 (or gbk)")


def test_missing_file(project, cli):
    (project / "data" / "costs.csv").unlink()
    code, _, err = cli("validate", "-p", project)
    assert code == 2
    assert err.splitlines()[0].startswith("data/costs.csv: file not found")


def test_valid_project_prints_counts_per_entity(project, cli):
    code, out, err = cli("validate", "-p", project)
    assert code == 0, err
    assert "configs/ OK: 8 sources, 3 tiers, 2 reports" in out
    for source, rows in {"accounts": 3, "orders": 12, "surveys": 12, "tickets": 8, "contacts": 8}.items():
        line = next(l for l in out.splitlines() if f" {source} " in l)
        assert f" {rows} " in line, line
    assert "report reviews: next runs" in out


def test_sample_project_rejects_exactly_the_dirty_rows(tmp_path):
    """The real CLI as a new user runs it: init --sample, then validate."""
    reporter = str(Path(sys.executable).with_name("reporter"))
    subprocess.run([reporter, "init", str(tmp_path), "--sample"], check=True, capture_output=True)
    result = subprocess.run([reporter, "validate", "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    truth = json.loads((tmp_path / "data" / "demo" / "truth.json").read_text(encoding="utf-8"))
    report = (tmp_path / "output" / "data_quality" / "rejected_rows.csv").read_text(encoding="utf-8-sig")
    rejected = {(line.split(",")[2], line.split(",")[3]) for line in report.splitlines()[1:]}
    assert rejected == {(str(d["row"]), d["column"]) for d in truth["dirty_rows"]}
    assert f"{len(truth['dirty_rows'])} rows rejected" in result.stdout
