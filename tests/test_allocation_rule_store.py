"""Shared-cost rule versions in the ledger, audited like the registry's."""

from __future__ import annotations

import json

import sqlalchemy as sa
from factories import ROOT
from typer.testing import CliRunner

from spendtrail.allocation.rule_store import latest_rules, latest_version, save_rules_version
from spendtrail.allocation.rules import load_rules
from spendtrail.cli.allocation_cmd import allocation_app
from spendtrail.ledger.schema import audit_log, shared_cost_rule_versions

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

RULES = ROOT / "examples" / "shared-cost-rules.yaml"


def audit_rows(engine):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(audit_log).where(audit_log.c.object_type == "shared_cost_rules")
            .order_by(audit_log.c.id)
        ).all()


def versions(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(shared_cost_rule_versions)
                            ).scalar_one()


def changed_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.read_text().replace("search-summaries: 50", "search-summaries: 60")
                    .replace("support-assistant: 20", "support-assistant: 10"))
    return path


def test_versions_are_stored_once_and_audited_with_before_and_after(ledger, tmp_path):
    rules = load_rules(RULES)
    with ledger.begin() as conn:
        assert latest_rules(conn) is None
        first = save_rules_version(conn, rules, source_path=str(RULES), actor="dana",
                                   reason="Q4 rules agreed")
    assert first == 1
    [row] = audit_rows(ledger)
    assert (row.actor, row.action, row.object_id, row.reason) == (
        "dana", "shared_cost_rules.load", "1", "Q4 rules agreed")
    assert row.before is None
    after = json.loads(row.after)
    assert after["version"] == 1 and after["rules"] == 4
    assert after["added"] == [r.id for r in rules]

    # The same rules from a reformatted file: no new version, no audit row.
    reformatted = tmp_path / "same.yaml"
    reformatted.write_text("# moved\n\n" + RULES.read_text())
    with ledger.begin() as conn:
        again = save_rules_version(conn, load_rules(reformatted), source_path=str(reformatted),
                                   actor="dana", reason="reload")
    assert again == 1 and versions(ledger) == 1 and len(audit_rows(ledger)) == 1

    with ledger.begin() as conn:
        second = save_rules_version(conn, load_rules(changed_file(tmp_path)),
                                    source_path="rules.yaml", actor="finance", reason="new split")
    assert second == 2 and versions(ledger) == 2
    row = audit_rows(ledger)[-1]
    before, after = json.loads(row.before), json.loads(row.after)
    assert (row.actor, row.reason, row.object_id) == ("finance", "new split", "2")
    assert before["version"] == 1 and after["version"] == 2
    assert before["changed"] == {"platform-fixed-oct-h2": {"coefficients": ["1/2", "3/10", "1/5"]}}
    assert after["changed"] == {"platform-fixed-oct-h2": {"coefficients": ["3/5", "3/10", "1/10"]}}
    assert "added" not in after and "removed" not in before

    with ledger.connect() as conn:
        stored = latest_version(conn)
    assert stored is not None and stored.version == 2 and stored.loaded_by == "finance"
    restored = load_rules(changed_file(tmp_path))
    strip = [(r.id, r.pool, r.method, r.effective_from, r.effective_to, r.recipients,
              r.coefficients, r.reviewed_by, r.reviewed_at, r.note) for r in restored]
    assert [(r.id, r.pool, r.method, r.effective_from, r.effective_to, r.recipients,
              r.coefficients, r.reviewed_by, r.reviewed_at, r.note)
             for r in stored.rules] == strip


def test_removed_and_added_rules_are_named(ledger):
    rules = load_rules(RULES)
    with ledger.begin() as conn:
        save_rules_version(conn, rules, source_path="a", actor="x", reason="first")
        save_rules_version(conn, rules[:-1], source_path="b", actor="x", reason="drop hold")
    row = audit_rows(ledger)[-1]
    assert json.loads(row.before)["removed"] == ["platform-hold-nov"]
    assert json.loads(row.after)["rules"] == 3


def test_cli_rules_load_then_shared_uses_the_stored_version(books, cli_ledger, tmp_path):
    runner = CliRunner()
    # No rules stored: the month's allocation splits nothing; the pool stays unallocated.
    missing = runner.invoke(allocation_app, ["shared", "--period", "2026-10", "--format", "json"])
    assert missing.exit_code == 0, missing.output
    assert json.loads(missing.output)["charges"] == []
    assert json.loads(missing.output)["uncovered"]

    loaded = runner.invoke(allocation_app, ["rules-load", str(RULES), "--reason", "Q4 review"])
    assert loaded.exit_code == 0, loaded.output
    assert "4 rules stored as shared-cost rules version 1" in loaded.output
    again = runner.invoke(allocation_app, ["rules-load", str(RULES), "--reason", "again"])
    assert again.exit_code == 0 and "unchanged from shared-cost rules version 1" in again.output
    [row] = audit_rows(cli_ledger)
    assert (row.actor, row.reason) == ("ana", "Q4 review")

    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.read_text().replace("contract-review: \"30\"", "contract-reveiw: 30"))
    rejected = runner.invoke(allocation_app, ["rules-load", str(bad), "--reason", "typo"])
    assert rejected.exit_code == 2 and "'contract-reveiw' is not an application" in rejected.output
    assert versions(cli_ledger) == 1

    stored = runner.invoke(allocation_app, ["shared", "--period", "2026-10", "--format", "json"])
    from_file = runner.invoke(allocation_app, ["shared", "--period", "2026-10", "--rules",
                                               str(RULES), "--format", "json"])
    assert stored.exit_code == 0 and from_file.exit_code == 0, stored.output + from_file.output
    assert json.loads(stored.output) == json.loads(from_file.output)
    assert json.loads(stored.output)["charges"]

    changed = runner.invoke(allocation_app, ["rules-load", str(changed_file(tmp_path)),
                                             "--reason", "new split"])
    assert changed.exit_code == 0 and "version 2" in changed.output
    document = json.loads(runner.invoke(allocation_app, ["shared", "--period", "2026-10",
                                                         "--format", "json"]).output)
    fixed = [c for c in document["charges"] if c["rule"] == "platform-fixed-oct-h2"]
    ratios = [e["x_ExactRatio"] for c in fixed for e in c["AllocatedMethodDetails"]["Elements"]]
    assert "3/5" in ratios
