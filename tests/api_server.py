"""The console API served for real: uvicorn in a thread on a loopback socket bound to port 0
(listening before the server starts, so no request has to wait for a readiness signal), and
the books the API tests read: two owners with distinct figures, users of every role."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
import uvicorn
from factories import seed_books

from spendtrail.access.roles import Role
from spendtrail.access.scope import parse_scope
from spendtrail.alerts import Alert, Owner
from spendtrail.alerts.store import record_alerts, record_attempt
from spendtrail.api.app import create_app
from spendtrail.api.settings import ApiSettings
from spendtrail.budgets import Budget, put_budget
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.gateway import create_key
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.users import add_user, create_token
from spendtrail.periods import parse_period
from spendtrail.reconcile import import_bill, reconcile

PASSWORD = "correct horse battery"


@contextmanager
def serving(engine: sa.Engine, settings: ApiSettings) -> Iterator[str]:
    """The API on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine, settings), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# The two owners whose figures must never cross: A (search-summaries, CC-100, ana.ruiz,
# consumer) and B (contract-review, CC-200, chen.wei, enterprise).
OWNER_A = {
    "application": "search-summaries",
    "cost_center": "CC-100",
    "budget_owner": "ana.ruiz",
    "business_unit": "consumer",
}
OWNER_B = {
    "application": "contract-review",
    "cost_center": "CC-200",
    "budget_owner": "chen.wei",
    "business_unit": "enterprise",
}
# B's calls cost 123,457 input and 7,777 output tokens of gpt-4o (2.50 and 10.00 per 1M):
# 0.3086425 + 0.07777 = 0.3864125 USD each, a figure nothing of A's can produce.
B_TOKENS = {"input_tokens": 123_457, "output_tokens": 7_777}
B_AMOUNTS = ("0.3864125", "0.772825")  # one call, and B's two calls


@dataclass
class Books:
    engine: sa.Engine
    home: Path
    tokens: dict[str, str] = field(default_factory=dict)  # user name -> API token
    b_event_ids: list[str] = field(default_factory=list)
    b_key_id: str = ""
    a_key_id: str = ""
    period: str = ""
    bill_id: int = 0
    run_id: int = 0


BILL_HEADER = (
    "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
    "is_stream,request_id,group"
)


def bill_text(*request_ids: str) -> str:
    """A CometAPI usage-log CSV billing one gpt-4o-mini call (1000/500 tokens) per id."""
    now = int(datetime.now(UTC).timestamp())
    rows = [f"{now},2,key,gpt-4o-mini,1000,500,225,false,{rid},default" for rid in request_ids]
    return "\n".join([BILL_HEADER, *rows]) + "\n"


def _event(context: AllocationContext, model: str, rid: str | None = None, **usage: int):
    return new_event(
        started_at=datetime.now(UTC),
        provider="cometapi",
        model_requested=model,
        context=context,
        usage=Usage(**usage),
        provider_request_id=rid,
    )


def _alert(budget_id: str, owner: dict[str, str]) -> Alert:
    return Alert(
        kind="budget_threshold",
        key=f"budget_threshold:{budget_id}:50",
        title=f"Budget {budget_id} reached 50%",
        message=f"{owner['application']} spent half of budget {budget_id}.",
        owner=Owner(**owner),
        details={"budget": budget_id, "threshold": "50%"},
    )


def console_books(engine: sa.Engine, tmp_dir: Path) -> Books:
    """The example registry and prices; two calls of A, two of B, two quarantined (of
    unknown applications, so two exception groups); a budget, a budget alert and a gateway
    key for each owner, and a company-wide alert; a user per role, with an owner user for A
    and one for B, each with an API token; a bill and its reconciliation."""
    books = Books(engine, tmp_dir / "home", period=f"{datetime.now(UTC):%Y-%m}")
    a = AllocationContext(
        application="search-summaries", environment="production", workload_class="batch"
    )
    b = AllocationContext(
        application="contract-review", environment="production", workload_class="batch"
    )
    stray = AllocationContext(application="no-such-app", environment="production")
    lost = AllocationContext(application="lost-app", environment="production")
    b_events = [_event(b, "gpt-4o", f"rb{i}", **B_TOKENS) for i in range(2)]
    books.b_event_ids = [e.event_id for e in b_events]
    with engine.begin() as conn:
        seed_books(conn, tmp_dir)
    Ingester(engine).ingest_events(
        [
            _event(a, "gpt-4o-mini", "ra0", input_tokens=1000, output_tokens=500),
            _event(a, "gpt-4o-mini", input_tokens=2000, output_tokens=100),
            *b_events,
            _event(stray, "gpt-4o-mini", input_tokens=10, output_tokens=10),
            _event(lost, "gpt-4o-mini", input_tokens=10, output_tokens=10),
        ]
    )
    with engine.begin() as conn:
        for budget_id, app in (
            ("search-monthly", "search-summaries"),
            ("contract-monthly", "contract-review"),
        ):
            put_budget(
                conn,
                Budget(
                    id=budget_id,
                    scope="application",
                    scope_value=app,
                    period="month",
                    limit_units=10**12,
                    currency="USD",
                    thresholds=(50, 80),
                ),
                actor="test",
                reason="",
            )
        raised = record_alerts(
            conn,
            [
                _alert("search-monthly", OWNER_A),
                _alert("contract-monthly", OWNER_B),
                Alert(
                    kind="prices_stale",
                    key="prices_stale:x",
                    title="2 prices stale",
                    message="Check the prices.",
                ),
            ],
            datetime.now(UTC),
        )
        attempts = ((1, "retrying", "HTTP 503"), (2, "delivered", "HTTP 200"))
        for attempt, status, response in attempts:
            record_attempt(conn, raised[0].id, "team-slack", "https://hooks.example/***",
                           attempt=attempt, at=datetime.now(UTC), status=status,
                           response=response)
        books.a_key_id = create_key(
            conn, application="search-summaries", environment="production", actor="test"
        )[0].id
        books.b_key_id = create_key(
            conn, application="contract-review", environment="production", actor="test"
        )[0].id
        for name, role, scope in (
            ("root", Role.admin, ["*"]),
            ("fin", Role.finance, ["*"]),
            ("look", Role.viewer, ["*"]),
            ("owner-a", Role.owner, ["application:search-summaries"]),
            ("owner-b", Role.owner, ["application:contract-review"]),
        ):
            add_user(
                conn,
                name=name,
                role=role,
                scope=parse_scope(scope),
                password=PASSWORD,
                actor="test",
            )
            books.tokens[name] = create_token(conn, name, name="tests", actor="test")[1]
    bill = tmp_dir / "bill.csv"
    bill.write_text(bill_text("ra0", "rb0", "rb1"))
    books.bill_id = import_bill(engine, bill, "cometapi-csv", actor="test").bill.id
    books.run_id = reconcile(
        engine,
        period=parse_period(books.period),
        bill_id=books.bill_id,
        reviewer="test",
        actor="test",
    ).id
    return books
