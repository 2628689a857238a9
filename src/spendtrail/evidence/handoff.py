"""The cost handoff record: the seeds' template filled from the latest smoke test, the latest
reconciliation (when that capability is installed) and the review notes, saying what was
verified, what was not, and who owns the next check. Linted before it is stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from spendtrail.evidence.errors import EvidenceError
from spendtrail.evidence.followups import list_follow_ups
from spendtrail.evidence.linter import lint
from spendtrail.evidence.notes import utc_timestamp
from spendtrail.evidence.smoke_log import latest_smoke_run
from spendtrail.evidence.store import (
    check_sources,
    known_sources,
    list_reviews,
    next_daily_id,
    refuse_secrets,
)
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import handoffs

# What one smoke request and a review packet cannot show (the seeds' "what not to assert").
NOT_ASSERTED = ("final invoice totals, account discounts, quotas, rate limits, uptime and model "
                "availability are not asserted by this handoff")
_RECONCILIATION_ORDER = ("created_at", "reconciled_at", "at", "id")


@dataclass(frozen=True, slots=True)
class Handoff:
    id: str
    created_at: datetime
    created_by: str
    document: dict[str, Any]
    findings: tuple[dict[str, Any], ...]

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at.isoformat(),
                "created_by": self.created_by, **self.document,
                "lint_findings": list(self.findings)}


def new_handoff(conn: sa.Connection, *, actor: str, now: datetime | None = None) -> Handoff:
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    verified: list[str] = []
    not_verified: list[str] = []
    smoke = latest_smoke_run(conn)
    if smoke is None:
        not_verified.append("no smoke test has been run (`spendtrail smoke`)")
    else:
        tags = f"owner {smoke.owner_tag}, workload {smoke.workload_tag}, {smoke.environment}"
        (verified if smoke.happy_path_result == "pass" else not_verified).append(
            f"smoke {smoke.run_id}: happy path {smoke.happy_path_result} ({tags}; evidence "
            f"captured: {'yes' if smoke.evidence_captured else 'no'})")
        (verified if smoke.error_path_result == "pass" else not_verified).append(
            f"smoke {smoke.run_id}: error path {smoke.error_path_result} (invalid credential, "
            "no retry, no billable event)")
    reconciliation = _latest_reconciliation(conn)
    if reconciliation is None:
        not_verified.append("no reconciliation against the provider's bill is recorded")
    else:
        outcome = reconciliation.get("result") or reconciliation.get("status")
        period = reconciliation.get("period_label")
        (verified if outcome == "pass" else not_verified).append(
            f"reconciliation {reconciliation.get('id')}{f' ({period})' if period else ''}: "
            f"{outcome or 'no result recorded'}")
    reviews = _reviews(conn)
    for item in reviews:
        line = f"review {item['review_id']} ({item['team_owner'] or 'no owner'}, " \
               f"{item['usage_period']}): {item['review_result'] or 'not checked'}"
        if item["review_result"] == "pass":
            verified.append(line)
        else:
            reasons = ", ".join(item["reasons"])
            not_verified.append(line + (f" ({reasons})" if reasons else ""))
    problems = check_sources(conn, moment.date())
    not_verified += [f"source {p.source_id}: {p.message} ({p.cited_by})" for p in problems]
    follow_ups = list_follow_ups(conn)
    decision = "stop" if smoke is None or smoke.happy_path_result != "pass" else (
        "review" if not_verified else "proceed")
    owner = follow_ups[0].routed_to if follow_ups else (
        smoke.follow_up_owner if smoke and smoke.follow_up_owner else "owner")
    document = {
        "reviewed_at": utc_timestamp(moment),
        "operator": actor,
        "sources_checked": [
            {"id": s.id, "url": s.url, "accessed": s.accessed.isoformat(), "purpose": s.purpose}
            for s in known_sources(conn).values()],
        "smoke_test": None if smoke is None else {
            k: v for k, v in smoke.record().items() if k != "details"},
        "reconciliation": reconciliation,
        "reviews": reviews,
        "verified": verified,
        "not_verified": [*not_verified, NOT_ASSERTED],
        "open_follow_ups": [{"id": f.id, "origin": f.origin, "about": f.origin_id,
                             "routed_to": f.routed_to, "question": f.question}
                            for f in follow_ups],
        "decision": decision,
        "next_check_owner": owner,
    }
    handoff_id = next_daily_id(conn, handoffs.c.id, "cost-handoff", moment.date())
    handoff = Handoff(handoff_id, moment, actor, document, ())
    text = render_handoff(handoff)
    refuse_secrets(f"handoff {handoff.id}", text)
    # Follow-ups are open questions, not claims: a figure there needs no source, but a secret
    # or raw content there is still a finding.
    questions = text.index("\n## Open follow-ups\n")
    first_question_line = text.count("\n", 0, questions) + 2
    findings = tuple({"code": f.code, "line": f.line, "message": f.message}
                     for f in lint(text, known_sources(conn))
                     if not (f.code.startswith("unsupported_") and f.line >= first_question_line))
    if findings and decision == "proceed":
        document["decision"] = "review"  # a flagged handoff cannot approve a budget change
    handoff = Handoff(handoff.id, moment, actor, document, findings)
    conn.execute(handoffs.insert().values(
        id=handoff.id, created_at=moment, created_by=actor, document=json.dumps(document),
        findings=json.dumps(list(findings))))
    record_change(conn, actor=actor, action="handoff.create", object_type="handoff",
                  object_id=handoff.id, after={"decision": document["decision"],
                                               "next_check_owner": owner})
    return handoff


def get_handoff(conn: sa.Connection, handoff_id: str | None = None) -> Handoff:
    """One handoff, or the latest when `handoff_id` is None."""
    query = sa.select(handoffs)
    query = (query.where(handoffs.c.id == handoff_id) if handoff_id is not None
             else query.order_by(handoffs.c.created_at.desc(), handoffs.c.id.desc()).limit(1))
    row = conn.execute(query).mappings().first()
    if row is None:
        raise EvidenceError("no handoff record yet; `spendtrail handoff new` writes one"
                            if handoff_id is None else f"no handoff {handoff_id!r}")
    return Handoff(row["id"], as_utc(row["created_at"]), row["created_by"],
                   json.loads(row["document"]), tuple(json.loads(row["findings"])))


def render_handoff(handoff: Handoff) -> str:
    d = handoff.document
    lines = [f"# Cost handoff {handoff.id}", "", "```yaml"]
    smoke = d["smoke_test"] or {}
    fields = {
        "run_id": smoke.get("run_id"), "reviewed_at": d["reviewed_at"],
        "operator": d["operator"],
        "source_urls_checked": [s["url"] for s in d["sources_checked"]],
        "workload_tag": smoke.get("workload_tag"), "owner_tag": smoke.get("owner_tag"),
        "environment": smoke.get("environment"),
        "happy_path_result": smoke.get("happy_path_result"),
        "error_path_result": smoke.get("error_path_result"),
        "evidence_captured": smoke.get("evidence_captured"), "decision": d["decision"],
        "follow_up_owner": d["next_check_owner"],
    }
    lines += [f"{name}: {json.dumps(value)}" for name, value in fields.items()]
    lines += ["```", "", "## Sources checked", ""]
    lines += [f"- {s['id']}: {s['url']} (accessed {s['accessed']}; purpose: "
              f"{s['purpose'] or 'not stated'})" for s in d["sources_checked"]] or ["- none"]
    for title, items in (("Verified", d["verified"]), ("Not verified", d["not_verified"])):
        lines += ["", f"## {title}", ""] + ([f"- {item}" for item in items] or ["- nothing"])
    lines += ["", "## Open follow-ups", ""]
    lines += [f"- #{f['id']} {f['origin']} {f['about']} -> {f['routed_to']}: {f['question']}"
              for f in d["open_follow_ups"]] or ["- none"]
    lines += ["", f"Next check owner: **{d['next_check_owner']}**"]
    if handoff.findings:
        lines += ["", "## Lint findings", ""]
        lines += [f"- line {f['line']} `{f['code']}`: {f['message']}" for f in handoff.findings]
    return "\n".join(lines) + "\n"


def _reviews(conn: sa.Connection) -> list[dict[str, Any]]:
    """The notes of the latest usage period reviewed."""
    stored = list_reviews(conn)
    if not stored:
        return []
    period = max(item.note.usage_period for item in stored)
    return [{"review_id": s.note.review_id, "usage_period": s.note.usage_period,
             "team_owner": s.note.team_owner, "review_result": s.note.review_result,
             "follow_up_owner": s.note.follow_up_owner,
             "reasons": list(s.check.codes) if s.check else []}
            for s in stored if s.note.usage_period == period]


def _latest_reconciliation(conn: sa.Connection) -> dict[str, Any] | None:
    """The newest row of the reconciliation capability's table, when it is installed."""
    if not sa.inspect(conn).has_table("reconciliations"):
        return None
    table = sa.Table("reconciliations", sa.MetaData(), autoload_with=conn)
    order = [table.c[name].desc() for name in _RECONCILIATION_ORDER if name in table.c]
    row = conn.execute(sa.select(table).order_by(*order).limit(1)).mappings().first()
    return None if row is None else {k: v if isinstance(v, (int, float, str, bool)) or v is None
                                     else str(v) for k, v in row.items()}
