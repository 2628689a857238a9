"""`spendtrail sources|review|followups|audit|handoff` end to end through the CLI, on both
backends, ending like the demo: one passing note, one failing note and a handoff record."""

from __future__ import annotations

import json

import pytest
import typer
from factories import event
from typer.testing import CliRunner

from spendtrail.cli import evidence_cmd
from spendtrail.ledger.ingest import Ingester

runner = CliRunner()
app = typer.Typer()
for name, sub in (("sources", evidence_cmd.sources_app), ("review", evidence_cmd.review_app),
                  ("followups", evidence_cmd.followups_app), ("audit", evidence_cmd.audit_app),
                  ("handoff", evidence_cmd.handoff_app)):
    app.add_typer(sub, name=name)


@pytest.fixture
def cli_ledger(seeded, cli_ledger):
    Ingester(seeded).ingest_events([event(), event(app="platform-shared", env="staging")])
    return cli_ledger


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_sources_add_list_check(cli_ledger):
    added = invoke("sources", "add", "vendor-contract", "https://contracts.example.com/cometapi",
                   "--purpose", "committed spend terms", "--area", "contract",
                   "--accessed", "2026-01-02", "--covers", "discount,price",
                   "--review-every", "30", "--reason", "new contract")
    assert added.exit_code == 0, added.output
    assert invoke("sources", "defaults").exit_code == 0
    listed = json.loads(invoke("sources", "list", "--format", "json").stdout)
    contract = next(row for row in listed if row["id"] == "vendor-contract")
    assert contract["covers"] == ["discount", "price"] and contract["checked_by"] == "ana"
    assert len(listed) == 5
    check = invoke("sources", "check", "--format", "json")
    assert check.exit_code == 1
    assert [(p["kind"], p["source_id"]) for p in json.loads(check.stdout)] == [
        ("stale", "vendor-contract")]
    bad = invoke("sources", "add", "x", "https://x.example.com", "--covers", "gossip")
    assert bad.exit_code == 2 and "unknown claim kind 'gossip'" in bad.output
    assert invoke("sources", "add", "x", "https://x", "--accessed", "May").exit_code == 2


def test_review_new_check_show_export(cli_ledger):
    invoke("sources", "defaults")
    new = invoke("review", "new", "--owner", "search-summaries", "--period", "2026-10",
                 "--reviewer-role", "finance partner")
    assert new.exit_code == 0, new.output
    review_id = new.stdout.split()[1].rstrip(";")
    checked = invoke("review", "check", review_id)
    assert checked.exit_code == 0 and f"{review_id}: pass" in checked.stdout
    shared = invoke("review", "new", "--owner", "platform-shared", "--period", "2026-10")
    shared_id = shared.stdout.split()[1].rstrip(";")
    failed = invoke("review", "check", shared_id)
    assert failed.exit_code == 1
    assert "fail -> platform lead" in failed.stdout and "shared_without_decision" in failed.stdout
    assert invoke("review", "check", shared_id, "--result", "pass").exit_code == 2
    shown = invoke("review", "show", review_id)
    assert "Result: **pass**" in shown.stdout and "finance partner" in shown.stdout
    exported = json.loads(invoke("review", "export", "--format", "json").stdout)
    assert [(n["review_id"], n["review_result"]) for n in exported["review_notes"]] == [
        (review_id, "pass"), (shared_id, "fail")]
    markdown = invoke("review", "export", "--format", "md", "--period", "2026-10").stdout
    assert markdown.count("## chargeback-review-") == 2
    assert invoke("review", "show", "chargeback-review-20990101-001").exit_code == 2
    assert invoke("review", "new", "--owner", "nobody", "--period", "2026-10").exit_code == 2


def test_followups_and_audit_log(cli_ledger):
    invoke("review", "sample", "--period", "2026-10", "--owner", "search-summaries")
    listed = json.loads(invoke("followups", "list", "--format", "json").stdout)
    [item] = listed
    assert (item["origin"], item["routed_to"], item["age_days"]) == ("review", "platform lead", 0)
    assert "ownership queue" in item["question"]
    resolved = invoke("followups", "resolve", str(item["id"]), "--note", "owned by platform")
    assert resolved.exit_code == 0
    assert json.loads(invoke("followups", "list", "--format", "json").stdout) == []
    again = invoke("followups", "resolve", str(item["id"]), "--note", "x")
    assert again.exit_code == 2 and "resolved already" in again.output
    log = json.loads(invoke("audit", "log", "--object-type", "follow_up", "--object-type",
                            "review", "--format", "json").stdout)
    assert [row["action"] for row in log] == [
        "review.create", "review.check", "review.create", "review.check", "follow_up.open",
        "follow_up.resolve"]
    assert log[-1]["why"] == "owned by platform" and log[-1]["actor"] == "ana"
    assert json.loads(invoke("audit", "log", "--since", "2099-01-01", "--format",
                             "json").stdout) == []
    csv_out = invoke("audit", "log", "--object-type", "registry", "--format", "csv").stdout
    assert csv_out.splitlines()[0].startswith("id,at,actor,action,object_type,object_id")
    assert invoke("audit", "log", "--since", "yesterday").exit_code == 2


def test_demo_ends_with_a_passing_and_a_failing_note_and_a_handoff(cli_ledger):
    invoke("sources", "defaults")
    sample = invoke("review", "sample", "--period", "2026-10")
    assert sample.exit_code == 0, sample.output
    lines = sample.stdout.splitlines()
    assert lines[0].endswith(": pass")
    assert lines[1].endswith(": fail (missing_owner, shared_without_decision)")
    assert invoke("handoff", "show").exit_code == 2  # none yet
    new = invoke("handoff", "new")
    assert new.exit_code == 0, new.output
    text = new.stdout
    assert 'decision: "stop"' in text  # no smoke test has run
    assert "no smoke test has been run" in text
    assert "no reconciliation against the provider's bill is recorded" in text
    assert "## Verified" in text and ": pass" in text.split("## Verified")[1]
    assert "## Lint findings" not in text
    shown = json.loads(invoke("handoff", "show", "--format", "json").stdout)
    assert shown["next_check_owner"] == "platform lead"
    assert shown["lint_findings"] == [] and shown["id"].startswith("cost-handoff-")
