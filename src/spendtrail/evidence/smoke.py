"""The seeds' smoke test, through the real request path: a gateway on loopback in front of the
provider (or the simulator), the official ``openai`` SDK as the client.

Happy path: one minimal request tagged with a workload and the run id, made with a gateway key
issued for the run, must complete and leave exactly one allocated, priced event in the ledger.
Error path: one request with a deliberately invalid credential must fail with a clear 401,
with no retry (the client's retries are off and the gateway counts one refusal) and no event.
The run log holds the seeds' fields; the key is revoked when the run ends.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from spendtrail.evidence.followups import open_follow_up
from spendtrail.evidence.store import load_sources, next_daily_id, refuse_secrets
from spendtrail.gateway import GatewayConfig, create_key, revoke_key
from spendtrail.gateway.identity import H_JOB_ID, H_WORKLOAD
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import cost_entries, events, smoke_runs
from spendtrail.redact import redact

if TYPE_CHECKING:
    import openai

# Shaped like a gateway key so the gateway, not a format check, refuses it.
INVALID_CREDENTIAL = "sk-st-invalid-smoke-credential"
_REJECTED = re.compile(r'^spendtrail_gateway_rejected_total\{code="invalid_api_key"\} (\d+)$',
                       re.M)


@dataclass(frozen=True)
class SmokeOptions:
    upstream_url: str
    upstream_key: str = field(repr=False)
    application: str
    environment: str
    workload: str
    operator: str
    provider: str = "cometapi"
    model: str = "gpt-4o-mini"
    timeout: float = 60.0


@dataclass(frozen=True)
class SmokeRun:
    """One run log, in the seeds' field order, then where it ran and what each path saw."""

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


def run_smoke(engine: sa.Engine, ledger_url: str, options: SmokeOptions, work_dir: Path
              ) -> SmokeRun:
    """Run both paths against `options.upstream_url` and record the run log."""
    started = datetime.now(UTC).replace(microsecond=0)
    spool = work_dir / "spool"
    with engine.begin() as conn:
        run_id = next_daily_id(conn, smoke_runs.c.run_id, "smoke", started.date())
        key, value = create_key(conn, application=options.application,
                                environment=options.environment, actor=options.operator,
                                reason=f"smoke test {run_id}")
        urls = tuple(item.source.url for item in load_sources(conn))
    from spendtrail.gateway.app import GatewayServer  # aiohttp: only when a smoke test runs

    server = GatewayServer(GatewayConfig(
        upstream_url=options.upstream_url, upstream_key=options.upstream_key,
        provider=options.provider, ledger_url=ledger_url, spool_dir=spool))
    try:
        base = server.start() + "/v1"
        happy = _happy_path(base, value, run_id, options)
        error = _error_path(base, run_id, options)
        error["gateway_refusals"] = _refusals(base)
    finally:
        server.stop()
        with engine.begin() as conn:
            revoke_key(conn, key.id, actor=options.operator, reason=f"smoke test {run_id} ended")
    report = Ingester(engine).ingest_spool(spool)
    with engine.connect() as conn:
        recorded = _events(conn, run_id)
    captured = (len(recorded) == 1 and recorded[0]["outcome"] == "success"
                and recorded[0]["allocation_status"] == "allocated"
                and recorded[0]["cost_status"] == "priced")
    happy_ok = happy["completed"] and captured
    error_ok = (error["status"] == 401 and error["gateway_refusals"] == 1
                and all(e["attempt_status"] != 401 for e in recorded) and len(recorded) <= 1)
    decision = "proceed" if happy_ok and error_ok else ("stop" if not happy_ok else "review")
    problems = _problems(happy, error, recorded)
    run = SmokeRun(
        run_id=run_id, reviewed_at=started, operator=options.operator, source_urls_checked=urls,
        workload_tag=options.workload, owner_tag=options.application,
        environment=options.environment, happy_path_result="pass" if happy_ok else "fail",
        error_path_result="pass" if error_ok else "fail", evidence_captured=captured,
        decision=decision, follow_up_owner=None if decision == "proceed" else "platform lead",
        upstream_url=options.upstream_url,
        details={"happy_path": happy, "error_path": error, "events": recorded,
                 "problems": problems,
                 "ingested": report.inserted, "gateway_key": key.id},
    )
    with engine.begin() as conn:
        _save(conn, run)
    return run


def latest_smoke_run(conn: sa.Connection) -> SmokeRun | None:
    row = conn.execute(sa.select(smoke_runs).order_by(smoke_runs.c.reviewed_at.desc(),
                                                      smoke_runs.c.run_id.desc()).limit(1)
                       ).mappings().first()
    if row is None:
        return None
    data = dict(row)
    return SmokeRun(**{**data, "reviewed_at": as_utc(data["reviewed_at"]),
                       "source_urls_checked": tuple(json.loads(data["source_urls_checked"])),
                       "details": json.loads(data["details"])})


