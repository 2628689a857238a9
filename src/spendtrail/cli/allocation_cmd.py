"""`spendtrail exceptions list|show|assign|resolve` and `spendtrail allocation coverage|shared
|check|rules-load`. Faces only: parse, call spendtrail.allocation, render."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spendtrail.allocation.coverage import DEFAULT_THRESHOLD
from spendtrail.cli.common import PeriodOption, actor, console, err_console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.registry_versions import load_history
from spendtrail.money import format_amount, from_pico, plain_decimal
from spendtrail.periods import parse_period

if TYPE_CHECKING:
    from spendtrail.allocation.coverage import Coverage
    from spendtrail.allocation.exceptions import ExceptionGroup
    from spendtrail.allocation.rules import Rule
    from spendtrail.allocation.shared import SharedAllocation

exceptions_app = typer.Typer(no_args_is_help=True)
allocation_app = typer.Typer(no_args_is_help=True)

FormatOption = Annotated[Format, typer.Option("--format")]


def _money(pico: int, currency: str, fmt: Format) -> str:
    # Tables show a readable amount; machine formats keep every pico-unit.
    amount = from_pico(pico)
    return f"{format_amount(amount)} {currency}" if fmt is Format.table else plain_decimal(amount)


def _amounts(amounts: dict[str, int], fmt: Format) -> str:
    """Several currencies in one cell, so each amount names its currency in every format."""
    return "; ".join(
        _money(p, cur, fmt) if fmt is Format.table else f"{plain_decimal(from_pico(p))} {cur}"
        for cur, p in amounts.items()
    ) or "-"


def _run(action):
    """Library errors become one red line and exit 2, as elsewhere in the CLI."""
    try:
        return action()
    except SpendtrailError as exc:
        fail(str(exc))


# --- exceptions -------------------------------------------------------------------------


def _group_row(group: ExceptionGroup, now: datetime, fmt: Format) -> dict:
    return {
        "group": group.id,
        "reasons": group.reasons,
        "captured_application": group.owner_label,
        "events": len(group.events),
        "unpriced": group.unpriced,
        # A narrow column in tables; machine formats keep the full timestamp.
        "oldest": group.oldest.strftime("%Y-%m-%d %H:%M") if fmt is Format.table
        else group.oldest.isoformat(),
        "age_days": group.age_days(now),
        "amount": _amounts(group.amounts, fmt),
    }


@exceptions_app.command("list")
def list_groups(
    period: Annotated[str | None, typer.Option(help="Only events of this period.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Open exception groups: quarantined usage by reason and captured owner, with age,
    count and amount."""
    from spendtrail.allocation.exceptions import open_groups

    chosen = None if period is None else _run(lambda: parse_period(period))
    with ledger().connect() as conn:
        groups = open_groups(conn, chosen)
    now = datetime.now(UTC)
    render([_group_row(g, now, fmt) for g in groups], fmt, title="exception queue")
    if fmt is Format.table and not groups:
        console.print("the exception queue is empty")


@exceptions_app.command()
def show(
    group: Annotated[str, typer.Argument(help="The group id from `exceptions list`.")],
    limit: Annotated[int, typer.Option(min=1, help="Events to list.")] = 50,
    fmt: FormatOption = Format.table,
) -> None:
    """One group: its reasons, totals and events (oldest first), and earlier resolutions."""
    from spendtrail.allocation.exceptions import find_group, resolutions

    with ledger().connect() as conn:
        found = _run(lambda: find_group(conn, group))
        history = resolutions(conn, group)
    rows = [
        {
            "event_id": e.event_id, "started_at": e.started_at.isoformat(timespec="seconds"),
            "model": e.model, "cost_status": e.cost_status,
            "amount": "-" if e.currency is None else _money(e.amount_pico or 0, e.currency, fmt),
        }
        for e in found.events[:limit]
    ]
    if fmt is Format.json:
        document = {**_group_row(found, datetime.now(UTC), fmt), "event_list": rows,
                    "resolutions": history}
        console.print_json(json.dumps(document, default=str))
        return
    render([_group_row(found, datetime.now(UTC), fmt)], fmt, title=f"exception group {group}")
    render(rows, fmt, title=f"events (first {min(limit, len(found.events))} of "
           f"{len(found.events)})")
    for item in history:
        console.print(f"earlier resolution at {item['resolved_at']} by {item['resolved_by']}: "
                      f"{item['note']}", highlight=False)


