"""`spendtrail bills fetch`: each provider's bill API paged from the stored cursor against a
double that follows the provider's paging and error shapes, with a 429 in the middle, a
resumed cursor and nothing stored twice; and `reconcile --daily` over the fetched days."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import openai
import pytest
import sqlalchemy as sa
from bill_api_doubles import (
    BucketApi,
    Fault,
    Faults,
    NewApiLog,
    anthropic_error,
    new_api_error,
    openai_error,
    serve_app,
)
from factories import SHEET
from typer.testing import CliRunner

from spendtrail.cli.app import app as cli
from spendtrail.connectors import FetchError, Retrying, fetch_bills
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import audit_log, bill_fetch_cursors, bill_imports, bill_lines
from spendtrail.money import from_pico
from spendtrail.periods import parse_period
from spendtrail.pricing import load_sheet
from spendtrail.simulator.app import make_app
from spendtrail.simulator.config import SimulatorConfig

KEY = "sk-admin-secret-0123456789"
FAST = Retrying(attempts=4, backoff=0.01, timeout=10)
OCTOBER = parse_period("2026-10")
DAY = date(2026, 10, 1)


def _day(n: int) -> date:
    return DAY + timedelta(days=n - 1)


def _now(n: int) -> datetime:
    """Some time on day n of October 2026: days before it are closed."""
    return datetime(2026, 10, n, 9, tzinfo=UTC)


def _openai_cost(value: str, line_item: str) -> dict:
    return {
        "object": "organization.costs.result",
        "amount": {"value": Decimal(value), "currency": "usd"},
        "line_item": line_item,
        "project_id": "proj_search",
    }


def _openai_usage(tokens: int) -> dict:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": tokens,
        "output_tokens": tokens // 2,
        "input_cached_tokens": 0,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": 3,
        "project_id": "proj_search",
        "user_id": None,
        "api_key_id": "key_abc",
        "model": "gpt-4o-mini",
        "batch": None,
    }


def _bills(ledger) -> list[dict]:
    with ledger.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(sa.select(bill_imports).order_by(bill_imports.c.id))
        ]


def _billed(ledger, bill_format: str) -> Decimal:
    query = (
        sa.select(sa.func.sum(bill_lines.c.amount_pico))
        .join(bill_imports, bill_imports.c.id == bill_lines.c.import_id)
        .where(bill_imports.c.format == bill_format)
    )
    with ledger.connect() as conn:
        return from_pico(conn.execute(query).scalar() or 0)


@pytest.fixture
def openai_api():
    costs = {_day(n): [_openai_cost(f"0.{n}0", "gpt-4o-mini, input")] for n in (1, 2, 3)}
    usage = {_day(n): [_openai_usage(1000 * n)] for n in (1, 2, 3)}
    api = BucketApi(
        "openai",
        KEY,
        {"/v1/organization/costs": costs, "/v1/organization/usage/completions": usage},
    )
    faults = Faults("/v1/organization", openai_error, at={2: Fault(429, {"Retry-After": "1"})})
    with serve_app(api.app(faults)) as url:
        yield api, faults, url


def test_openai_pages_a_429_in_the_middle_and_a_resumed_cursor(ledger, tmp_path, openai_api):
    api, faults, url = openai_api
    started = time.monotonic()
    first = fetch_bills(
        ledger,
        "openai",
        OCTOBER,
        key=KEY,
        actor="ana",
        out_dir=tmp_path,
        base_url=url,
        now=_now(4),
        page_size=2,
        retrying=FAST,
    )
    assert time.monotonic() - started >= 1  # the Retry-After of the 429 was waited out
    # Three closed days at two buckets a page: two pages per report, the 429 tried again.
    assert (first.counts.requests, first.counts.retries) == (5, 1)
    assert [q.get("page") is not None for _, q in faults.seen] == [False, True, True, False, True]
    assert (first.first, first.through) == (_day(1), _day(3))
    bills = _bills(ledger)
    assert [(b["format"], b["first_day"], b["last_day"], b["line_count"]) for b in bills] == [
        (f, _day(n), _day(n), 1) for n in (1, 2, 3) for f in ("openai-costs", "openai-usage")
    ]
    assert {b["provider"] for b in bills} == {"openai"}
    assert _billed(ledger, "openai-costs") == Decimal("0.60")

    # Two more days arrive; the next fetch asks from the day after the cursor, only.
    api.reports["/v1/organization/costs"].update(
        {_day(n): [_openai_cost("1.25", "gpt-4o, output")] for n in (4, 5)}
    )
    api.reports["/v1/organization/usage/completions"].update(
        {_day(n): [_openai_usage(10)] for n in (4, 5)}
    )
    seen_before = len(faults.seen)
    second = fetch_bills(
        ledger,
        "openai",
        OCTOBER,
        key=KEY,
        actor="ana",
        out_dir=tmp_path,
        base_url=url,
        now=_now(6),
        page_size=2,
        retrying=FAST,
    )
    asked = faults.seen[seen_before:]
    assert {q["start_time"] for _, q in asked} == {
        str(int(datetime(2026, 10, 4, tzinfo=UTC).timestamp()))
    }
    assert (second.first, second.through, len(second.bills)) == (_day(4), _day(5), 4)
    assert len(_bills(ledger)) == 10
    assert _billed(ledger, "openai-costs") == Decimal("3.10")  # 0.60 + 2 x 1.25, none twice
    assert all(h["Authorization"] == f"Bearer {KEY}" for h in faults.headers)


def test_nothing_is_stored_twice_when_the_cursor_is_lost(ledger, tmp_path, openai_api):
    _, _, url = openai_api
    fetch_bills(
        ledger,
        "openai",
        OCTOBER,
        key=KEY,
        actor="ana",
        out_dir=tmp_path,
        base_url=url,
        now=_now(4),
        retrying=FAST,
    )
    with ledger.begin() as conn:  # as if a fetch had stopped before moving the cursor
        conn.execute(bill_fetch_cursors.delete())
    again = fetch_bills(
        ledger,
        "openai",
        OCTOBER,
        key=KEY,
        actor="ana",
        out_dir=tmp_path,
        base_url=url,
        now=_now(4),
        retrying=FAST,
    )
    assert again.bills == [] and len(again.already_stored) == 6
    assert len(_bills(ledger)) == 6 and _billed(ledger, "openai-costs") == Decimal("0.60")
    assert again.through == _day(3)


def test_a_fetch_that_would_skip_unfetched_days_is_refused(ledger, tmp_path, openai_api):
    _, faults, url = openai_api
    fetch_bills(
        ledger,
        "openai",
        parse_period("2026-10-01"),
        key=KEY,
        actor="ana",
        out_dir=tmp_path,
        base_url=url,
        now=_now(4),
        retrying=FAST,
    )
    asked = len(faults.seen)
    with pytest.raises(FetchError, match="start the period at 2026-10-02"):
        fetch_bills(
            ledger,
            "openai",
            parse_period("2026-10-03"),
            key=KEY,
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=_now(4),
            retrying=FAST,
        )
    assert len(faults.seen) == asked and len(_bills(ledger)) == 2


def test_open_days_are_not_fetched(ledger, tmp_path, openai_api):
    _, faults, url = openai_api
    result = fetch_bills(
        ledger,
        "openai",
        parse_period("2026-10-04..2026-10-09"),
        key=KEY,
        actor="ana",
        out_dir=tmp_path,
        base_url=url,
        now=_now(4),
        retrying=FAST,
    )
    assert (result.first, result.bills, faults.seen) == (None, [], [])


def test_attempts_are_bounded_and_a_failed_fetch_is_audited(ledger, tmp_path, openai_api):
    _, faults, url = openai_api
    faults.always = Fault(503)
    with pytest.raises(FetchError, match=r"HTTP 503 after 4 attempts: server_error"):
        fetch_bills(
            ledger,
            "openai",
            OCTOBER,
            key=KEY,
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=_now(4),
            retrying=FAST,
        )
    assert len(faults.seen) == 4 and _bills(ledger) == []
    with ledger.connect() as conn:
        assert conn.execute(sa.select(bill_fetch_cursors)).first() is None
        audit = conn.execute(sa.select(audit_log.c.action, audit_log.c.after)).all()
    assert [a for a, _ in audit] == ["bills.fetch"]
    assert "HTTP 503" in audit[0].after and KEY not in audit[0].after


def test_a_refused_key_is_not_retried_and_never_shown(ledger, tmp_path, openai_api):
    _, faults, url = openai_api
    with pytest.raises(FetchError, match="HTTP 401") as caught:
        fetch_bills(
            ledger,
            "openai",
            OCTOBER,
            key="sk-admin-wrong-key",
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=_now(4),
            retrying=FAST,
        )
    assert len(faults.seen) == 1 and "sk-admin-wrong-key" not in str(caught.value)
    assert "Incorrect API key provided: <redacted>" in str(caught.value)


def _anthropic_cost(cents: str) -> dict:
    return {
        "currency": "USD",
        "amount": cents,
        "workspace_id": "wrkspc_search",
        "description": "Claude Sonnet 4 Usage - Input Tokens",
        "cost_type": "tokens",
        "context_window": "0-200k",
        "model": "claude-sonnet-4-20250514",
        "service_tier": "standard",
        "token_type": "uncached_input_tokens",
    }


def _anthropic_usage(tokens: int) -> dict:
    return {
        "uncached_input_tokens": tokens,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": tokens // 4,
        "server_tool_use": {"web_search_requests": 0},
        "api_key_id": "apikey_01",
        "workspace_id": "wrkspc_search",
        "model": "claude-sonnet-4-20250514",
        "service_tier": "standard",
        "context_window": "0-200k",
    }


def test_anthropic_pages_with_429_and_overload_and_resumes(ledger, tmp_path):
    costs = {_day(n): [_anthropic_cost("150.5")] for n in (1, 2, 3)}
    usage = {_day(n): [_anthropic_usage(400)] for n in (1, 2, 3)}
    api = BucketApi(
        "anthropic",
        KEY,
        {"/v1/organizations/cost_report": costs, "/v1/organizations/usage_report/messages": usage},
    )
    faults = Faults(
        "/v1/organizations",
        anthropic_error,
        at={2: Fault(429, {"retry-after": "0"}), 4: Fault(529)},
    )
    with serve_app(api.app(faults)) as url:
        first = fetch_bills(
            ledger,
            "anthropic",
            OCTOBER,
            key=KEY,
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=_now(4),
            page_size=2,
            retrying=FAST,
        )
        assert (first.counts.requests, first.counts.retries) == (6, 2)
        assert _billed(ledger, "anthropic-cost") == Decimal("4.515")  # 3 x 150.5 cents
        query = faults.seen[0][1]
        assert (query["starting_at"], query["ending_at"]) == (
            "2026-10-01T00:00:00Z",
            "2026-10-04T00:00:00Z",
        )
        assert all(h["x-api-key"] == KEY and h["anthropic-version"] for h in faults.headers)
        costs[_day(4)] = [_anthropic_cost("100")]
        usage[_day(4)] = [_anthropic_usage(8)]
        seen_before = len(faults.seen)
        second = fetch_bills(
            ledger,
            "anthropic",
            OCTOBER,
            key=KEY,
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=_now(5),
            page_size=2,
            retrying=FAST,
        )
    assert {q["starting_at"] for _, q in faults.seen[seen_before:]} == {"2026-10-04T00:00:00Z"}
    assert [b.format for b in second.bills] == ["anthropic-cost", "anthropic-usage"]
    assert _billed(ledger, "anthropic-cost") == Decimal("5.515")
    with ledger.connect() as conn:
        tokens = conn.execute(sa.select(sa.func.sum(bill_lines.c.input_tokens))).scalar()
    assert tokens == 3 * 400 + 8


def test_cometapi_pages_the_simulators_log_with_a_429_and_resumes(ledger, tmp_path):
    """The provider simulator's `/api/log/self` is the CometAPI double."""
    config = SimulatorConfig(
        access_token="acc-token", keys={"sk-sim-app": "team-a"}, usage_log=tmp_path / "usage.csv"
    )
    faults = Faults("/api/log", new_api_error, at={2: Fault(429, {"Retry-After": "0"})})
    app = make_app(config)
    app.middlewares.append(faults.middleware)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-sim-app", max_retries=0)
        ids = {
            client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"hello {n}"}],
                max_tokens=5,
            ).headers["X-Oneapi-Request-Id"]
            for n in range(5)
        }
        today = datetime.now(UTC)
        period = parse_period(f"{today:%Y-%m-%d}..{today + timedelta(days=2):%Y-%m-%d}")
        nothing = fetch_bills(
            ledger,
            "cometapi",
            period,
            key="acc-token",
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=today,
            retrying=FAST,
        )
        assert nothing.first is None and faults.seen == []  # today is not closed yet
        first = fetch_bills(
            ledger,
            "cometapi",
            period,
            key="acc-token",
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=today + timedelta(days=1),
            page_size=2,
            retrying=FAST,
        )
        # 5 rows, 2 a page: pages 1, 2 (a 429, then again), 3.
        assert [q["p"] for _, q in faults.seen] == ["1", "2", "2", "3"]
        assert first.counts.retries == 1 and [b.line_count for b in first.bills] == [5]
        with ledger.connect() as conn:
            billed = {r for (r,) in conn.execute(sa.select(bill_lines.c.provider_request_id))}
        assert billed == ids
        seen_before = len(faults.seen)
        second = fetch_bills(
            ledger,
            "cometapi",
            period,
            key="acc-token",
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=today + timedelta(days=2),
            page_size=2,
            retrying=FAST,
        )
    tomorrow = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert [q["start_timestamp"] for _, q in faults.seen[seen_before:]] == [
        str(int(tomorrow.timestamp()))
    ]
    assert second.bills == [] and second.through == today.date() + timedelta(days=1)
    assert len(_bills(ledger)) == 1


