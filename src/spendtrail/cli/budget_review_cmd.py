"""`spendtrail budgets review`: one budget ledger row per budget for a period, and the
quarantined usage held out of team budgets (docs/budget-review.md)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from spendtrail.cli.common import actor, console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.evidence.budget_review import DEFAULT_REVIEWER_ROLE
from spendtrail.periods import parse_period

if TYPE_CHECKING:
    from spendtrail.evidence.budget_review import BudgetReview


class ReviewFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    md = "md"


def review(
    period: Annotated[str, typer.Option(help="Accounting period to review, YYYY-MM.")],
    reviewer_role: Annotated[
        str, typer.Option(help="The reviewer's role, recorded in every row.")
    ] = DEFAULT_REVIEWER_ROLE,
    review_date: Annotated[
        str | None,
        typer.Option("--review-date", help="Review day, YYYY-MM-DD (default: today, UTC)."),
    ] = None,
    output_format: Annotated[
        ReviewFormat, typer.Option("--format", help="Output format.")
    ] = ReviewFormat.table,
) -> None:
    """Review every budget for a period: owner, environment, workload, allocation rule, unit
    metric, sources checked, request evidence, same-day pricing check, decision
    (proceed/review/stop) and follow-up owner. Opens a follow-up for each row that is not
    proceed. Quarantined usage is held out of team budgets and listed separately."""
    from spendtrail.evidence.budget_review import review_budgets

    if len(period.strip()) != 7:
        fail(f"--period {period!r}: expected a month, YYYY-MM")
    day = None
    if review_date is not None:
        try:
            day = date.fromisoformat(review_date)
        except ValueError:
            fail(f"--review-date {review_date!r}: expected a day, YYYY-MM-DD")
    try:
        parsed = parse_period(period)
        with ledger().begin() as conn:
            result = review_budgets(conn, parsed, review_date=day,
                                    reviewer_role=reviewer_role, actor=actor())
    except SpendtrailError as exc:
        fail(str(exc))
    emit(result, output_format)


def emit(result: BudgetReview, fmt: ReviewFormat) -> None:
    rows = [r.record() for r in result.rows]
    held = [h.record() for h in result.held_out]
    if fmt is ReviewFormat.json:
        console.print_json(json.dumps(result.record(), default=str))
    elif fmt is ReviewFormat.csv:
        # Two CSV blocks: the budget rows, a blank line, then the held-out usage.
        _csv(rows)
        sys.stdout.write("\n")
        _csv(held, header=("group_id", "captured_application", "reasons", "events",
                           "amount", "unpriced_events"))
    elif fmt is ReviewFormat.md:
        sys.stdout.write(markdown(result))
    else:
        title = (f"Budget review {result.period.label} ({result.review_date}, "
                 f"{result.reviewer_role})")
        console.print(f"{escape(title)}" + ("" if rows else ": no budgets"), highlight=False)
        # One block per budget, a field a line: 20-odd columns do not fit a terminal.
        for row in rows:
            console.print(highlight=False)
            for name, value in row.items():
                text = "-" if value is None or value == "" else str(value)
                console.print(f"{name.replace('_', ' '):>26}: {escape(text)}", highlight=False)
        console.print(highlight=False)
        if held:
            render(held, Format.table, title="Held out of team budgets (owner unclear)")
        else:
            console.print("Held out of team budgets: none", highlight=False)


def _csv(rows: list[dict], header: tuple[str, ...] | None = None) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    keys = list(rows[0].keys()) if rows else list(header or ())
    if keys:
        writer.writerow(keys)
    writer.writerows([("" if row[k] is None else row[k]) for k in keys] for row in rows)


def markdown(result: BudgetReview) -> str:
    lines = [f"# Budget review {result.period.label}", "",
             f"Review date: {result.review_date}; reviewer role: {result.reviewer_role}", "",
             "## Budgets", ""]
    lines += _md_table([r.record() for r in result.rows]) or ["No budgets."]
    lines += ["", "## Held out of team budgets (owner unclear)", ""]
    lines += _md_table([h.record() for h in result.held_out]) or ["None."]
    return "\n".join(lines) + "\n"


def _md_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    keys = list(rows[0].keys())

    def cell(value: object) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return out