@exceptions_app.command("assign")
def assign_owner(
    to: Annotated[str, typer.Option("--to", help="The owner: an application id.")],
    reason: Annotated[str, typer.Option(help="Why this owner; kept in the audit log.")],
    group: Annotated[str | None, typer.Argument(help="The group id; or use --event.")] = None,
    event: Annotated[list[str] | None, typer.Option(help="An event id (repeatable).")] = None,
) -> None:
    """Assign an owner to a group (or events): writes reallocation entries and an audit
    record; the events themselves are never edited."""
    from spendtrail.allocation.exceptions import assign

    with ledger().begin() as conn:
        done = _run(lambda: assign(conn, application=to, actor=actor(), reason=reason,
                                   group=group, event_ids=event or ()))
    console.print(
        f"assigned {done.events} events ({_amounts(done.amounts, Format.table)}"
        f"{f', {done.unpriced} unpriced' if done.unpriced else ''}) to {done.application} "
        f"from {', '.join(done.groups)}", highlight=False)


@exceptions_app.command("resolve")
def resolve_group(
    group: Annotated[str, typer.Argument(help="The group id.")],
    note: Annotated[str, typer.Option(help="Why it is resolved; kept in the audit log.")],
) -> None:
    """Close a group with a note; its later events open it again."""
    from spendtrail.allocation.exceptions import resolve

    with ledger().begin() as conn:
        found = _run(lambda: resolve(conn, group, note=note, actor=actor()))
    console.print(f"resolved {found.id} ({len(found.events)} events)", highlight=False)


# --- allocation -------------------------------------------------------------------------


@allocation_app.command("coverage")
def coverage_cmd(
    period: PeriodOption,
    threshold: Annotated[
        str, typer.Option(help="Alert when unallocated spend passes this percent.")
    ] = f"{DEFAULT_THRESHOLD * 100}%",
    fmt: FormatOption = Format.table,
) -> None:
    """Coverage KPIs: % of cost allocated, shared, quarantined, % of events unpriced, and a
    line per owner (untagged usage is its own line). Exit 1 when the alert fires."""
    from spendtrail.allocation.coverage import coverage, parse_threshold

    chosen = _run(lambda: parse_period(period))
    limit = _run(lambda: parse_threshold(threshold))
    with ledger().connect() as conn:
        result = coverage(conn, chosen, limit)
    kpis = _kpi_rows(result, fmt)
    lines = [
        {"status": line.status, "owner": line.owner, "currency": line.currency or "-",
         "events": line.events,
         "cost": _money(line.cost_pico, line.currency, fmt) if line.currency else "-"}
        for line in result.lines
    ]
    alerts = result.alerts()
    if fmt is Format.json:
        console.print_json(json.dumps({"period": chosen.label, "kpis": kpis, "lines": lines,
                                       "alerts": alerts}))
    else:
        render(kpis, fmt, title=f"allocation coverage {chosen.label}")
        render(lines, fmt, title="by owner")
    for message in alerts:
        err_console.print(f"[red]alert:[/red] {message}", highlight=False)
    if alerts:
        raise typer.Exit(1)


def _kpi_rows(result: Coverage, fmt: Format) -> list[dict]:
    from spendtrail.allocation.coverage import percent

    rows = [
        {
            "currency": c.currency,
            "total": _money(c.total_pico, c.currency, fmt),
            "allocated": percent(c.share("allocated")),
            "shared": percent(c.share("shared")),
            "quarantined": percent(c.share("quarantined")),
            "unpriced_events": percent(result.unpriced_share),
            "unallocated": percent(result.unallocated_share(c)),
        }
        for c in result.currencies
    ]
    if not rows:
        rows.append({"currency": "-", "total": "-", "allocated": "n/a", "shared": "n/a",
                     "quarantined": "n/a", "unpriced_events": percent(result.unpriced_share),
                     "unallocated": percent(result.unpriced_share)})
    for row in rows:
        row.update(events=result.total_events, reallocated_events=result.reallocated_events)
    return rows


def _rules(path: Path) -> list[Rule]:
    """The rules file at ``path``, checked against the latest registry."""
    from spendtrail.allocation.rules import load_rules
    from spendtrail.allocation.shared import check_rules

    with ledger().connect() as conn:
        latest = load_history(conn).latest()
    if latest is None:
        fail("no registry loaded; load one with spendtrail registry load")
    rules = _run(lambda: load_rules(path))
    _run(lambda: check_rules(rules, latest[1]))
    return rules


@allocation_app.command("check")
def check(rules: Annotated[Path, typer.Argument(help="The shared-cost rules YAML.")]) -> None:
    """Check a rules file against itself and the latest registry; every problem with its
    line."""
    found = _rules(rules)
    console.print(f"{rules}: {len(found)} rules, OK", highlight=False)


