"""The installed `spendtrail` command end to end, on both backends, as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from factories import SHEET, event, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(ledger_url, tmp_path):
    env = {**os.environ, "SPENDTRAIL_DATABASE_URL": ledger_url, "SPENDTRAIL_ACTOR": "ana",
           "SPENDTRAIL_HOME": str(tmp_path / "home"), "COLUMNS": "200"}

    def spendtrail(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spendtrail.cli.app", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    return spendtrail


def test_load_ingest_and_report(run, tmp_path):
    sheet = tmp_path / "prices.yaml"
    sheet.write_text(SHEET)
    assert run("registry", "load", str(ROOT / "examples" / "registry.yaml")).returncode == 0
    assert run("prices", "import", "sheet", str(sheet)).returncode == 0
    spoof = event()  # claims another application's cost center: an owner conflict
    spoof.context = msgspec.structs.replace(spoof.context, cost_center="CC-200")
    path = write_jsonl(tmp_path / "events.jsonl",
                       [event(), event(app="contract-review", model="gpt-4o"), event(app="x"),
                        spoof], tail=b"{broken\n")

    result = run("ingest", str(path))
    assert result.returncode == 1  # something was rejected: the caller must know
    assert "inserted 4" in result.stdout and "quarantined 2" in result.stdout
    assert f"{path}:5: malformed JSON" in result.stderr

    data = json.loads(run("costs", "--period", "2026-10", "--by", "application",
                          "--format", "json").stdout)
    by_app = {row["application"]: row for row in data}
    assert by_app["contract-review"]["cost_USD"] == "0.0075"
    assert by_app["quarantined"]["events"] == 2 and "x" not in by_app
    # Quarantined usage is grouped as such, never under the owner it claimed.
    data = json.loads(run("costs", "--period", "2026-10", "--by", "cost_center",
                          "--format", "json").stdout)
    by_cc = {row["cost_center"]: row["events"] for row in data}
    assert by_cc == {"CC-100": 1, "CC-200": 1, "quarantined": 2}

    rows = list(csv.DictReader(io.StringIO(run("costs", "--period", "2026-10-05",
                                               "--format", "csv").stdout)))
    assert {r["model"] for r in rows} == {"gpt-4o-mini", "gpt-4o"}
    assert all(r["day"] == "2026-10-05" for r in rows)

    table = run("costs", "--period", "2026-10").stdout
    assert "quarantined:" in table and "over 2 events" in table

    stats = json.loads(run("ledger", "stats", "--format", "json").stdout)
    assert {s["measure"]: s["value"] for s in stats}["rejected_lines"] == 1


def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(run, tmp_path):
    bad = tmp_path / "registry.yaml"
    bad.write_text("business_units:\n  - id: a\n  - id: a\n")
    result = run("registry", "load", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3" in result.stderr and "Traceback" not in result.stderr

    result = run("ingest", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    assert "missing.jsonl: no such file or folder" in result.stderr

    result = run("costs", "--period", "October")
    assert result.returncode == 2 and "expected YYYY-MM" in result.stderr


def test_ledger_path_follows_the_environment(run, ledger_url):
    shown = run("ledger", "path").stdout.strip()
    assert shown.split("/")[-1] == ledger_url.split("/")[-1]
    assert "password" not in shown
