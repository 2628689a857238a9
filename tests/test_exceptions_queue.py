"""The exception queue: groups with age, amount and reason; assign writes reallocations and an
audit record and never touches events; resolve closes a group; coverage follows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction

import pytest
import sqlalchemy as sa
from test_allocation_helpers import EARLY, MINI, usage_event
from typer.testing import CliRunner

from spendtrail.allocation.coverage import coverage
from spendtrail.allocation.exceptions import (
    ExceptionQueueError,
    assign,
    group_id,
    open_groups,
    resolve,
)
from spendtrail.cli.allocation_cmd import exceptions_app
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import audit_log, events, reallocations
from spendtrail.periods import parse_period

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

GHOST = group_id("unknown_application", "ghost-app")
UNTAGGED = group_id("missing_owner", None)


def snapshot(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(events).order_by(events.c.event_id)).all()


def test_groups_by_reason_and_captured_owner_with_age_and_amount(books):
    Ingester(books).ingest_events([usage_event(EARLY, "ghost-app", "mystery-model")])
    with books.connect() as conn:
        groups = {g.id: g for g in open_groups(conn)}
    assert set(groups) == {GHOST, UNTAGGED}
    ghost = groups[GHOST]
    assert (ghost.reasons, ghost.owner_label, len(ghost.events)) == (
        "unknown_application", "ghost-app", 2)
    assert ghost.amounts == {"USD": MINI} and ghost.unpriced == 1
    assert ghost.oldest == datetime(2026, 10, 5, 12, tzinfo=UTC)
    assert ghost.age_days(datetime(2026, 10, 15, 11, tzinfo=UTC)) == 9
    assert groups[UNTAGGED].owner_label == "(untagged)"
    with books.connect() as conn:
        assert open_groups(conn, parse_period("2026-11")) == []


def test_assign_writes_reallocations_and_audit_and_leaves_events_alone(books):
    before = snapshot(books)
    with books.begin() as conn:
        done = assign(conn, group=GHOST, application="support-assistant", actor="ana",
                      reason="ghost-app is the support team's old name")
    assert (done.events, done.amounts, done.groups) == (1, {"USD": MINI}, (GHOST,))
    assert snapshot(books) == before  # the original events are never edited
    with books.connect() as conn:
        (moved,) = conn.execute(sa.select(reallocations)).mappings().all()
        (audit,) = conn.execute(sa.select(audit_log).where(
            audit_log.c.action == "exceptions.assign")).mappings().all()
        assert [g.id for g in open_groups(conn)] == [UNTAGGED]
        after = coverage(conn, parse_period("2026-10"))
    assert (moved["from_status"], moved["from_application"], moved["to_application"]) == (
        "quarantined", "ghost-app", "support-assistant")
    assert (moved["to_cost_center"], moved["to_budget_owner"]) == ("CC-110", "ben.okafor")
    assert (moved["amount_pico"], moved["currency"], moved["assigned_by"]) == (MINI, "USD", "ana")
    assert audit["object_id"] == GHOST and audit["actor"] == "ana"
    assert json.loads(audit["before"])["application"] == "ghost-app"
    assert json.loads(audit["after"])["events"] == [moved["event_id"]]
    assert json.loads(audit["after"])["amount_pico"] == {"USD": MINI}
    # Coverage counts the reallocated cost as allocated.
    usd = after.currencies[0]
    assert usd.cost_pico["quarantined"] == MINI
    assert after.events["quarantined"] == 1 and after.reallocated_events == 1
    assert usd.share("quarantined") == Fraction(MINI, usd.total_pico)
    lines = {(line.status, line.owner): line for line in after.lines}
    assert ("quarantined", "ghost-app") not in lines
    assert lines["reallocated", "support-assistant"].cost_pico == MINI


def test_assign_refusals(books):
    with books.begin() as conn:
        with pytest.raises(ExceptionQueueError, match="did you mean 'support-assistant'"):
            assign(conn, group=GHOST, application="suport-assistant", actor="a", reason="r")
        with pytest.raises(ExceptionQueueError, match="needs a reason"):
            assign(conn, group=GHOST, application="support-assistant", actor="a", reason=" ")
        with pytest.raises(ExceptionQueueError, match="no open exception group 'EX-nope'"):
            assign(conn, group="EX-nope", application="support-assistant", actor="a",
                   reason="r")
        allocated = conn.execute(sa.select(events.c.event_id).where(
            events.c.allocation_status == "allocated")).scalars().first()
        with pytest.raises(ExceptionQueueError, match="not in the exception queue"):
            assign(conn, event_ids=[allocated], application="support-assistant", actor="a",
                   reason="r")
        (untagged,) = conn.execute(sa.select(events.c.event_id).where(
            events.c.application.is_(None))).scalars().all()
        assign(conn, event_ids=[untagged], application="contract-review", actor="a",
               reason="traced by key")
        with pytest.raises(ExceptionQueueError, match="not in the exception queue"):
            assign(conn, event_ids=[untagged], application="contract-review", actor="a",
                   reason="twice")


def test_resolve_closes_a_group_until_new_events_arrive(books):
    with books.begin() as conn:
        resolve(conn, UNTAGGED, note="gateway smoke tests; finance writes them off",
                actor="ana")
        assert [g.id for g in open_groups(conn)] == [GHOST]
        with pytest.raises(ExceptionQueueError, match="needs a note"):
            resolve(conn, GHOST, note="", actor="ana")
        audit = conn.execute(sa.select(audit_log.c.action, audit_log.c.reason).where(
            audit_log.c.object_type == "exception_group")).all()
    assert audit == [("exceptions.resolve", "gateway smoke tests; finance writes them off")]
    Ingester(books).ingest_events([usage_event(EARLY, None)])
    with books.connect() as conn:
        reopened = {g.id: g for g in open_groups(conn)}
    assert len(reopened[UNTAGGED].events) == 1


def test_cli_list_show_assign_resolve(books, cli_ledger):
    runner = CliRunner()
    listed = runner.invoke(exceptions_app, ["list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["group"]: row for row in json.loads(listed.stdout)}
    assert rows[GHOST]["amount"] == "0.00045 USD" and rows[GHOST]["events"] == 1
    assert rows[UNTAGGED]["captured_application"] == "(untagged)"

    shown = runner.invoke(exceptions_app, ["show", GHOST])
    assert shown.exit_code == 0 and "gpt-4o-mini" in shown.stdout

    refused = runner.invoke(exceptions_app, ["assign", GHOST, "--to", "nobody", "--reason", "x"])
    assert refused.exit_code == 2 and "'nobody' is not an application" in refused.output
    assigned = runner.invoke(exceptions_app, ["assign", GHOST, "--to", "support-assistant",
                                              "--reason", "renamed app"])
    assert assigned.exit_code == 0, assigned.output
    assert f"assigned 1 events (0.00045 USD) to support-assistant from {GHOST}" in assigned.stdout

    resolved = runner.invoke(exceptions_app, ["resolve", UNTAGGED, "--note", "test traffic"])
    assert resolved.exit_code == 0, resolved.output
    empty = runner.invoke(exceptions_app, ["list"])
    assert "the exception queue is empty" in empty.stdout
    with cli_ledger.connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.actor, audit_log.c.action)
                               .where(audit_log.c.object_type == "exception_group")
                               .order_by(audit_log.c.id)).all()
    assert actions == [("ana", "exceptions.assign"), ("ana", "exceptions.resolve")]
