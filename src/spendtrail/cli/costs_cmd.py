"""`spendtrail costs`: cost by owner, model and day for a period."""

from __future__ import annotations

from typing import Annotated

import typer

from spendtrail.cli.common import console, ledger
from spendtrail.cli.render import Format, render
from spendtrail.money import format_amount, plain_decimal
from spendtrail.periods import parse_period
from spendtrail.reports.costs import GROUPABLE, CostRow, cost_report


def costs(
    period: Annotated[str, typer.Option(help="YYYY-MM, YYYY-MM-DD or START..END")],
    by: Annotated[
        str, typer.Option(help=f"comma-separated, from: {', '.join(GROUPABLE)}")
    ] = "application,model,day",
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Cost by owner, model and day for a period, with unpriced and quarantined counts.
    Quarantined usage shows as 'quarantined' in the owner columns, never under the owner
    its context claimed."""
    group_by = tuple(g.strip() for g in by.split(",") if g.strip())
    with ledger().connect() as conn:
        report = cost_report(conn, parse_period(period), group_by)
    rows = [_row(r.key, r, fmt) for r in report.rows]
    render(rows, fmt, title=f"cost {report.period.label} by {', '.join(group_by)}")
    if fmt is Format.table:
        for label, bucket in (("total", report.totals), ("quarantined", report.quarantined),
                              ("shared", report.shared)):
            console.print(f"{label}: {_money(bucket)} over {bucket.events} events",
                          highlight=False)


def _row(key: dict[str, str], row: CostRow, fmt: Format) -> dict:
    # An empty owner field is shown, not hidden: it is usage nobody owns yet.
    out: dict = {k: (v or "(none)") if fmt is Format.table else v for k, v in key.items()}
    out.update(events=row.events, successes=row.successes, input_tokens=row.input_tokens,
               output_tokens=row.output_tokens, unpriced_events=row.unpriced_events)
    if fmt is Format.table:
        out["cost"] = _money(row)
    else:
        # Machine formats keep full precision and one column per currency.
        out.update({f"cost_{cur}": plain_decimal(amount) for cur, amount in row.cost().items()})
    return out


def _money(row: CostRow) -> str:
    """Priced amounts per currency; events without a price are named, never shown as 0."""
    parts = [f"{format_amount(a)} {cur}" for cur, a in row.cost().items()]
    if row.unpriced_events:
        parts.append(f"{row.unpriced_events} unpriced")
    return " + ".join(parts) or "0.00"
