"""The smoke test's run log (``smoke_runs``): one record per run, the events the ledger holds
for a run, and the latest run, which the budget review and the handoff read.

Running a smoke test (a gateway on loopback, the ``openai`` SDK) is ``spendtrail.smoke``, a
composition above the gateway and the evidence; this module only reads and writes the record.
Saving a run audits it, and a run that did not proceed opens a follow-up for its owner.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from spendtrail.evidence.followups import open_follow_up
from spendtrail.evidence.store import refuse_secrets
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import cost_entries, events, smoke_runs


@dataclass(frozen=True)
class SmokeRun:
    """One run log, in the smoke test log's field order, then where it ran and what each path
    saw."""

    run_id: str
    reviewed_at: datetime
    operator: str
    source_urls_checked: tuple[str, ...]
    workload_tag: str
    owner_tag: str
    environment: str
    happy_path_result: str  # pass | fail
    error_path_result: str  # pass | fail
    evidence_captured: bool
    decision: str  # proceed | review | stop
    follow_up_owner: str | None
    upstream_url: str
    details: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.decision == "proceed"

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["reviewed_at"] = self.reviewed_at.isoformat()
        data["source_urls_checked"] = list(self.source_urls_checked)
        return data


def latest_smoke_run(conn: sa.Connection) -> SmokeRun | None:
    row = (
        conn.execute(
            sa.select(smoke_runs)
            .order_by(smoke_runs.c.reviewed_at.desc(), smoke_runs.c.run_id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    data = dict(row)
    return SmokeRun(
        **{
            **data,
            "reviewed_at": as_utc(data["reviewed_at"]),
            "source_urls_checked": tuple(json.loads(data["source_urls_checked"])),
            "details": json.loads(data["details"]),
        }
    )


def run_events(conn: sa.Connection, run_id: str) -> list[dict[str, Any]]:
    """The events the ledger holds for a run (its job id), with their current cost."""
    e, c = events.c, cost_entries.c
    rows = conn.execute(
        sa.select(
            e.event_id,
            e.outcome,
            e.http_status,
            e.allocation_status,
            e.application,
            e.environment,
            e.workload_class,
            c.status,
            c.amount_pico,
            c.currency,
        )
        .select_from(
            events.outerjoin(cost_entries, sa.and_(c.event_id == e.event_id, is_current()))
        )
        .where(e.job_id == run_id)
        .order_by(e.started_at)
    )
    return [
        {
            "event_id": r.event_id,
            "outcome": r.outcome,
            "attempt_status": r.http_status,
            "allocation_status": r.allocation_status,
            "application": r.application,
            "environment": r.environment,
            "workload_class": r.workload_class,
            "cost_status": r.status,
            "cost_pico": r.amount_pico,
            "currency": r.currency,
        }
        for r in rows
    ]


def save_smoke_run(conn: sa.Connection, run: SmokeRun) -> None:
    """Store and audit a run; one that did not proceed opens a follow-up for its owner."""
    record = run.record()
    refuse_secrets(f"smoke run {run.run_id}", json.dumps(record, default=str))
    conn.execute(
        smoke_runs.insert().values(
            **{
                **record,
                "reviewed_at": run.reviewed_at,
                "source_urls_checked": json.dumps(record["source_urls_checked"]),
                "details": json.dumps(run.details, default=str),
            }
        )
    )
    record_change(
        conn,
        actor=run.operator,
        action="smoke.run",
        object_type="smoke_run",
        object_id=run.run_id,
        after=record,
        reason=f"decision {run.decision}",
    )
    if run.follow_up_owner is not None:
        open_follow_up(
            conn,
            origin="smoke",
            origin_id=run.run_id,
            routed_to=run.follow_up_owner,
            actor=run.operator,
            question=f"smoke test: happy path {run.happy_path_result}, error path "
            f"{run.error_path_result}, evidence captured {run.evidence_captured}",
        )