@allocation_app.command("rules-load")
def rules_load(
    rules: Annotated[Path, typer.Argument(help="The shared-cost rules YAML.")],
    reason: Annotated[str, typer.Option(help="Why these rules; kept in the audit log.")],
) -> None:
    """Check a rules file like `allocation check` and store it as a new version of the
    shared-cost rules, with an audit record; identical rules add no version."""
    from spendtrail.allocation.rule_store import latest_version, save_rules_version

    found = _rules(rules)
    with ledger().begin() as conn:
        before = latest_version(conn)
        version = save_rules_version(conn, found, source_path=str(rules), actor=actor(),
                                     reason=reason)
    if before is not None and before.version == version:
        console.print(f"{rules}: {len(found)} rules, unchanged from shared-cost rules version "
                      f"{version}", highlight=False)
    else:
        console.print(f"{rules}: {len(found)} rules stored as shared-cost rules version "
                      f"{version}", highlight=False)


@allocation_app.command("shared")
def shared(
    period: PeriodOption,
    rules: Annotated[
        Path | None,
        typer.Option(help="A shared-cost rules YAML to try (a what-if); default: the "
                          "period's allocation entries."),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """The period's shared-cost charges: per pool, currency and rule segment, the origin
    charge and its allocated children, which sum to it exactly and carry their ratios. From
    the period's allocation entries, or with --rules, from those rules."""
    from spendtrail.allocation.entries import period_entries
    from spendtrail.allocation.shared import apply_rules, ratio_text

    chosen = _run(lambda: parse_period(period))
    with ledger().connect() as conn:
        if rules is None:
            result = _run(lambda: period_entries(conn, chosen).shared)
        else:
            result = apply_rules(conn, _rules(rules), chosen)
    if fmt is Format.json:
        console.print_json(json.dumps(_shared_document(result)))
        return
    rows = []
    for charge in result.charges:
        base = {"origin": charge.id, "method": charge.rule.method, "status": charge.status,
                "origin_amount": _money(charge.amount_pico, charge.currency, fmt)}
        for child in charge.children or (None,):
            rows.append({
                **base,
                "recipient": child.recipient if child else "-",
                "amount": _money(child.amount_pico, charge.currency, fmt) if child else "-",
                "ratio": ratio_text(child.ratio) if child else "-",
                "exact_ratio": str(child.ratio) if child else "-",
                "note": charge.detail,
            })
    render(rows, fmt, title=f"shared-cost allocation {chosen.label}")
    if fmt is Format.table:
        for item in result.uncovered:
            console.print(f"no rule covers {_money(item.amount_pico, item.currency, fmt)} of "
                          f"pool {item.pool}: it stays with the pool", highlight=False)


def _shared_document(result: SharedAllocation) -> dict:
    return {
        "period": result.period.label,
        "charges": [
            {
                "origin": charge.id, "rule": charge.rule.id, "pool": charge.rule.pool,
                "method": charge.rule.method, "status": charge.status,
                "currency": charge.currency, "start": charge.start.isoformat(),
                "end": charge.end.isoformat(),
                "amount": plain_decimal(from_pico(charge.amount_pico)),
                "amount_pico": charge.amount_pico, "detail": charge.detail,
                "reviewed_by": charge.rule.reviewed_by,
                "reviewed_at": charge.rule.reviewed_at.isoformat(),
                "AllocatedMethodDetails": charge.method_details(),
            }
            for charge in result.charges
        ],
        "uncovered": [
            {"pool": u.pool, "currency": u.currency,
             "amount": plain_decimal(from_pico(u.amount_pico)), "amount_pico": u.amount_pico}
            for u in result.uncovered
        ],
    }


@allocation_app.command("run")
def run(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    true_up: Annotated[str | None, typer.Option(
        help="How the reconciled variance is carried: proportional (to matched billed cost, "
             "the default) or central (held by the shared pool).")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Compute a month's allocation entries and store them (direct, reassigned, shared
    splits, the true-up to the bill, adjustments of closed months); every report reads
    them. A closed month's entries cannot change."""
    from spendtrail.allocation.entries import run_allocation

    try:
        chosen = parse_period(period)
        with ledger().begin() as conn:
            result = run_allocation(conn, chosen, actor=actor(), true_up_rule=true_up)
    except SpendtrailError as exc:
        fail(str(exc))
    rows = [
        {"kind": e.kind if e.kind != "adjustment" else f"adjustment of {e.adjusts_period} "
         f"{e.adjusts_kind}", "application": e.application, "rule": e.rule_id,
         "ratio": e.ratio, "currency": e.currency or "(unpriced)",
         "amount": _money(e.amount_pico, e.currency, fmt) if e.currency else "unpriced",
         "events": e.events}
        for e in result.entries
    ]
    render(rows, fmt, title=f"allocation entries {chosen.label} (true-up: "
                            f"{result.true_up_rule})")
    for application, money in result.charges().items():
        console.print(f"{application}: {_amounts(money, fmt)}", highlight=False)
