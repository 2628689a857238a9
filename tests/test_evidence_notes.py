"""Review notes: the checklist rule by rule, follow-up routing, the pass guard, JSON round trip,
the Markdown and JSON exports, and the two-row sample review note."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from spendtrail.evidence import (
    LINT_CODES,
    REASON_CODES,
    Claim,
    EvidenceError,
    ReviewNote,
    Source,
    SourceRef,
    check_note,
    default_sources,
    export_json,
    index_sources,
    mark,
    render_markdown,
    sample_notes,
    utc_timestamp,
)
from spendtrail.evidence.notes import NOTE_FIELDS

REVIEWED = date(2026, 11, 22)
SOURCES = (
    *default_sources(REVIEWED),
    Source("provider-status", "https://status.example.com/", REVIEWED),  # covers any kind
)
KNOWN = index_sources(SOURCES)
ALLOCATION = SourceRef("finops-allocation", "https://www.finops.org/framework/capabilities/allocation/",
                       REVIEWED)


def _note(**changes: Any) -> ReviewNote:
    base = ReviewNote(
        review_id="chargeback-review-20261122-001",
        usage_period="2026-10",
        team_owner="search-team",
        allocation_rule="owner map: registry application to team",
        usage_unit_checked="tokens (input + output) per request",
        source_url_checked=(ALLOCATION,),
        reviewed_at="2026-11-22T08:00:00Z",
        reviewer_role="FinOps reviewer",
        notes="Owner and unit match the owner map.",
    )
    return replace(base, **changes)


def test_a_complete_note_passes() -> None:
    check = check_note(_note(), KNOWN)
    assert (check.result, check.reasons, check.follow_up_owner) == ("pass", (), None)


PRICE = Claim("price", "gpt-4o-mini input is $0.15 per 1M tokens", ("cometapi-pricing",))

FAILURES = [
    # (change, reason code, follow-up owner)
    ({"team_owner": None}, "missing_owner", "platform lead"),
    ({"team_owner": "TEAM_PLACEHOLDER"}, "missing_owner", "platform lead"),
    ({"allocation_rule": ""}, "missing_allocation_rule", "platform lead"),
    ({"usage_unit_checked": None}, "missing_usage_unit", "owner"),
    ({"reviewer_role": "  "}, "missing_reviewer_role", "owner"),
    ({"reviewed_at": None}, "missing_timestamp", "owner"),
    ({"reviewed_at": "2026-11-22 08:00:00"}, "bad_timestamp", "owner"),
    ({"reviewed_at": "2026-11-22T08:00:00+01:00"}, "bad_timestamp", "owner"),
    ({"reviewed_at": "2026-02-30T08:00:00Z"}, "bad_timestamp", "owner"),
    ({"reviewed_at": "2026-09-30T23:59:59Z"}, "review_before_period", "owner"),
    ({"usage_period": "2026-13"}, "bad_period", "owner"),
    ({"usage_period": ""}, "bad_period", "owner"),
    ({"usage_period": "2026-10-05"}, "bad_period", "owner"),
    ({"review_id": "review-1"}, "bad_review_id", "owner"),
    ({"review_id": "chargeback-review-20261340-001"}, "bad_review_id", "owner"),
    ({"source_url_checked": ()}, "missing_source", "owner"),
    ({"source_url_checked": (SourceRef(url="https://SOURCE-URL-PLACEHOLDER"),)},
     "missing_source", "owner"),
    ({"source_url_checked": (SourceRef(url="https://example.com/owner-map"),)},
     "undated_source", "owner"),
    ({"source_url_checked": (SourceRef("owner-map-v3"),)}, "unknown_source", "finance partner"),
    ({"shared": True}, "shared_without_decision", "platform lead"),
    ({"shared": True, "shared_decision": "split"}, "bad_shared_decision", "platform lead"),
    ({"claims": (replace(PRICE, source_ids=()),)}, "claim_without_source", "finance partner"),
    ({"claims": (replace(PRICE, source_ids=("price-blog",)),)}, "unknown_source",
     "finance partner"),
    ({"claims": (replace(PRICE, source_ids=("finops-allocation",)),)}, "source_does_not_cover",
     "finance partner"),
    ({"notes": "Owner confirmed; the model costs $0.15 per 1M tokens."},
     "lint:unsupported_price", "finance partner"),
    ({"notes": "Support agreed to credit the outage."}, "lint:unsupported_support_outcome",
     "finance partner"),
    ({"notes": 'Sample: {"role": "user", "content": "hello"}'}, "lint:raw_content", "owner"),
    ({"notes": "Key for the smoke test: <YOUR_KEY>"}, "lint:credential_placeholder", "owner"),
]


@pytest.mark.parametrize(("change", "code", "follow_up"), FAILURES,
                         ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(FAILURES)])
def test_each_rule_fails_with_exactly_its_reason(
    change: dict[str, Any], code: str, follow_up: str
) -> None:
    check = check_note(_note(**change), KNOWN)
    assert check.result == "fail"
    assert check.codes == (code,)
    assert check.follow_up_owner == follow_up
    assert check.reasons[0].message
    assert code in REASON_CODES and check.reasons[0].severity == "fail"


def test_every_linter_code_has_a_rule() -> None:
    assert {f"lint:{code}" for code in LINT_CODES} <= set(REASON_CODES)


def test_every_non_lint_rule_is_exercised() -> None:
    exercised = {code for _, code, _ in FAILURES} | {"unverified_claim", "held_shared_cost",
                                                     "stale_source"}
    rules = {code for code in REASON_CODES if not code.startswith("lint:")}
    assert rules <= exercised


@pytest.mark.parametrize(
    ("change", "code", "follow_up"),
    [
        ({"claims": (replace(PRICE, source_ids=(), status="unverified"),)}, "unverified_claim",
         "provider support"),
        ({"shared": True, "shared_decision": "held"}, "held_shared_cost", "platform lead"),
        ({"claims": (PRICE,), "reviewed_at": "2027-01-10T08:00:00Z"}, "stale_source",
         "finance partner"),
    ],
)
def test_open_questions_need_follow_up(change: dict[str, Any], code: str, follow_up: str) -> None:
    check = check_note(_note(**change), KNOWN)
    assert (check.result, check.codes, check.follow_up_owner) == (
        "needs_follow_up", (code,), follow_up)


def test_a_source_cited_in_the_notes_text_is_checked_for_staleness() -> None:
    note = _note(notes="Input is $0.15 per 1M tokens [src:cometapi-pricing].",
                 reviewed_at="2027-01-10T08:00:00Z")
    assert check_note(note, KNOWN).codes == ("stale_source",)


def test_a_stale_source_is_cleared_by_a_fresh_reading_in_the_note() -> None:
    fresh = SourceRef("cometapi-pricing", None, date(2027, 1, 5))
    note = _note(claims=(PRICE,), reviewed_at="2027-01-10T08:00:00Z",
                 source_url_checked=(ALLOCATION, fresh))
    assert check_note(note, KNOWN).result == "pass"


@pytest.mark.parametrize("decision", ["central", "split:requests-proportional", "split: headcount"])
def test_shared_usage_with_a_decision_passes(decision: str) -> None:
    assert check_note(_note(shared=True, shared_decision=decision), KNOWN).result == "pass"


def test_supported_claims_pass() -> None:
    claims = (
        PRICE,
        Claim("uptime", "status page reports 99.9% monthly uptime", ("provider-status",)),
        Claim("billing_treatment", "failed calls are not billed", ("finops-allocation",
                                                                   "cometapi-pricing")),
    )
    note = _note(claims=claims, notes="Price checked: $0.15 per 1M tokens [src:cometapi-pricing].")
    assert check_note(note, KNOWN).result == "pass"


def test_a_source_listed_in_the_note_with_a_url_is_citable() -> None:
    ref = SourceRef("team-contract", "https://intranet.example.com/contracts/42", REVIEWED)
    note = _note(source_url_checked=(ALLOCATION, ref),
                 claims=(Claim("discount", "contracted 10% rebate", ("team-contract",)),),
                 notes="Rebate of 10% per the contract [src:team-contract].")
    assert check_note(note, KNOWN).result == "pass"


def test_fail_outranks_follow_up_and_the_first_reason_routes() -> None:
    note = _note(team_owner=None, usage_unit_checked=None,
                 claims=(replace(PRICE, status="unverified"),))
    check = check_note(note, KNOWN)
    assert check.result == "fail"
    assert check.codes == ("missing_owner", "missing_usage_unit", "unverified_claim")
    assert check.follow_up_owner == "platform lead"


def test_a_named_follow_up_owner_wins_over_the_default() -> None:
    check = check_note(_note(team_owner=None, follow_up_owner="finance partner"), KNOWN)
    assert (check.result, check.follow_up_owner) == ("fail", "finance partner")


def test_a_secret_anywhere_in_the_note_fails_it_without_echoing_it() -> None:
    secret = "sk-" + "ant-api03-" + "Qx7vT2mK9pL4rW8nB3cY6hJ1dF5gS0aZ"
    for change, codes in (
        ({"notes": f"debug key {secret}"}, ("lint:secret",)),
        ({"claims": (replace(PRICE, text=f"{PRICE.text} key {secret}"),)}, ("lint:secret",)),
        ({"allocation_rule": f"rule {secret}"}, ("lint:secret",)),
        ({"claims": (Claim("price", f"key {secret} costs more"),)},
         ("lint:secret", "claim_without_source")),
        ({"source_url_checked": (SourceRef(url=f"https://x.example/?api_key={secret}"),)},
         ("lint:secret", "undated_source")),
    ):
        check = check_note(_note(**change), KNOWN)
        assert check.result == "fail" and check.codes == codes
        assert check.follow_up_owner == "platform lead"
        assert all(secret not in reason.message for reason in check.reasons)


def test_claim_text_is_not_double_checked_for_support() -> None:
    # The structured claim cites its source; the sentence itself need not repeat [src:...].
    assert check_note(_note(claims=(PRICE,)), KNOWN).result == "pass"


FLAGGED_TEXTS = [
    "key " + "sk-" + "proj-" + "Zr8Kq2Lm5Nv7Xc3Bt9Hw4Jd6",
    "Authorization: Bearer " + "Zr8Kq2Lm5Nv7Xc3Bt9Hw4Jd6",
    'raw: {"messages": [{"role": "user"}]}',
    "Support promised a refund.",
    "Limit is 10,000 TPM.",
    "We get 30% off.",
    "Use <OPENAI_KEY> for tests.",
]


@pytest.mark.parametrize("text", FLAGGED_TEXTS)
def test_a_flagged_note_can_never_be_marked_pass(text: str) -> None:
    note = _note(notes=text)
    check = check_note(note, KNOWN)
    assert check.result == "fail" and all(c.startswith("lint:") for c in check.codes)
    with pytest.raises(EvidenceError, match="cannot mark pass"):
        mark(note, check, "pass")
    with pytest.raises(EvidenceError, match="cannot mark needs_follow_up"):
        mark(note, check, "needs_follow_up")
    assert mark(note, check).review_result == "fail"


def test_mark_records_result_and_routing() -> None:
    failing = _note(team_owner=None, follow_up_owner=None)
    marked = mark(failing, check_note(failing, KNOWN))
    assert (marked.review_result, marked.follow_up_owner) == ("fail", "platform lead")
    passing = _note(follow_up_owner="owner", review_result="fail")
    check = check_note(passing, KNOWN)
    assert mark(passing, check).review_result == "pass"
    assert mark(passing, check).follow_up_owner is None
    stricter = mark(passing, check, "needs_follow_up")  # a reviewer may be stricter
    assert (stricter.review_result, stricter.follow_up_owner) == ("needs_follow_up", "owner")
    with pytest.raises(EvidenceError, match="review_result"):
        mark(passing, check, "ok")


def _full_note() -> ReviewNote:
    return _note(
        shared=True,
        shared_decision="split:requests-proportional",
        source_url_checked=(ALLOCATION, SourceRef(url="https://example.com/map",
                                                  accessed=REVIEWED)),
        claims=(PRICE, Claim("rate_limit", "TPM quota for the team key", (), "unverified")),
        review_result="needs_follow_up",
        follow_up_owner="provider support",
        notes="Line one | with a pipe.\nLine two.",
    )


def test_json_round_trip() -> None:
    note = _full_note()
    text = note.to_json()
    assert list(json.loads(text)) == list(NOTE_FIELDS)
    assert ReviewNote.from_json(text) == note


def test_seed_logging_block_form_loads() -> None:
    data = {
        "review_id": "chargeback-review-20261122-001",
        "usage_period": "2026-10",
        "team_owner": "search-team",
        "allocation_rule": "owner map",
        "usage_unit_checked": "requests",
        "source_url_checked": "https://www.finops.org/framework/capabilities/allocation/",
        "review_result": "pass",
        "follow_up_owner": "ROLE_PLACEHOLDER",
        "reviewed_at": "2026-11-22T08:00:00Z",
        "reviewer_role": "FinOps reviewer",
        "notes": "Sanitized summary only.",
    }
    note = ReviewNote.from_dict(data)
    assert note.source_url_checked == (
        SourceRef(url="https://www.finops.org/framework/capabilities/allocation/"),)
    # The seed's bare URL has no access date, so the stored "pass" does not survive a check.
    check = check_note(note, KNOWN)
    assert (check.result, check.codes) == ("fail", ("undated_source",))
    assert check.follow_up_owner == "owner"  # the template placeholder names no one


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"review_id": "x", "usage_period": "2026-10", "team_ownr": "a"},
         "unknown field 'team_ownr'"),
        ({"usage_period": "2026-10"}, "review_id: missing"),
        ({"review_id": "x", "usage_period": "2026-10", "review_result": "ok"}, "review_result"),
        ({"review_id": "x", "usage_period": "2026-10", "shared": "yes"}, "shared"),
        ({"review_id": "x", "usage_period": "2026-10", "team_owner": 7}, "team_owner"),
        ({"review_id": "x", "usage_period": "2026-10",
          "claims": [{"kind": "vibes", "text": "t"}]}, "claims.kind"),
        ({"review_id": "x", "usage_period": "2026-10",
          "claims": [{"kind": "price", "text": "t", "status": "maybe"}]}, "claims.status"),
        ({"review_id": "x", "usage_period": "2026-10",
          "source_url_checked": [{"url": "https://a", "accessed": "22/11/2026"}]},
         "source_url_checked.accessed"),
        ({"review_id": "x", "usage_period": "2026-10", "source_url_checked": [{}]},
         "source_id or a url"),
    ],
)
def test_malformed_json_is_rejected_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        ReviewNote.from_dict(data)


def test_not_json_is_rejected() -> None:
    with pytest.raises(EvidenceError, match="not JSON"):
        ReviewNote.from_json("{review_id:")


def test_markdown_contains_every_field_and_the_reasons() -> None:
    note = _full_note()
    failing = _note(review_id="chargeback-review-20261122-002", team_owner=None)
    text = render_markdown([(note, check_note(note, KNOWN)), (failing, check_note(failing, KNOWN))])
    for name in NOTE_FIELDS:
        assert f"\n{name}: " in text  # the logging block
    table = [line for line in text.splitlines() if line.startswith("| chargeback-review-")]
    assert len(table) == 2
    assert "| needs_follow_up |" in table[0] and "unverified_claim" in table[0]
    assert "| fail |" in table[1] and "missing_owner" in table[1]
    assert table[1].count(" | ") == table[0].count(" | ")  # the pipe in notes is escaped
    for value in ("split:requests-proportional", "search-team", "finops-allocation",
                  "https://example.com/map", "accessed 2026-11-22", "FinOps reviewer",
                  "2026-11-22T08:00:00Z", "provider support", "TPM quota for the team key",
                  "[src:cometapi-pricing]", "Line one | with a pipe.\\nLine two."):
        assert value in text, value
    assert "`missing_owner` (fail)" in text
    assert "`unverified_claim` (needs_follow_up)" in text


def test_exports_redact_and_never_overstate_a_result() -> None:
    secret = "sk-" + "proj-" + "Zr8Kq2Lm5Nv7Xc3Bt9Hw4Jd6Pf1"
    note = _note(notes=f"debug with {secret}", review_result="pass")
    reviews = [(note, check_note(note, KNOWN))]
    markdown, exported = render_markdown(reviews), export_json(reviews)
    assert secret not in markdown and secret not in exported
    (item,) = json.loads(exported)["review_notes"]
    assert item["review_result"] == "fail" and item["follow_up_owner"] == "platform lead"
    assert item["notes"] == "debug with <redacted>"
    assert [r["code"] for r in item["reasons"]] == ["lint:secret"]


def test_sample_gives_one_pass_and_one_fail() -> None:
    at = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    passing, failing = sample_notes("2026-10", team_owner="search-team", reviewed_at=at)
    assert passing.review_id == "chargeback-review-20261122-001"
    assert failing.review_id == "chargeback-review-20261122-002"
    assert passing.usage_period == failing.usage_period == "2026-10"
    assert (passing.review_result, passing.follow_up_owner) == ("pass", None)
    assert (failing.review_result, failing.follow_up_owner) == ("fail", "platform lead")
    known = index_sources(default_sources(at.date()))
    assert check_note(passing, known).result == "pass"
    assert check_note(failing, known).codes == ("missing_owner", "shared_without_decision")
    # Both are self-contained: their sources are listed with URLs and dates.
    assert check_note(passing).result == "pass"
    text = render_markdown([(n, check_note(n)) for n in (passing, failing)])
    assert "| pass |" in text and "| fail |" in text and "shared_without_decision" in text


@pytest.mark.parametrize("period", ["2026-12", "October", "2026-10-01"])
def test_sample_refuses_a_period_it_cannot_pass(period: str) -> None:
    with pytest.raises(EvidenceError, match="period"):
        sample_notes(period, team_owner="search-team",
                     reviewed_at=datetime(2026, 11, 22, tzinfo=UTC))


def test_timestamps_are_utc_with_z() -> None:
    assert utc_timestamp(datetime(2026, 11, 22, 9, 0, 5, 123, tzinfo=UTC)) == "2026-11-22T09:00:05Z"
    with pytest.raises(EvidenceError, match="time zone"):
        utc_timestamp(datetime(2026, 11, 22, 9, 0))


def test_sources_are_validated() -> None:
    with pytest.raises(EvidenceError, match="listed twice"):
        index_sources([SOURCES[0], SOURCES[0]])
    with pytest.raises(EvidenceError, match="unknown claim kind"):
        Source("x", "https://x", REVIEWED, covers=frozenset({"vibes"}))
    with pytest.raises(EvidenceError, match="source id"):
        Source("bad id", "https://x", REVIEWED)