def _happy_path(base: str, key: str, run_id: str, options: SmokeOptions) -> dict[str, Any]:
    import openai  # the SDK is heavy to import: only the smoke test itself pays for it

    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=options.timeout)
    try:
        client.chat.completions.create(
            model=options.model, max_tokens=5,
            messages=[{"role": "user", "content": "Reply with OK."}],
            extra_headers={H_WORKLOAD: options.workload, H_JOB_ID: run_id})
    except openai.APIError as exc:
        return {"completed": False, "error": _error_text(exc)}
    return {"completed": True, "error": None}


def _error_path(base: str, run_id: str, options: SmokeOptions) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=base, api_key=INVALID_CREDENTIAL, max_retries=0,
                           timeout=options.timeout)
    try:
        client.chat.completions.create(
            model=options.model, max_tokens=5,
            messages=[{"role": "user", "content": "Reply with OK."}],
            extra_headers={H_WORKLOAD: options.workload, H_JOB_ID: run_id})
    except openai.APIStatusError as exc:
        return {"status": exc.status_code, "error": _error_text(exc)}
    except openai.APIError as exc:
        return {"status": None, "error": _error_text(exc)}
    return {"status": 200, "error": "the invalid credential was accepted"}


def _refusals(base: str) -> int | None:
    """How many invalid-key refusals the gateway counted: one means the client did not retry."""
    metrics_url = base.removesuffix("/v1") + "/metrics"
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        found = _REJECTED.search(response.read().decode())
    return int(found[1]) if found else None


def _problems(happy: dict[str, Any], error: dict[str, Any],
              recorded: list[dict[str, Any]]) -> list[str]:
    """Why a path failed, in words an operator can act on; empty when both passed."""
    found = []
    if not happy["completed"]:
        found.append(f"happy path: the request failed: {happy['error']}")
    successes = [e for e in recorded if e["outcome"] == "success"]
    if happy["completed"] and len(successes) != 1:
        found.append(f"happy path: {len(successes)} successful events in the ledger, not 1")
    for e in successes[:1]:
        if e["allocation_status"] != "allocated":
            found.append(f"happy path: the event is {e['allocation_status']}, not allocated")
        if e["cost_status"] != "priced":
            found.append(f"happy path: the event is {e['cost_status'] or 'not costed'}, not "
                         "priced; is the model in the price catalog for this provider?")
    if error["status"] != 401:
        found.append(f"error path: expected a 401, got {error['status']}: {error['error']}")
    if error["gateway_refusals"] != 1:
        found.append(f"error path: the gateway refused {error['gateway_refusals']} times, not "
                     "once (a retry?)")
    if len(recorded) > len(successes[:1]):
        found.append(f"{len(recorded)} events recorded for the run; expected only the happy "
                     "path's")
    return found


def _error_text(exc: openai.APIError) -> str:
    return redact(f"{type(exc).__name__}: {exc.message}")


def _events(conn: sa.Connection, run_id: str) -> list[dict[str, Any]]:
    e, c = events.c, cost_entries.c
    rows = conn.execute(
        sa.select(e.event_id, e.outcome, e.http_status, e.allocation_status, e.application,
                  e.environment, e.workload_class, c.status, c.amount_pico, c.currency)
        .select_from(events.outerjoin(cost_entries,
                                      sa.and_(c.event_id == e.event_id, is_current())))
        .where(e.job_id == run_id).order_by(e.started_at)
    )
    return [{"event_id": r.event_id, "outcome": r.outcome, "attempt_status": r.http_status,
             "allocation_status": r.allocation_status, "application": r.application,
             "environment": r.environment, "workload_class": r.workload_class,
             "cost_status": r.status, "cost_pico": r.amount_pico, "currency": r.currency}
            for r in rows]


def _save(conn: sa.Connection, run: SmokeRun) -> None:
    record = run.record()
    refuse_secrets(f"smoke run {run.run_id}", json.dumps(record, default=str))
    conn.execute(smoke_runs.insert().values(
        **{**record, "reviewed_at": run.reviewed_at,
           "source_urls_checked": json.dumps(record["source_urls_checked"]),
           "details": json.dumps(run.details, default=str)}))
    record_change(conn, actor=run.operator, action="smoke.run", object_type="smoke_run",
                  object_id=run.run_id, after=record, reason=f"decision {run.decision}")
    if run.follow_up_owner is not None:
        open_follow_up(conn, origin="smoke", origin_id=run.run_id, routed_to=run.follow_up_owner,
                       actor=run.operator,
                       question=f"smoke test: happy path {run.happy_path_result}, error path "
                       f"{run.error_path_result}, evidence captured {run.evidence_captured}")
