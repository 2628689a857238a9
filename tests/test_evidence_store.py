"""Evidence in the ledger, on both backends: the source register and its check, drafted and
stored review notes with each checklist rule, the follow-up queue and the audit trail."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from factories import event

from spendtrail.evidence import (
    Claim,
    EvidenceError,
    ReviewNote,
    Source,
    SourceRef,
    default_sources,
)
from spendtrail.evidence.audit_view import audit_entries
from spendtrail.evidence.draft import draft_note
from spendtrail.evidence.followups import list_follow_ups, open_follow_up, resolve_follow_up
from spendtrail.evidence.handoff import get_handoff, new_handoff, render_handoff
from spendtrail.evidence.sample import sample_notes
from spendtrail.evidence.store import (
    check_review,
    check_sources,
    get_review,
    list_reviews,
    load_sources,
    save_review,
    save_source,
    store_checked,
)
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import price_entries, review_notes

TODAY = datetime.now(UTC).date()
NOW = datetime.now(UTC).replace(microsecond=0)
KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8J9k0" * 2


@pytest.fixture
def ledger_with_usage(seeded):
    """Registry, prices, the default sources read today and October's usage ingested."""
    Ingester(seeded).ingest_events([event(), event(), event(app="contract-review")])
    with seeded.begin() as conn:
        for source in default_sources(TODAY):
            save_source(conn, source, area="seed", checked_by="finance-partner", actor="ana")
    return seeded


def drafted(conn, owner="search-summaries", **options) -> ReviewNote:
    return draft_note(conn, owner, "2026-10", reviewer_role="FinOps reviewer", now=NOW,
                      **options)


def test_source_register_add_update_and_audit(ledger):
    source = Source("cometapi-pricing", "https://apidoc.cometapi.com/pricing/about-pricing",
                    date(2026, 7, 5), "pricing units", frozenset({"price"}), 31)
    with ledger.begin() as conn:
        save_source(conn, source, area="pricing", checked_by="finops", actor="ana")
        save_source(conn, replace(source, accessed=date(2026, 11, 1)), area="pricing",
                    checked_by="dana", actor="dana", reason="re-read")
        [item] = load_sources(conn)
        entries = audit_entries(conn, object_types=("source",))
    assert item.source == replace(source, accessed=date(2026, 11, 1))
    assert (item.area, item.checked_by) == ("pricing", "dana")
    assert [(e.action, e.actor, e.reason) for e in entries] == [
        ("source.add", "ana", ""), ("source.update", "dana", "re-read")]
    assert json.loads(entries[1].before)["accessed"] == "2026-07-05"
    assert json.loads(entries[1].after)["accessed"] == "2026-11-01"


def test_a_source_holding_a_credential_is_refused(ledger):
    with ledger.begin() as conn, pytest.raises(EvidenceError, match="holds a credential"):
        save_source(conn, Source("leaky", f"https://example.com/?key={KEY}", TODAY),
                    area="", checked_by="ana", actor="ana")
    with ledger.connect() as conn:
        assert load_sources(conn) == []


def test_check_lists_stale_sources_and_citations_of_missing_ones(seeded):
    with seeded.begin() as conn:
        save_source(conn, Source("old", "https://example.com/old", date(2026, 1, 1),
                                 review_every_days=30), area="", checked_by="a", actor="a")
        save_source(conn, Source("fresh", "https://example.com/new", date(2026, 11, 1),
                                 review_every_days=30), area="", checked_by="a", actor="a")
        conn.execute(price_entries.update().where(price_entries.c.model_match == "gpt-4o")
                     .values(source_id="cometapi-price-sheet"))
        save_review(conn, ReviewNote(review_id="chargeback-review-20261110-001",
                                     usage_period="2026-10", notes="See [src:vendor-contract].",
                                     source_url_checked=(SourceRef("fresh"),)), actor="a")
        problems = check_sources(conn, date(2026, 11, 10))
    found = {(p.kind, p.source_id, p.cited_by) for p in problems}
    entry_id = next(cited for kind, _, cited in found if cited.startswith("price entry"))
    assert found == {
        ("stale", "old", "register"),
        ("missing", "vendor-contract", "review chargeback-review-20261110-001"),
        ("missing", "cometapi-price-sheet", entry_id),
    }


