"""The month's charges as a general-ledger journal an ERP can import (CSV): one line per
cost center, application and currency, debiting the cost center and crediting one clearing
account (``AI-API-CLEARING`` unless told otherwise), dated the month's last day.

Amounts are the allocation entries' (``allocation.entries``), exact, so the lines add up to
the month's charges to the pico-unit; the memo names the application and what the amount
is made of. Unpriced usage has no amount and makes no line.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date

import sqlalchemy as sa

from spendtrail.allocation.entries import period_entries
from spendtrail.money import from_pico, plain_decimal
from spendtrail.periods import Period

DEFAULT_CREDIT_ACCOUNT = "AI-API-CLEARING"
COLUMNS = ("date", "debit_cost_center", "credit_account", "currency", "amount", "memo")


def gl_lines(
    conn: sa.Connection, period: Period, credit_account: str = DEFAULT_CREDIT_ACCOUNT
) -> list[dict[str, str]]:
    entries = period_entries(conn, period)
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    kinds: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for entry in entries.entries:
        if entry.charged and entry.currency:
            key = (entry.cost_center or "(none)", entry.application, entry.currency)
            totals[key] += entry.amount_pico
            kinds[key].add(entry.kind.replace("_", "-"))
    day = date.fromordinal(period.end.toordinal() - 1).isoformat()
    status = "final" if entries.closed else "preliminary"
    return [
        {
            "date": day,
            "debit_cost_center": cost_center,
            "credit_account": credit_account,
            "currency": currency,
            "amount": plain_decimal(from_pico(pico)),
            "memo": f"spendtrail {period.label} AI API charges ({status}): {application} "
            f"({', '.join(sorted(kinds[cost_center, application, currency]))})",
        }
        for (cost_center, application, currency), pico in sorted(totals.items())
        if pico
    ]


def to_csv(lines: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return buffer.getvalue()
