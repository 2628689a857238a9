"""`spendtrail registry` check / load / show, against a real ledger on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from spendtrail.cli.registry_cmd import app
from spendtrail.ledger.schema import audit_log, registry_versions

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "registry.yaml"
runner = CliRunner()



def copy_example(tmp_path: Path, old: str = "", new: str = "") -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    if old:
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_ok():
    result = runner.invoke(app, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {EXAMPLE}")
    assert "5 applications" in " ".join(result.stdout.split())


def test_check_reports_every_problem_with_its_line(tmp_path):
    path = copy_example(tmp_path, "    cost_center: CC-110\n", "    cost_center: CC-999\n")
    text = path.read_text().replace("  - id: staging\n", "  - id: staging\n    tier: 2\n")
    path.write_text(text)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    lines = text.splitlines()
    cost_line = next(n for n, line in enumerate(lines, 1) if "CC-999" in line)
    tier_line = next(n for n, line in enumerate(lines, 1) if "tier: 2" in line)
    output = " ".join(result.stderr.split())
    assert f"{path}:{tier_line}: environment 'staging': unknown key 'tier'" in output
    assert f"{path}:{cost_line}: application 'support-assistant': unknown cost center" in output
    assert result.stdout == ""


def test_check_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("business_units:\n  - id: [a\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert f"{path}:3: malformed YAML" in result.stderr


def test_load_then_unchanged_then_changed(cli_ledger, tmp_path):
    first = runner.invoke(app, ["load", str(EXAMPLE), "--reason", "initial, FIN-142"])
    assert first.exit_code == 0, first.output
    assert "loaded registry version 1, valid from 2026-06-01 00:00 UTC" in first.stdout

    again = runner.invoke(app, ["load", str(EXAMPLE)])
    assert again.exit_code == 0, again.output
    assert "is registry version 1 already" in again.stdout

    changed = copy_example(
        tmp_path, "    budget_owner: ben.okafor\n", "    budget_owner: ana.ruiz\n"
    )
    third = runner.invoke(app, ["load", str(changed), "--reason", "owner change"])
    assert third.exit_code == 0, third.output
    assert "loaded registry version 2" in third.stdout
    assert "applications: changed support-assistant (budget_owner)" in third.stdout
    assert "note:" not in third.stdout

    with cli_ledger.connect() as conn:
        rows = conn.execute(sa.select(registry_versions).order_by("version")).all()
        audits = conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()
    assert [(r.version, r.loaded_by, r.source_path) for r in rows] == [
        (1, "ana", str(EXAMPLE.resolve())),
        (2, "ana", str(changed.resolve())),
    ]
    assert [(a.object_id, a.reason) for a in audits] == [
        ("1", "initial, FIN-142"),
        ("2", "owner change"),
    ]


def test_load_refuses_a_bad_file_and_stores_nothing(cli_ledger, tmp_path):
    path = copy_example(tmp_path, "    budget_owner: ben.okafor\n", "    budget_owner: nobody\n")
    result = runner.invoke(app, ["load", str(path)])
    assert result.exit_code == 2
    assert f"{path}:" in result.stderr and "unknown budget owner 'nobody'" in result.stderr
    with cli_ledger.connect() as conn:
        assert conn.execute(sa.select(registry_versions)).first() is None


def test_show_without_registry_fails(cli_ledger):
    result = runner.invoke(app, ["show"])
    assert result.exit_code == 2
    assert "no registry loaded yet" in result.stderr


def test_show_table_and_json(cli_ledger, tmp_path):
    assert runner.invoke(app, ["load", str(EXAMPLE)]).exit_code == 0
    # a second version scheduled far ahead: version 1 stays the one in effect
    scheduled = copy_example(tmp_path, "effective_from: 2026-06-01", "effective_from: 2099-01-01")
    loaded = runner.invoke(app, ["load", str(scheduled)])
    assert loaded.exit_code == 0, loaded.output
    assert "loaded registry version 2, valid from 2099-01-01 00:00 UTC" in loaded.stdout
    assert "note: version 1 (valid from 2026-06-01 00:00 UTC) is the one in effect now" in (
        " ".join(loaded.stdout.split())
    )

    table = runner.invoke(app, ["show"])
    assert table.exit_code == 0, table.output
    assert "Registry version 1" in table.stdout and "in effect now" in table.stdout
    for text in ("support-assistant", "CC-110", "Ben Okafor", "Registry versions", "2099-01-01"):
        assert text in table.stdout

    shown = runner.invoke(app, ["show", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert (data["version"], data["in_effect"]) == (1, True)
    apps = {a["id"]: a for a in data["registry"]["applications"]}
    assert apps["support-assistant"]["cost_center"] == "CC-110"
    assert apps["eval-harness"]["environments"] == ["development", "staging"]
    assert data["registry"]["shared_pool"]["id"] == "platform-shared"
    assert [v["version"] for v in data["history"]] == [1, 2]
    assert data["history"][1]["valid_from"] == "2099-01-01T00:00:00+00:00"

    later = json.loads(runner.invoke(app, ["show", "--version", "2", "--format", "json"]).stdout)
    assert (later["version"], later["in_effect"]) == (2, False)
    later_table = runner.invoke(app, ["show", "--version", "2"])
    assert "version 1 is in effect" in later_table.stdout

    missing = runner.invoke(app, ["show", "--version", "7"])
    assert missing.exit_code == 2
    assert "no registry version 7; stored versions: 1, 2" in missing.stderr