def test_draft_from_the_ledger_passes_and_is_stored_with_its_result(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        note = drafted(conn)
        save_review(conn, note, actor="ana")
        stored = check_review(conn, note.review_id, actor="ana")
        follow_ups = list_follow_ups(conn)
    assert note.review_id == f"chargeback-review-{NOW:%Y%m%d}-001"
    assert note.team_owner == "search-summaries" and not note.shared
    assert "business unit consumer" in note.allocation_rule
    assert "cost center CC-100" in note.allocation_rule and "registry v1" in note.allocation_rule
    assert "2 requests, 2,000 input and 1,000 output tokens" in note.notes
    urls = [ref.url for ref in note.source_url_checked]
    assert "https://www.finops.org/framework/capabilities/allocation/" in urls
    assert "https://api.cometapi.com/pricing" in urls  # the price sheet the usage was priced by
    assert stored.note.review_result == "pass" and stored.check.codes == ()
    assert follow_ups == []
    with ledger_with_usage.connect() as conn:
        assert get_review(conn, note.review_id).note == stored.note


@pytest.mark.parametrize(("field", "code", "role"), [
    ("team_owner", "missing_owner", "platform lead"),
    ("allocation_rule", "missing_allocation_rule", "platform lead"),
    ("usage_unit_checked", "missing_usage_unit", "owner"),
    ("reviewer_role", "missing_reviewer_role", "owner"),
    ("reviewed_at", "missing_timestamp", "owner"),
    ("source_url_checked", "missing_source", "owner"),
])
def test_a_note_missing_each_field_fails_and_routes_a_follow_up(ledger_with_usage, field, code,
                                                               role):
    with ledger_with_usage.begin() as conn:
        note = drafted(conn)
        save_review(conn, replace(note, **{field: () if field == "source_url_checked" else None}),
                    actor="ana")
        stored = check_review(conn, note.review_id, actor="ana")
        [follow_up] = list_follow_ups(conn)
    assert stored.note.review_result == "fail" and stored.check.codes == (code,)
    assert stored.note.follow_up_owner == role
    assert (follow_up.origin, follow_up.origin_id, follow_up.routed_to) == (
        "review", note.review_id, role)
    assert field.split("_")[0] in follow_up.question


def test_a_flagged_note_can_never_be_marked_pass(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        note = drafted(conn, notes="CometAPI support confirmed a 20% discount.")
        save_review(conn, note, actor="ana")
        with pytest.raises(EvidenceError, match="cannot mark pass"):
            check_review(conn, note.review_id, actor="ana", result="pass")
        stored = check_review(conn, note.review_id, actor="ana")
    assert stored.note.review_result == "fail"
    assert "lint:unsupported_support_outcome" in stored.check.codes
    assert "lint:unsupported_discount" in stored.check.codes
    with ledger_with_usage.begin() as conn:  # a stricter result is fine on a passing note
        clean = drafted(conn)
        save_review(conn, clean, actor="ana")
        assert check_review(conn, clean.review_id, actor="ana",
                            result="needs_follow_up").note.review_result == "needs_follow_up"


def test_a_note_holding_a_secret_is_never_stored(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        note = drafted(conn, notes=f"tested with api_key={KEY}")
        with pytest.raises(EvidenceError, match="holds a credential"):
            save_review(conn, note, actor="ana")
    with ledger_with_usage.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(review_notes)).scalar() == 0
        assert all(KEY not in (e.after or "") for e in audit_entries(conn))


def test_shared_pool_needs_an_explicit_decision(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        undecided = drafted(conn, owner="platform-shared")
        save_review(conn, undecided, actor="ana")
        assert undecided.shared
        assert check_review(conn, undecided.review_id, actor="ana").check.codes == (
            "shared_without_decision",)
        split = drafted(conn, owner="platform-shared", shared_decision="split:headcount")
        save_review(conn, split, actor="ana")
        assert check_review(conn, split.review_id, actor="ana").note.review_result == "pass"
        held = drafted(conn, owner="platform-shared", shared_decision="held")
        save_review(conn, held, actor="ana")
        assert check_review(conn, held.review_id, actor="ana").note.review_result == (
            "needs_follow_up")


def test_business_unit_owner_and_unknown_owner(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        team = drafted(conn, owner="consumer")
        assert "search-summaries" in team.allocation_rule
        assert "2 requests" in team.notes  # contract-review is enterprise, not consumer
        with pytest.raises(EvidenceError, match="not an application, business unit"):
            drafted(conn, owner="nobody")


def test_stale_register_source_makes_the_note_need_follow_up(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        source = default_sources(TODAY - timedelta(days=40))[3]  # pricing: 31-day cadence
        save_source(conn, source, area="pricing", checked_by="a", actor="a")
        note = drafted(conn)
        save_review(conn, note, actor="ana")
        stored = check_review(conn, note.review_id, actor="ana")
    assert stored.note.review_result == "needs_follow_up"
    assert stored.check.codes == ("stale_source",)
    assert stored.note.follow_up_owner == "finance partner"


def test_two_row_sample_one_pass_one_fail(ledger):
    with ledger.begin() as conn:
        stored = store_checked(conn, sample_notes("2026-10", team_owner="search-summaries"),
                               actor="ana")
        again = store_checked(conn, sample_notes("2026-10", team_owner="search-summaries"),
                              actor="ana")
        follow_ups = list_follow_ups(conn)
    assert [s.note.review_result for s in stored] == ["pass", "fail"]
    assert stored[1].check.codes == ("missing_owner", "shared_without_decision")
    assert [s.note.review_id[-3:] for s in stored + again] == ["001", "002", "003", "004"]
    assert [f.origin_id for f in follow_ups] == [stored[1].note.review_id,
                                                 again[1].note.review_id]
    with ledger.connect() as conn:
        assert [s.note.review_result for s in list_reviews(conn, "2026-10")] == [
            "pass", "fail", "pass", "fail"]


def test_follow_ups_are_not_duplicated_and_resolve_once_with_audit(ledger):
    with ledger.begin() as conn:
        first = open_follow_up(conn, origin="reconciliation", origin_id="rec-1",
                               question="variance over tolerance", routed_to="finance partner",
                               actor="ana")
        again = open_follow_up(conn, origin="reconciliation", origin_id="rec-1",
                               question="variance over tolerance", routed_to="finance partner",
                               actor="ana")
        assert again.id == first.id
        with pytest.raises(EvidenceError, match="a note"):
            resolve_follow_up(conn, first.id, note=" ", actor="dana")
        done = resolve_follow_up(conn, first.id, note="billing export re-pulled", actor="dana")
        with pytest.raises(EvidenceError, match="resolved already"):
            resolve_follow_up(conn, first.id, note="again", actor="dana")
        with pytest.raises(EvidenceError, match="origin"):
            open_follow_up(conn, origin="gossip", origin_id="x", question="?", routed_to="owner",
                           actor="ana")
        assert list_follow_ups(conn) == []
        assert [f.id for f in list_follow_ups(conn, include_resolved=True)] == [first.id]
        entries = audit_entries(conn, object_types=("follow_up",))
    assert done.resolved_by == "dana" and done.age_days(datetime.now(UTC)) == 0
    assert [(e.action, e.actor) for e in entries] == [("follow_up.open", "ana"),
                                                      ("follow_up.resolve", "dana")]
    assert json.loads(entries[1].after)["resolution"] == "billing export re-pulled"
    assert entries[1].reason == "billing export re-pulled"


def test_audit_log_records_each_kind_of_change_and_filters(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        note = drafted(conn, owner="platform-shared")
        save_review(conn, note, actor="ana")
        check_review(conn, note.review_id, actor="ana")
    with ledger_with_usage.connect() as conn:
        kinds = {e.object_type for e in audit_entries(conn)}
        reviews = audit_entries(conn, object_types=("review",))
        later = audit_entries(conn, since=datetime.now(UTC) + timedelta(minutes=1))
        newest = audit_entries(conn, limit=2)
    # registry, prices (seeded fixture), sources, reviews and the follow-up the failure opened
    assert {"registry", "price", "source", "review", "follow_up"} <= kinds
    assert [e.action for e in reviews] == ["review.create", "review.check"]
    assert json.loads(reviews[1].before)["review_result"] is None
    assert json.loads(reviews[1].after) == {"review_result": "fail",
                                            "follow_up_owner": "platform lead",
                                            "reasons": ["shared_without_decision"]}
    assert later == []
    assert [e.action for e in newest] == ["review.check", "follow_up.open"]


def test_handoff_follow_ups_are_open_questions_not_claims(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        note = replace(drafted(conn), claims=(Claim("price", "Input is $0.15 per 1M tokens."),))
        save_review(conn, note, actor="ana")
        assert check_review(conn, note.review_id, actor="ana").check.codes == (
            "claim_without_source",)
        handoff = new_handoff(conn, actor="ana")
    text = render_handoff(handoff)
    # The follow-up quotes the unsupported price as the question it is; the handoff's linter
    # does not report its own follow-ups as claims.
    assert "$0.15 per 1M tokens" in text.split("## Open follow-ups")[1]
    assert handoff.findings == () and "## Lint findings" not in text
    assert handoff.document["decision"] == "stop"  # and no smoke test has run
    assert handoff.document["next_check_owner"] == "finance partner"
    with ledger_with_usage.connect() as conn:
        assert get_handoff(conn, handoff.id).findings == ()


def test_handoff_claims_outside_follow_ups_are_linted(ledger_with_usage):
    with ledger_with_usage.begin() as conn:
        source = Source("price-page", "https://example.com/pricing", date(2026, 11, 1),
                        purpose="input is $0.15 per 1M tokens")
        save_source(conn, source, area="pricing", checked_by="finops", actor="ana")
        handoff = new_handoff(conn, actor="ana")
    assert "unsupported_price" in {f["code"] for f in handoff.findings}
    with ledger_with_usage.connect() as conn:
        stored = get_handoff(conn, handoff.id)
    assert stored.findings == handoff.findings
    assert "## Lint findings" in render_handoff(stored)
