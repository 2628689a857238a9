"""Registry versions in the ledger, on SQLite and PostgreSQL: what was valid when."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from spendtrail.events.model import AllocationContext
from spendtrail.ledger.registry_versions import load_history, save_version
from spendtrail.ledger.schema import audit_log, registry_versions
from spendtrail.ledger.versions import canonical_json
from spendtrail.registry import Registry, parse_registry

EXAMPLE = (Path(__file__).resolve().parents[1] / "examples" / "registry.yaml").read_text()
JUNE = datetime(2026, 6, 1, tzinfo=UTC)
EFFECTIVE = "effective_from: 2026-06-01"
SUPPORT_ENVIRONMENTS = (
    "    environments: [production, staging, development]\n"
    "    workload_classes: [user_facing, eval]\n"
)
EVAL_HARNESS = EXAMPLE[EXAMPLE.index("  - id: eval-harness") : EXAMPLE.index("# Platform usage")]


def edit(old: str, new: str, text: str = EXAMPLE) -> str:
    assert text.count(old) == 1, f"edit anchor {old!r} must occur exactly once"
    return text.replace(old, new)


def registry_from(text: str = EXAMPLE) -> Registry:
    return parse_registry(text, source="registry.yaml")


def dated(when: str, text: str = EXAMPLE) -> Registry:
    return registry_from(edit(EFFECTIVE, f"effective_from: {when}", text))


def renamed(name: str, text: str = EXAMPLE) -> str:
    return edit("    name: Support Assistant\n", f"    name: {name}\n", text)


def save(conn, registry: Registry, **kwargs) -> int:
    kwargs.setdefault("source_path", "/srv/registry.yaml")
    kwargs.setdefault("actor", "ana")
    return save_version(conn, registry, **kwargs)


def audit_rows(conn) -> list:
    return conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()


def test_first_version_is_stored_and_audited(ledger):
    registry = registry_from()
    with ledger.begin() as conn:
        version = save(conn, registry, reason="initial registry, FIN-142")
    with ledger.connect() as conn:
        row = conn.execute(sa.select(registry_versions)).one()
        audits = audit_rows(conn)
    assert version == row.version == 1
    assert row.document == canonical_json(registry.to_document())
    assert row.sha256 == hashlib.sha256(row.document.encode()).hexdigest()
    assert (row.loaded_by, row.source_path) == ("ana", "/srv/registry.yaml")
    assert json.loads(row.document)["shared_pool"]["id"] == "platform-shared"

    assert len(audits) == 1
    audit = audits[0]
    assert (audit.actor, audit.action, audit.object_type, audit.object_id, audit.reason) == (
        "ana",
        "registry.load",
        "registry",
        "1",
        "initial registry, FIN-142",
    )
    assert audit.before is None
    after = json.loads(audit.after)
    assert after["version"] == 1
    assert after["valid_from"] == JUNE.isoformat()
    assert after["source_path"] == "/srv/registry.yaml"
    assert after["added"]["applications"] == sorted(registry.applications)
    assert after["added"]["shared_pool"] == ["platform-shared"]


def test_identical_reload_keeps_the_version(ledger):
    same_but_reordered = edit(
        "    environments: [staging, development]\n",
        "    # same set, another order\n    environments: [development, staging]\n",
    )
    with ledger.begin() as conn:
        first = save(conn, registry_from())
    with ledger.begin() as conn:
        again = save(conn, registry_from(same_but_reordered), actor="ben", reason="again")
    with ledger.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(registry_versions))
        assert count.scalar_one() == 1
        assert len(audit_rows(conn)) == 1
    assert again == first == 1


def test_changed_reload_is_a_new_audited_version(ledger):
    changed = edit(
        "    cost_center: CC-110\n    budget_owner: ben.okafor\n",
        "    cost_center: CC-110\n    budget_owner: ana.ruiz\n",
    )
    changed = edit(
        "  - id: internal_automation\n",
        "  - id: support\n  - id: internal_automation\n",
        changed,
    )
    with ledger.begin() as conn:
        assert save(conn, registry_from()) == 1
    with ledger.begin() as conn:
        assert save(conn, registry_from(changed), actor="ben", reason="owner moves") == 2
    with ledger.connect() as conn:
        audit = audit_rows(conn)[-1]
    assert (audit.object_id, audit.actor, audit.reason) == ("2", "ben", "owner moves")
    before, after = json.loads(audit.before), json.loads(audit.after)
    assert before["version"] == 1 and after["version"] == 2
    assert before["changed"] == {
        "applications": {"support-assistant": {"budget_owner": "ben.okafor"}}
    }
    assert after["changed"] == {"applications": {"support-assistant": {"budget_owner": "ana.ruiz"}}}
    assert after["added"] == {"workload_classes": ["support"]}
    assert "removed" not in before


def test_removed_entries_are_audited_and_reverting_is_a_new_version(ledger):
    without = edit(EVAL_HARNESS, "")
    with ledger.begin() as conn:
        assert save(conn, registry_from()) == 1
        assert save(conn, registry_from(without)) == 2
        # going back to version 1's content changes what is in effect: a new version
        assert save(conn, registry_from()) == 3
    with ledger.connect() as conn:
        audits = audit_rows(conn)
    assert json.loads(audits[1].before)["removed"] == {"applications": ["eval-harness"]}
    assert json.loads(audits[2].after)["added"] == {"applications": ["eval-harness"]}


def test_valid_from_comes_from_the_file_else_now(ledger):
    undated = registry_from(edit(EFFECTIVE, ""))
    explicit = datetime(2026, 5, 1, 12, tzinfo=UTC)
    with ledger.begin() as conn:
        save(conn, registry_from())
        started = datetime.now(UTC)
        save(conn, undated)
        finished = datetime.now(UTC)
        save(conn, dated("2026-07-01"), valid_from=explicit)
    with ledger.connect() as conn:
        history = load_history(conn)
    first, second, third = history.versions
    assert first.valid_from == JUNE
    assert started <= second.valid_from <= finished
    assert third.valid_from == explicit
    for version in history.versions:
        assert version.valid_from.tzinfo is UTC and version.loaded_at.tzinfo is UTC
    assert first.loaded_by == "ana" and first.source_path == "/srv/registry.yaml"


def test_history_round_trips_the_registry(ledger):
    registry = registry_from()
    with ledger.begin() as conn:
        save(conn, registry)
        history = load_history(conn)
    version, loaded = history.latest()
    assert version == 1
    assert loaded == registry
    context = AllocationContext(application="support-assistant", environment="staging")
    assert loaded.validate(context) == registry.validate(context)


def test_at_picks_the_version_in_effect(ledger):
    # from July on, the support assistant may no longer run in production
    july = dated(
        "2026-07-01",
        edit(SUPPORT_ENVIRONMENTS, SUPPORT_ENVIRONMENTS.replace("production, ", "")),
    )
    with ledger.begin() as conn:
        assert save(conn, registry_from()) == 1
        assert save(conn, july) == 2
        history = load_history(conn)
    july_first = datetime(2026, 7, 1, tzinfo=UTC)
    assert history.at(datetime(2026, 6, 15, tzinfo=UTC))[0] == 1
    assert history.at(JUNE)[0] == 1
    assert history.at(july_first)[0] == 2
    assert history.at(july_first - timedelta(microseconds=1))[0] == 1
    assert history.at(datetime(2027, 1, 1, tzinfo=UTC))[0] == 2
    # events captured before the registry existed are validated against the first version
    assert history.at(datetime(2025, 1, 1, tzinfo=UTC))[0] == 1
    # other offsets compare by instant: 2026-06-30 21:00 in New York is July 1st in UTC
    assert history.at(datetime(2026, 6, 30, 21, tzinfo=ZoneInfo("America/New_York")))[0] == 2
    context = AllocationContext(application="support-assistant", environment="production")
    june_registry = history.at(datetime(2026, 6, 20, tzinfo=UTC))[1]
    july_registry = history.at(datetime(2026, 7, 20, tzinfo=UTC))[1]
    assert june_registry.validate(context).status == "allocated"
    assert july_registry.validate(context).reasons == ("environment_not_allowed",)
    assert history.latest()[0] == 2


def test_scheduled_and_back_dated_versions_follow_their_dates(ledger):
    with ledger.begin() as conn:
        assert save(conn, dated("2026-06-01")) == 1
        # scheduled ahead, then a version dated before everything loaded so far
        assert save(conn, dated("2026-08-01", renamed("Support Assistant 2"))) == 2
        assert save(conn, dated("2026-05-01", renamed("Support Assistant (May)"))) == 3
        history = load_history(conn)
    assert history.at(datetime(2026, 4, 1, tzinfo=UTC))[0] == 3
    assert history.at(datetime(2026, 5, 15, tzinfo=UTC))[0] == 3
    assert history.at(datetime(2026, 6, 15, tzinfo=UTC))[0] == 1
    assert history.at(datetime(2026, 8, 15, tzinfo=UTC))[0] == 2
    assert history.latest()[0] == 3
    assert history.get(2).registry.applications["support-assistant"].name == ("Support Assistant 2")
    assert history.get(4) is None


def test_a_correction_with_the_same_date_replaces_the_version(ledger):
    with ledger.begin() as conn:
        save(conn, dated("2026-06-01"))
        save(conn, dated("2026-07-01", renamed("Support Assistant 2")))
        save(conn, dated("2026-06-01", renamed("Support Assistant (fixed)")))
        history = load_history(conn)
    assert history.at(JUNE)[0] == 3
    assert history.at(datetime(2026, 6, 30, tzinfo=UTC))[0] == 3
    assert history.at(datetime(2026, 1, 1, tzinfo=UTC))[0] == 3  # before all: still the fix
    assert history.at(datetime(2026, 7, 2, tzinfo=UTC))[0] == 2


def test_empty_history(ledger):
    with ledger.connect() as conn:
        history = load_history(conn)
    assert history.versions == ()
    assert history.at(JUNE) is None
    assert history.latest() is None


def test_failed_transaction_stores_neither_version_nor_audit(ledger):
    with pytest.raises(RuntimeError), ledger.begin() as conn:
        save(conn, registry_from())
        raise RuntimeError("the caller's transaction fails after saving")
    with ledger.connect() as conn:
        assert conn.execute(sa.select(registry_versions)).first() is None
        assert audit_rows(conn) == []
