"""`spendtrail alerts`: check the books for alert conditions, deliver them, list them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from spendtrail.cli.common import console, err_console, fail, ledger, settings, when
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    from spendtrail.alerts import AlertsConfig, CheckResult, Owner

app = typer.Typer(
    help="Alerts: budget, forecast, anomaly, coverage, reconciliation and price conditions, "
    "delivered to webhooks and e-mail.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The alerts file; default $SPENDTRAIL_ALERTS_FILE, else "
        "alerts.yaml in the spendtrail home if present (no channels without one).",
    ),
]
OwnerOption = Annotated[
    str | None,
    typer.Option(
        help="Only this owner's: application:ID, cost-center:ID, "
        "business-unit:ID or budget-owner:ID.",
        show_default=False,
    ),
]
FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]


def load(path: Path | None) -> AlertsConfig:
    from spendtrail.alerts import load_config

    return load_config(path or settings().alerts)


def report(result: CheckResult) -> bool:
    """Print what a check recorded and delivered; whether a delivery failed for good."""
    for alert in result.new:
        console.print(f"alert {alert.id} {alert.kind}: {escape(alert.message)}", highlight=False)
    for sent in result.deliveries:
        line = (
            f"alert {sent.alert_id} -> {sent.channel}: {sent.status} after "
            f"{sent.attempts} attempt{'s' * (sent.attempts != 1)} ({sent.response})"
        )
        (console if sent.status == "delivered" else err_console).print(
            escape(line), highlight=False
        )
    console.print(
        f"{result.found} conditions hold, {len(result.new)} new alerts, "
        f"{sum(s.status == 'delivered' for s in result.deliveries)} deliveries",
        highlight=False,
    )
    return any(sent.status == "failed" for sent in result.deliveries)


@app.command()
def check(
    config: ConfigOption = None,
    at: Annotated[
        str | None, typer.Option(help="Check as of this day or ISO 8601 time (UTC); default now.")
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="Only this kind (repeatable); default every kind.", show_default=False),
    ] = None,
    deliver: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Deliver pending alerts to the channels.")
    ] = True,
) -> None:
    """Record every alert condition not alerted yet (once per condition and period), then
    deliver pending alerts with retries. Exit 1 if a delivery failed for good."""
    from spendtrail.alerts import KINDS, check_alerts

    unknown = sorted(set(kind or ()) - set(KINDS))
    if unknown:
        fail(f"unknown kind {', '.join(unknown)}; expected any of {', '.join(KINDS)}")
    try:
        loaded = load(config)
        result = check_alerts(
            ledger(),
            loaded,
            now=None if at is None else when(at),
            kinds=tuple(kind) if kind else KINDS,
            deliver=deliver,
        )
    except SpendtrailError as exc:
        fail(str(exc))
    if report(result):
        raise typer.Exit(1)


@app.command("list")
def list_(
    owner: OwnerOption = None,
    kind: Annotated[
        list[str] | None, typer.Option(help="Only this kind (repeatable).", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    output_format: FormatOption = Format.table,
) -> None:
    """Recorded alerts, newest first."""
    from spendtrail.alerts import list_alerts

    with ledger().connect() as conn:
        found = list_alerts(conn, owner=_owner(owner), kinds=kind or None, limit=limit)
    if not found:
        console.print("no alerts")
        return
    if output_format is Format.table:  # the narrow view; the full one is --format json
        rows = [
            {
                "id": a.id,
                "created_at": f"{a.created_at:%Y-%m-%d %H:%M}",
                "kind": a.kind,
                "owner": _most_specific(a.owner),
                "title": a.title,
            }
            for a in found
        ]
    else:
        rows = [
            {
                "id": a.id,
                "created_at": a.created_at,
                "kind": a.kind,
                "period": a.period,
                **dataclasses.asdict(a.owner),
                "title": a.title,
                "message": a.message,
                "details": a.details,
                "key": a.key,
            }
            for a in found
        ]
    render(rows, output_format, title="Alerts")


@app.command()
def deliveries(
    alert: Annotated[int | None, typer.Option(help="Only this alert's attempts.")] = None,
    owner: OwnerOption = None,
    output_format: FormatOption = Format.table,
) -> None:
    """Every delivery attempt: channel, target (tokens masked), attempt, time, status and the
    HTTP status or SMTP reply."""
    from spendtrail.alerts import list_deliveries

    with ledger().connect() as conn:
        found = list_deliveries(
            conn, alert_ids=None if alert is None else [alert], owner=_owner(owner)
        )
    if not found:
        console.print("no delivery attempts")
        return
    render(
        [
            {
                "alert": d.alert_id,
                "channel": d.channel,
                "target": d.target,
                "attempt": d.attempt,
                "at": f"{d.at:%Y-%m-%d %H:%M:%S}" if output_format is Format.table else d.at,
                "status": d.status,
                "response": d.response,
            }
            for d in found
        ],
        output_format,
        title="Alert deliveries",
    )


@app.command()
def channels(config: ConfigOption = None, output_format: FormatOption = Format.table) -> None:
    """The channels of the alerts file, their scope and target (tokens masked)."""
    from spendtrail.alerts import KINDS

    try:
        loaded = load(config)
    except SpendtrailError as exc:
        fail(str(exc))
    if not loaded.channels:
        console.print("no channels configured")
        return
    render(
        [
            {
                "name": c.name,
                "type": c.type,
                "target": c.target,
                "owner": "every owner" if c.owner is None else f"{c.owner[0]}={c.owner[1]}",
                "kinds": "every kind" if c.kinds == KINDS else ",".join(c.kinds),
                "signed": bool(c.secret_env),
            }
            for c in loaded.channels
        ],
        output_format,
        title="Alert channels",
    )


def _most_specific(owner: Owner) -> str:
    """The owner's narrowest named field (an application names the others), or company."""
    from spendtrail.alerts.model import OWNER_FIELDS

    return next(
        (f"{name}={value}" for name in OWNER_FIELDS if (value := getattr(owner, name))), "company"
    )


def _owner(text: str | None) -> tuple[str, str] | None:
    from spendtrail.reports.chargeback import parse_scope

    if text is None:
        return None
    scope = parse_scope(text)
    return None if scope.is_company else (scope.attribute, scope.value)