def _event(rid: str, at: datetime):
    return new_event(
        started_at=at,
        provider="cometapi",
        model_requested="gpt-4o-mini",
        provider_request_id=rid,
        context=AllocationContext(
            application="search-summaries", environment="production", workload_class="batch"
        ),
        usage=Usage(input_tokens=1000, output_tokens=500),
    )


def _log_row(row_id: int, rid: str, at: datetime, quota: int) -> dict:
    return {
        "id": row_id,
        "created_at": int(at.timestamp()),
        "type": 2,
        "content": "",
        "token_name": "cc-100-search",
        "model_name": "gpt-4o-mini",
        "quota": quota,
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "use_time": 1,
        "is_stream": False,
        "group": "default",
        "request_id": rid,
        "other": "{}",
    }


def test_reconcile_daily_judges_each_fetched_day_once(cli_ledger, tmp_path, monkeypatch):
    """1000 + 500 tokens of gpt-4o-mini cost 0.00045 USD (225 quota): day 5 is billed that,
    day 6 is billed 300 quota (0.0006 USD), 25% over the ledger."""
    from spendtrail.ledger.prices import add_entries

    sheet = tmp_path / "prices.yaml"
    sheet.write_text(SHEET)
    with cli_ledger.begin() as conn:
        add_entries(conn, load_sheet(sheet), actor="test")
    five, six = datetime(2026, 10, 5, 12, tzinfo=UTC), datetime(2026, 10, 6, 12, tzinfo=UTC)
    Ingester(cli_ledger).ingest_events([_event("r5", five), _event("r6", six)])
    log = NewApiLog("acc-token", [_log_row(1, "r5", five, 225), _log_row(2, "r6", six, 300)])
    with serve_app(log.app(Faults("/api/log", new_api_error))) as url:
        fetch_bills(
            cli_ledger,
            "cometapi",
            OCTOBER,
            key="acc-token",
            actor="ana",
            out_dir=tmp_path,
            base_url=url,
            now=_now(7),
            retrying=FAST,
        )
    runner = CliRunner()
    args = ["reconcile", "--daily", "--bill-source", "cometapi", "--reviewer", "Ben"]
    done = runner.invoke(cli, args)
    assert done.exit_code == 1, done.output
    assert "2026-10-05 cometapi: pass" in done.stdout
    failed = [line for line in done.stderr.splitlines() if line.startswith("reconcile:")]
    assert failed == [
        "reconcile: 2026-10-06 cometapi variance -0.00015 USD (-25.0000%) is "
        "over the tolerance of 1% (reconciliation 2)"
    ]
    no_source = runner.invoke(cli, ["reconcile", "--daily", "--reviewer", "Ben"])
    assert no_source.exit_code == 2 and "--daily takes --bill-source" in no_source.stderr
    again = runner.invoke(cli, args)  # each day is judged once
    assert again.exit_code == 0 and "no closed day" in again.stdout


def test_fetch_command_reads_the_key_from_the_environment(cli_ledger, tmp_path, monkeypatch):
    log = NewApiLog("acc-token", [_log_row(1, "r1", datetime(2026, 10, 5, tzinfo=UTC), 10)])
    faults = Faults("/api/log", new_api_error)
    runner = CliRunner()
    with serve_app(log.app(faults)) as url:
        args = [
            "bills",
            "fetch",
            "cometapi",
            "--period",
            "2026-10-01..2026-10-06",
            "--base-url",
            url,
            "--out",
            str(tmp_path),
        ]
        missing = runner.invoke(cli, args)
        assert missing.exit_code == 2 and "set COMETAPI_ACCESS_TOKEN" in missing.stderr
        monkeypatch.setenv("COMETAPI_ACCESS_TOKEN", "acc-token")
        done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "fetched 2026-10-01..2026-10-06" in done.stdout and "1 lines" in done.stdout
    assert "acc-token" not in done.output
    with cli_ledger.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(sa.select(audit_log)) for v in row)
    assert "bills.fetch" in stored and "acc-token" not in stored
