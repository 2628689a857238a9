"""The gateway in front of the project's provider simulator: every call in the provider's
usage log is matched by one event, line by line, through X-Oneapi-Request-Id."""

from __future__ import annotations

import csv

import openai
import pytest
from test_gateway import Gateway, seed

from spendtrail.gateway import GatewayConfig, GatewayServer
from spendtrail.ledger.db import make_engine, migrate
from spendtrail.simulator import SimulatorConfig, serve_in_thread

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a story"}]}


def test_events_match_the_provider_log(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    keys = seed(engine, tmp_path)
    engine.dispose()
    log = tmp_path / "provider-log.csv"
    with serve_in_thread(SimulatorConfig(usage_log=log, cut_after_chunks=2)) as upstream:
        server = GatewayServer(GatewayConfig(
            upstream_url=upstream, upstream_key="sk-simulated-upstream-key", provider="cometapi",
            ledger_url=url, spool_dir=tmp_path / "spool"))
        gw = Gateway(server, server.start(), tmp_path / "spool")
        try:
            client = gw.client(keys["prod"])
            client.chat.completions.create(**CHAT)
            chunks = list(client.chat.completions.create(**CHAT, stream=True))
            assert all(chunk.choices for chunk in chunks)
            client.responses.create(model="gpt-4o-mini", input="Tell me a story")
            client.embeddings.create(model="text-embedding-3-small", input="story")
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(
                    **CHAT, extra_headers={"X-Simulator-Fault": "error_500"})
            with pytest.raises(openai.APIError):
                list(client.chat.completions.create(
                    **CHAT, stream=True, extra_headers={"X-Simulator-Fault": "cut_stream"}))
            recorded = gw.events(6)
        finally:
            server.stop()

    with log.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(recorded) == 6
    by_provider_id = {event.provider_request_id: event for event in recorded}
    for row in rows:
        event = by_provider_id[row["request_id"]]
        if row["type"] == "2" and event.outcome == "success":  # consumed, fully metered
            assert (event.usage.input_tokens, event.usage.output_tokens) == (
                int(row["prompt_tokens"]), int(row["completion_tokens"]))
    outcomes = sorted(event.outcome for event in recorded)
    assert outcomes == ["success"] * 4 + ["upstream_error"] * 2
