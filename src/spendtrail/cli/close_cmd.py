"""`spendtrail close` and `spendtrail reopen`: a month's close. Faces only: parse, call
spendtrail.close, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spendtrail.cli.common import actor, console, fail, ledger
from spendtrail.errors import SpendtrailError
from spendtrail.money import format_amount, from_pico
from spendtrail.periods import parse_period


def close(
    period: Annotated[str, typer.Option(help="The month to close, YYYY-MM.")],
    accept: Annotated[
        list[str] | None,
        typer.Option(help="A blocker code to close despite (repeat; each with its --reason)."),
    ] = None,
    reason: Annotated[
        list[str] | None,
        typer.Option(
            help="Why the --accept at the same position is accepted; kept in the audit log."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only list the blockers; close nothing.")
    ] = False,
    spool: Annotated[
        Path | None,
        typer.Option(
            help="The capture spool to check is drained (default: SPENDTRAIL_SPOOL_DIR or the "
            "home's spool)."
        ),
    ] = None,
    true_up: Annotated[
        str | None,
        typer.Option(
            help="proportional (default) or central: how the reconciled variance is carried."
        ),
    ] = None,
) -> None:
    """List what blocks closing a month (spool not drained, unpriced usage, stale prices,
    no or failed reconciliation, unallocated spend, shared rules not stored); with none, or
    each accepted with a reason, close it: store its allocation entries (final from then on),
    snapshot its statements and audit the close. Exit 1 when blocked."""
    from spendtrail.close import CloseError, blockers, close_period
    from spendtrail.settings import Settings

    codes, reasons = accept or [], reason or []
    if len(codes) != len(reasons):
        fail("give one --reason per --accept, in the same order")
    spool_dir = spool or Settings().spool
    try:
        chosen = parse_period(period)
        if check:
            with ledger().connect() as conn:
                found = blockers(conn, chosen, spool_dir=spool_dir)
            for blocker in found:
                console.print(f"BLOCKER {blocker.code}: {blocker.message}", highlight=False)
            console.print(f"{chosen.label}: {len(found)} blocker(s)", highlight=False)
            raise typer.Exit(1 if found else 0)
        result = close_period(
            ledger(),
            chosen,
            actor=actor(),
            accept=dict(zip(codes, reasons, strict=True)),
            spool_dir=spool_dir,
            true_up_rule=true_up,
        )
    except CloseError as exc:
        for blocker in exc.blockers:
            console.print(f"BLOCKER {blocker.code}: {blocker.message}", highlight=False)
        fail(str(exc))
    except SpendtrailError as exc:
        fail(str(exc))
    for blocker in result.blockers:
        console.print(
            f"accepted {blocker.code}: {blocker.message} ({result.accepted[blocker.code]})",
            highlight=False,
        )
    for application, money in result.charges.items():
        amounts = ", ".join(
            f"{format_amount(from_pico(p), 12)} {c}" for c, p in sorted(money.items())
        )
        console.print(f"  {application}: {amounts}", highlight=False)
    console.print(
        f"{chosen.label} closed: {result.entries} allocation entries, "
        f"{len(result.snapshots)} statement snapshots",
        highlight=False,
    )


def reopen(
    period: Annotated[str, typer.Option(help="The closed month, YYYY-MM.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the audit log.")],
) -> None:
    """Reopen a closed month: its entries can be recomputed and its snapshots are dropped
    (named, with their sha256, in the audit record)."""
    from spendtrail.close import reopen_period

    try:
        reopen_period(ledger(), parse_period(period), actor=actor(), reason=reason)
    except SpendtrailError as exc:
        fail(str(exc))
    console.print(f"{period} reopened", highlight=False)
