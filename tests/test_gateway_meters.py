"""What the gateway captures for pricing beyond plain tokens: cache writes split by lifetime
and the service tier a call was billed at, priced and ingested by that tier."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlalchemy as sa
import test_gateway
from factories import CLAUDE_METERS
from gateway_upstream import CLAUDE_USAGE
from test_gateway import CHAT, CHAT_METERS, seed

from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.money import from_pico
from spendtrail.pricing import PriceEntry

# The gateway fixtures of test_gateway.py, shared rather than copied.
upstream, shared_ledger, start_gateway, gw, keys = (
    test_gateway.upstream,
    test_gateway.shared_ledger,
    test_gateway.start_gateway,
    test_gateway.gw,
    test_gateway.keys,
)


def test_claude_cache_writes_are_split_by_lifetime(gw, keys):
    gw.client(keys["prod"]).chat.completions.create(**{**CHAT, "model": "claude-sonnet-4-5"})
    list(
        gw.client(keys["prod"]).chat.completions.create(
            **{**CHAT, "model": "claude-sonnet-4-5"}, stream=True
        )
    )
    plain, streamed = gw.events(2)
    assert plain.usage == streamed.usage == CLAUDE_METERS
    assert plain.raw_usage == CLAUDE_USAGE


def test_the_service_tier_of_the_response_is_on_the_event(gw, keys):
    client = gw.client(keys["prod"])
    raw = client.chat.completions.with_raw_response.create(**CHAT, service_tier="flex")
    assert raw.parse().service_tier == "flex"
    list(client.chat.completions.create(**CHAT, service_tier="priority", stream=True))
    client.chat.completions.create(**CHAT, service_tier="auto")
    client.chat.completions.create(**CHAT)
    flex, priority, auto, plain = gw.events(4)
    assert (flex.service_tier, priority.service_tier) == ("flex", "priority")
    assert auto.service_tier is plain.service_tier is None  # the standard tier
    assert flex.usage == CHAT_METERS
    # No flex price in this catalog: the standard price, as the ledger flags it.
    assert raw.headers["X-Spendtrail-Cost"] == "0.0000045 USD"


def test_a_tier_priced_call_is_costed_and_ingested_at_its_tier(ledger, start_gateway, tmp_path):
    issued = seed(ledger, tmp_path)
    flex = PriceEntry(
        provider="cometapi",
        model_match="gpt-4o-mini",
        kind="contracted",
        prices={"input_tokens": "0.075", "cached_input_tokens": "0.0375", "output_tokens": "0.3"},
        effective_from="2026-09-01",
        service_tier="flex",
        source_url="https://api.cometapi.com/pricing",
        checked_at=date(2026, 11, 20),
        checked_by="finance.reviewer@example.com",
        origin="test",
    )
    with ledger.begin() as conn:
        add_entries(conn, [flex], actor="test")
    gateway = start_gateway(ledger_url=ledger.url.render_as_string(hide_password=False))
    client = gateway.client(issued["prod"])
    raw = client.chat.completions.with_raw_response.create(**CHAT, service_tier="flex")
    client.chat.completions.create(**CHAT)
    # 8 uncached x 0.075 + 4 cached x 0.0375 + 5 output x 0.3, per million tokens: half
    assert raw.headers["X-Spendtrail-Cost"] == "0.00000225 USD"
    gateway.server.stop()  # seals the spool file

    assert Ingester(ledger).ingest_spool(gateway.spool).inserted == 2
    with ledger.connect() as conn:
        rows = conn.execute(
            sa.select(
                events.c.service_tier,
                cost_entries.c.price_entry_id,
                cost_entries.c.amount_pico,
                cost_entries.c.flags,
            )
            .join(cost_entries, cost_entries.c.event_id == events.c.event_id)
            .order_by(events.c.event_id)
        ).all()
    assert [(r.service_tier, r.price_entry_id) for r in rows] == [
        ("flex", flex.id),
        (None, "contracted:cometapi:gpt-4o-mini@2026-01-01"),
    ]
    assert [from_pico(r.amount_pico) for r in rows] == [Decimal("0.00000225"), Decimal("0.0000045")]
    assert [r.flags for r in rows] == ["", ""]
