"""End to end: the real openai SDK through the gateway to the provider simulator, the spool
ingested, the simulator's CometAPI usage log imported as the bill, and the books close."""

from __future__ import annotations

from datetime import UTC, datetime

import openai
import pytest
from test_gateway import Gateway, seed

from spendtrail.gateway import GatewayConfig, GatewayServer
from spendtrail.ledger.db import make_engine, migrate
from spendtrail.ledger.ingest import Ingester
from spendtrail.periods import parse_period
from spendtrail.reconcile import import_bill, parse_tolerance, reconcile
from spendtrail.simulator import SimulatorConfig, serve_in_thread

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a story"}]}
SEARCH = {"X-Spendtrail-Environment": "production", "X-Spendtrail-Workload": "batch"}


def test_gateway_traffic_reconciles_with_the_provider_log(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    keys = seed(engine, tmp_path)
    log, spool = tmp_path / "provider-log.csv", tmp_path / "spool"
    with serve_in_thread(SimulatorConfig(usage_log=log)) as upstream:
        server = GatewayServer(GatewayConfig(
            upstream_url=upstream, upstream_key="sk-simulated-upstream-key", provider="cometapi",
            ledger_url=url, spool_dir=spool))
        gw = Gateway(server, server.start(), spool)
        try:
            support, search = gw.client(keys["prod"]), gw.client(keys["any_env"])
            support.chat.completions.create(**CHAT)
            support.chat.completions.create(**CHAT)
            search.chat.completions.create(**CHAT, extra_headers=SEARCH)
            list(search.chat.completions.create(**CHAT, stream=True, extra_headers=SEARCH))
            with pytest.raises(openai.InternalServerError):
                support.chat.completions.create(
                    **CHAT, extra_headers={"X-Simulator-Fault": "error_500"})
            gw.events(5)
        finally:
            server.stop()
    assert Ingester(engine).ingest_spool(spool).inserted == 5

    bill = import_bill(engine, log, "cometapi-csv", actor="ana").bill
    assert (bill.line_count, bill.error_count) == (5, 0)
    today = parse_period(datetime.now(UTC).date().isoformat())
    # Five tiny calls: the log's rounding to whole quota units is a few % of their total.
    record = reconcile(engine, period=today, bill_id=bill.id, reviewer="Ben", actor="ana",
                       tolerance=parse_tolerance("5%"))
    assert [d.kind for d in record.differences] == ["error_billed"]
    assert record.counts["matched"] == 5
    assert abs(record.variance_pico) <= 4 * 2_000_000  # the log's whole-quota rounding
    assert record.result == "pass", record.reasons
    owners = {o.owner: o for o in record.owners}
    assert set(owners) == {"support-assistant", "search-summaries"}
    assert owners["support-assistant"].events == 3
    assert sum(o.billed_pico for o in record.owners) == record.billed_pico
    engine.dispose()
