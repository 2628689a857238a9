"""A reconciliation record as rows (table, CSV), a JSON document and the Markdown summary
the review keeps: period, totals, variance, owner breakdown, differences, reviewer.

The owner breakdown is the record's (billed amounts through the owners of the matched
events, as captured). Given the period's charges per owner (its allocation entries, with
reassignments, shared splits and the true-up), the rendering adds them, so the owner's
figure here is the one every other report shows."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from spendtrail.money import from_pico, plain_decimal
from spendtrail.reconcile.match import DIFFERENCE_KINDS
from spendtrail.reconcile.record import Reconciliation

SHOWN_DIFFERENCES = 200  # in Markdown and the table; all are in the record (csv, json)
DIFFERENCE_FIELDS = (
    "kind", "day", "request", "event", "bill line", "model", "key", "owner", "logged",
    "billed", "logged tokens", "billed tokens", "detail",
)


def summary_rows(record: Reconciliation) -> list[dict[str, Any]]:
    """The record's headline figures, one (field, value) row each."""
    percent = record.variance_percent
    fields = {
        "reconciliation": record.id,
        "date": record.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        "period": f"{record.period.label} ({record.period.start} to {record.period.end}, "
                  "end exclusive)",
        "bill": f"{record.bill_import_id} ({record.bill_file})",
        "provider": record.provider,
        "method": record.method,
        "logged": record.money(record.logged_pico),
        "billed": record.money(record.billed_pico),
        "billed charges": record.money(record.consumed_pico),
        "billed refunds": record.money(record.refunded_pico),
        "billed error rows": record.money(record.error_pico),
        "variance": record.money(record.variance_pico),
        "variance %": "n/a (nothing billed)" if percent is None else f"{percent}%",
        **({"billed outside the gateway": record.money(record.outside_pico),
            "variance judged": f"{record.money(record.judged_variance_pico)} (billed outside "
                               "the gateway left out)"} if record.outside_pico else {}),
        "tolerance": f"{record.tolerance * 100:f}%",
        "within tolerance": "yes" if record.within_tolerance else "no",
        "result": record.result,
        "reasons": "; ".join(record.reasons),
        "events": record.counts["events"],
        "bill lines": record.counts["bill_lines"],
        "matched": record.counts["matched"],
        "reviewer": record.reviewer,
        "run by": record.created_by,
    }
    return [{"field": name, "value": value} for name, value in fields.items()]


def owner_rows(record: Reconciliation) -> list[dict[str, Any]]:
    return [
        {"owner": o.owner, "events": o.events, "logged": record.money(o.logged_pico),
         "billed": record.money(o.billed_pico),
         "variance": record.money(o.logged_pico - o.billed_pico)}
        for o in record.owners
    ]


Charges = dict[str, dict[str, int]]  # application -> currency -> pico-units


def charge_rows(record: Reconciliation, charges: Charges) -> list[dict[str, Any]]:
    """Each owner's charges for the period in the record's currency (allocation entries)."""
    return [{"owner": owner, "charged": record.money(money[record.currency])}
            for owner, money in charges.items() if record.currency in money]


def difference_rows(record: Reconciliation, *, plain: bool = False) -> list[dict[str, Any]]:
    """Amounts with their currency for reading; `plain`: bare decimal strings (CSV)."""
    money = (lambda pico: "" if pico is None else _amount(pico)) if plain else record.money
    return [
        dict(zip(DIFFERENCE_FIELDS, (
            d.kind, d.day, d.provider_request_id, d.event_id, d.bill_line, d.model, d.key_name,
            d.owner, money(d.logged_pico), money(d.billed_pico), d.logged_tokens,
            d.billed_tokens, d.detail), strict=True))
        for d in record.differences
    ]


def _amount(pico: int) -> str:
    return plain_decimal(from_pico(pico))


def to_json(record: Reconciliation, charges: Charges | None = None) -> dict[str, Any]:
    """Amounts as exact, plain decimal strings in the record's currency."""
    def amount(pico: int | None) -> str | None:
        return None if pico is None else _amount(pico)

    percent = record.variance_percent
    return {
        "id": record.id, "created_at": record.created_at.isoformat(),
        "created_by": record.created_by, "reviewer": record.reviewer,
        "period": {"label": record.period.label, "start": record.period.start.isoformat(),
                   "end": record.period.end.isoformat()},
        "bill": {"id": record.bill_import_id, "file": record.bill_file},
        "provider": record.provider, "method": record.method, "currency": record.currency,
        "logged": amount(record.logged_pico), "billed": amount(record.billed_pico),
        "billed_charges": amount(record.consumed_pico),
        "billed_refunds": amount(record.refunded_pico),
        "billed_error_rows": amount(record.error_pico),
        "variance": amount(record.variance_pico),
        "variance_percent": None if percent is None else str(percent),
        "billed_outside_gateway": amount(record.outside_pico),
        "variance_judged": amount(record.judged_variance_pico),
        "tolerance_percent": plain_decimal(record.tolerance * 100),
        "within_tolerance": record.within_tolerance, "result": record.result,
        "reasons": record.reasons, "counts": record.counts,
        "owners": [
            {"owner": o.owner, "events": o.events, "logged": amount(o.logged_pico),
             "billed": amount(o.billed_pico),
             "variance": amount(o.logged_pico - o.billed_pico)}
            for o in record.owners
        ],
        "charged": None if charges is None else {
            owner: amount(money[record.currency])
            for owner, money in charges.items() if record.currency in money},
        "differences": [
            {**asdict(d), "day": d.day and d.day.isoformat(),
             "logged": amount(d.logged_pico), "billed": amount(d.billed_pico)}
            for d in record.differences
        ],
    }


def to_markdown(record: Reconciliation, charges: Charges | None = None) -> str:
    """The dated reconciliation summary of the review record."""
    lines = [
        f"# Reconciliation {record.id}: {record.provider}, {record.period.label}",
        "",
        f"**Result: {record.result.upper()}**"
        + (f" ({'; '.join(record.reasons)})" if record.reasons else ""),
        "",
        "| Field | Value |",
        "|---|---|",
        *(f"| {row['field']} | {_cell(row['value'])} |" for row in summary_rows(record)),
        "",
        "## Owner breakdown",
        "",
        "Billed amounts are attributed through the owners of the matched ledger events, or "
        "of the provider accounts the registry maps; billed amounts that match no event are "
        "unattributed, and those on accounts the registry does not map are "
        "`(unmapped account)`.",
        "",
        *_table(owner_rows(record)),
        "",
        *(["## Charged per owner (allocation entries)", "",
           "What each owner is charged for the period (direct, reassigned, shared, true-up): "
           "the figure of its statement.", "", *_table(charge_rows(record, charges)), ""]
          if charges is not None else []),
        "## Differences",
        "",
        ", ".join(f"{kind}: {record.counts.get(kind, 0)}" for kind in DIFFERENCE_KINDS),
        "",
    ]
    shown = difference_rows(record)[:SHOWN_DIFFERENCES]
    lines += _table(shown) if shown else ["None."]
    if len(record.differences) > len(shown):
        lines += ["", f"... and {len(record.differences) - len(shown)} more in the record "
                      f"(spendtrail reconcile ... --format csv)."]
    lines += ["", f"Reviewed by: {record.reviewer} on "
                  f"{record.created_at:%Y-%m-%d}. This record is immutable; a new run is a "
                  "new record.", ""]
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    header = list(rows[0])
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(row[name]) for name in header) + " |" for row in rows),
    ]


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
