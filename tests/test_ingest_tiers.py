"""Service tier through the books on both backends: ingest stores the event's tier and
prices it with that tier's entry (or the standard one, flagged); a tier price added later
reprices the tier's events only; a sheet can carry tier prices."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import sqlalchemy as sa
from factories import event, write_jsonl

from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.prices import add_entries, load_catalog
from spendtrail.ledger.reprice import reprice
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.money import from_pico
from spendtrail.periods import parse_period
from spendtrail.pricing import load_sheet

BATCH_SHEET = """
defaults:
  provider: cometapi
  kind: contracted
  effective_from: 2026-01-01
  source_url: https://api.cometapi.com/pricing
  checked_at: 2026-10-01
  checked_by: finance-partner
prices:
  - model: gpt-4o-mini
    service_tier: batch
    prices: {input_tokens: "0.075", cached_input_tokens: "0.0375", output_tokens: "0.30"}
"""


def current_costs(engine) -> dict[str, tuple]:
    newest = (
        sa.select(cost_entries.c.event_id, sa.func.max(cost_entries.c.revision).label("revision"))
        .group_by(cost_entries.c.event_id)
        .subquery()
    )
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                events.c.event_id,
                events.c.service_tier,
                cost_entries.c.price_entry_id,
                cost_entries.c.amount_pico,
                cost_entries.c.flags,
            )
            .join(cost_entries, cost_entries.c.event_id == events.c.event_id)
            .join(
                newest,
                sa.and_(
                    newest.c.event_id == cost_entries.c.event_id,
                    newest.c.revision == cost_entries.c.revision,
                ),
            )
        ).all()
    return {
        r.event_id: (r.service_tier, r.price_entry_id, from_pico(r.amount_pico), r.flags)
        for r in rows
    }


def test_a_batch_job_is_charged_its_batch_price(seeded, tmp_path):
    plain = event()
    batch = msgspec.structs.replace(event(), service_tier="batch")
    Ingester(seeded).ingest_paths([write_jsonl(tmp_path / "e.jsonl", [plain, batch])])
    # 1000 input x 0.15 + 500 output x 0.60, per 1M: no batch price yet, so the standard one
    standard = "contracted:cometapi:gpt-4o-mini@2026-01-01"
    assert current_costs(seeded) == {
        plain.event_id: (None, standard, Decimal("0.00045"), ""),
        batch.event_id: ("batch", standard, Decimal("0.00045"), "service_tier_price_missing:batch"),
    }

    sheet = tmp_path / "batch.yaml"
    sheet.write_text(BATCH_SHEET)
    entries = load_sheet(sheet)
    assert [e.id for e in entries] == ["contracted:cometapi:tier=batch:gpt-4o-mini@2026-01-01"]
    with seeded.begin() as conn:
        added = add_entries(conn, entries, actor="test").added
        catalog = load_catalog(conn)
    assert added == [entries[0].id]  # beside the standard entry: no overlap across tiers
    assert catalog.lookup("cometapi", "gpt-4o-mini", batch.started_at, "batch") == entries[0]

    result = reprice(seeded, parse_period("2026-10"), actor="ana")
    assert (result.changed, result.newly_priced) == (1, 0)
    assert current_costs(seeded) == {
        plain.event_id: (None, standard, Decimal("0.00045"), ""),
        batch.event_id: ("batch", entries[0].id, Decimal("0.000225"), ""),  # half
    }
    assert reprice(seeded, parse_period("2026-10"), actor="ana").changed == 0
