"""Reconciling interrupted events (the gateway stopped before the provider answered) against
a CometAPI log: matched by request id or by model and time, priced from the bill, owned as
the intent said; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from factories import AT

from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.periods import parse_period
from spendtrail.reconcile import UNATTRIBUTED, import_bill, reconcile

OCTOBER = parse_period("2026-10")
HEADER = (
    "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
    "is_stream,request_id,group"
)
QUOTA = 225  # 1000 input + 500 output tokens of gpt-4o-mini: 0.00045 USD
PICO_PER_QUOTA = 2_000_000


def _event(rid: str | None, app: str, *, interrupted: bool = False, at: datetime = AT):
    return new_event(
        started_at=at,
        provider="cometapi",
        model_requested="gpt-4o-mini",
        provider_request_id=rid,
        outcome="interrupted" if interrupted else "success",
        context=AllocationContext(
            application=app, environment="production", workload_class="batch"
        ),
        usage=Usage() if interrupted else Usage(input_tokens=1000, output_tokens=500),
    )


def _row(rid: str, at: datetime = AT, quota: int = QUOTA) -> str:
    return f"{int(at.timestamp())},2,cc-100-search,gpt-4o-mini,1000,500,{quota},false,{rid},default"


def _reconcile(ledger, tmp_path: Path, items, rows: list[str]):
    assert Ingester(ledger).ingest_events(items).inserted == len(items)
    path = tmp_path / "bill.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    bill = import_bill(ledger, path, "cometapi-csv", actor="ana").bill
    return reconcile(
        ledger,
        period=OCTOBER,
        bill_id=bill.id,
        reviewer="Ben Okafor",
        actor="ana",
        tolerance=Decimal("0.01"),
    )


def test_interrupted_events_are_priced_from_their_bill_lines(seeded, tmp_path):
    good = [_event(f"ok-{n}", "search-summaries") for n in range(4)]
    by_id = _event("stream-1", "contract-review", interrupted=True)
    by_time = _event(None, "contract-review", interrupted=True, at=AT + timedelta(minutes=1))
    record = _reconcile(
        seeded,
        tmp_path,
        [*good, by_id, by_time],
        [
            *(_row(f"ok-{n}") for n in range(4)),
            _row("stream-1", quota=300),
            _row("blind-1", at=AT + timedelta(minutes=1, seconds=4), quota=400),
        ],
    )
    kinds = Counter(d.kind for d in record.differences)
    assert kinds == {"interrupted": 2}  # no billed_not_in_ledger, no token_mismatch
    found = {d.event_id: d for d in record.differences}
    assert (
        found[by_id.event_id].provider_request_id,
        found[by_id.event_id].owner,
        found[by_id.event_id].logged_pico,
    ) == ("stream-1", "contract-review", 300 * PICO_PER_QUOTA)
    assert (
        found[by_time.event_id].provider_request_id,
        found[by_time.event_id].owner,
        found[by_time.event_id].logged_pico,
    ) == ("blind-1", "contract-review", 400 * PICO_PER_QUOTA)
    owners = {o.owner: o for o in record.owners}
    assert UNATTRIBUTED not in owners
    assert (
        owners["contract-review"].billed_pico
        == owners["contract-review"].logged_pico
        == (700 * PICO_PER_QUOTA)
    )
    assert (record.counts["unpriced_events"], record.counts["matched"]) == (0, 6)
    assert record.variance_pico == 4 * (QUOTA * PICO_PER_QUOTA - 450_000_000)
    assert record.result == "pass"


def test_an_interrupted_event_without_a_bill_line_stays_unpriced(seeded, tmp_path):
    good = [_event(f"ok-{n}", "search-summaries") for n in range(4)]
    stopped = _event(None, "contract-review", interrupted=True)
    record = _reconcile(
        seeded,
        tmp_path,
        [*good, stopped],
        [
            *(_row(f"ok-{n}") for n in range(4)),
            # the same model, but stamped outside the window after the call started
            _row("late-1", at=AT + timedelta(minutes=11)),
        ],
    )
    kinds = Counter(d.kind for d in record.differences)
    assert kinds == {"billed_not_in_ledger": 1, "in_ledger_not_billed": 1}
    [unbilled] = [d for d in record.differences if d.kind == "in_ledger_not_billed"]
    assert (unbilled.event_id, unbilled.owner, unbilled.logged_pico) == (
        stopped.event_id,
        "contract-review",
        None,
    )
    assert record.counts["unpriced_events"] == 1
    assert record.result == "inconclusive"
    assert any("1 events in the period are unpriced" in r for r in record.reasons)


def test_one_bill_line_completes_one_interrupted_event(seeded, tmp_path):
    first = _event(None, "search-summaries", interrupted=True)
    second = _event(None, "contract-review", interrupted=True, at=AT + timedelta(seconds=2))
    record = _reconcile(seeded, tmp_path, [first, second], [_row("only-1", at=AT)])
    kinds = Counter(d.kind for d in record.differences)
    assert kinds == {"interrupted": 1, "in_ledger_not_billed": 1}
    [matched] = [d for d in record.differences if d.kind == "interrupted"]
    assert (matched.event_id, matched.owner) == (first.event_id, "search-summaries")
    assert record.counts["unpriced_events"] == 1
