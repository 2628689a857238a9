"""`spendtrail registry`: check, load and show the owner registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from spendtrail.cli.common import actor, console, fail, ledger
from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    from rich.table import Table

    from spendtrail.registry import (
        Application,
        Registry,
        RegistryHistory,
        RegistryVersion,
        SectionChanges,
    )

app = typer.Typer(
    help="The owner registry: the business units, applications and cost centers spend "
    "is allocated to.",
    no_args_is_help=True,
)

RegistryFile = Annotated[
    Path, typer.Argument(help="Registry YAML file (schema: docs/registry.md).")
]


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def check(file: RegistryFile) -> None:
    """Validate a registry file without loading it: exit 0 if usable, 2 with every problem."""
    registry = _read(file)
    console.print(f"ok: {escape(str(file))}: {_counts(registry)}", highlight=False)


@app.command()
def load(
    file: RegistryFile,
    reason: Annotated[str, typer.Option(help="Why it changes; kept in the audit log.")] = "",
) -> None:
    """Validate a registry file and store it as a new version (none if it is unchanged)."""
    from spendtrail.ledger.registry_versions import load_history, save_version
    from spendtrail.registry import registry_changes

    registry = _read(file)
    try:
        with ledger().begin() as conn:
            previous = load_history(conn).latest()
            version = save_version(
                conn, registry, source_path=str(file.resolve()), actor=actor(), reason=reason
            )
            current = load_history(conn).version_at(datetime.now(UTC))
    except SpendtrailError as exc:
        fail(escape(str(exc)))
    if previous is not None and previous[0] == version:
        console.print(f"unchanged: {escape(str(file))} is registry version {version} already")
        return
    start = registry.effective_from
    console.print(
        f"loaded registry version {version}, valid from {_when(start) if start else 'now'}",
        highlight=False,
    )
    console.print(f"  {_counts(registry)}", highlight=False)
    if previous is not None:
        for section, change in registry_changes(previous[1], registry).items():
            console.print(f"  {section}: {escape(_describe(change))}", highlight=False)
    if current is not None and current.version != version:  # scheduled, or dated before another
        console.print(
            f"note: version {current.version} (valid from {_when(current.valid_from)}) "
            f"is the one in effect now",
            highlight=False,
        )


@app.command()
def show(
    version: Annotated[
        int | None, typer.Option(help="Show this version instead of the one in effect now.")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """Show a registry version (default: the one in effect now) and the version history."""
    from spendtrail.ledger.registry_versions import load_history

    try:
        with ledger().connect() as conn:
            history = load_history(conn)
    except SpendtrailError as exc:
        fail(escape(str(exc)))
    current = history.version_at(datetime.now(UTC))
    if current is None:
        fail("no registry loaded yet; load one with `spendtrail registry load FILE`")
    chosen = current if version is None else history.get(version)
    if chosen is None:
        known = ", ".join(str(v.version) for v in history.versions)
        fail(f"no registry version {version}; stored versions: {known}")
    if output_format is OutputFormat.json:
        typer.echo(
            json.dumps(
                {
                    **_version_summary(chosen),
                    "in_effect": chosen is current,
                    "registry": chosen.registry.to_document(),
                    "history": [_version_summary(v) for v in history.versions],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    console.print(_applications_table(chosen, current))
    if chosen.registry.provider_accounts:
        console.print(_accounts_table(chosen.registry))
    console.print(_history_table(history, current))


def _read(file: Path) -> Registry:
    from spendtrail.registry import load_registry

    try:
        return load_registry(file)
    except SpendtrailError as exc:
        fail(escape(str(exc)))


def _counts(registry: Registry) -> str:
    return ", ".join(
        f"{count} {section.replace('_', ' ')}" for section, count in registry.counts().items()
    )


def _describe(change: SectionChanges) -> str:
    parts = []
    if change.added:
        parts.append("added " + ", ".join(change.added))
    if change.removed:
        parts.append("removed " + ", ".join(change.removed))
    for key, fields in change.changed.items():
        parts.append(f"changed {key} ({', '.join(fields)})")
    return "; ".join(parts)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _version_summary(version: RegistryVersion) -> dict[str, object]:
    return {
        "version": version.version,
        "valid_from": version.valid_from.isoformat(),
        "loaded_at": version.loaded_at.isoformat(),
        "loaded_by": version.loaded_by,
        "source_path": version.source_path,
        "sha256": version.sha256,
    }


def _applications_table(chosen: RegistryVersion, current: RegistryVersion) -> Table:
    from rich.table import Table

    registry = chosen.registry
    status = "in effect now" if chosen is current else f"version {current.version} is in effect"
    table = Table(
        title=f"Registry version {chosen.version}, valid from {_when(chosen.valid_from)} "
        f"({status})",
        caption="* default when the caller sends none",
    )
    # Lists wrap at their commas; an id longer than its column folds rather than being cut.
    for column in ("Application", "Owner", "Allowed"):
        table.add_column(column, overflow="fold")
    for application in registry.applications.values():
        table.add_row(*_application_cells(registry, application, shared=False))
    table.add_row(*_application_cells(registry, registry.shared_pool, shared=True))
    return table


def _application_cells(registry: Registry, app: Application, *, shared: bool) -> list[str]:
    owner = registry.budget_owners[app.budget_owner]
    label = "[italic]shared pool[/italic]" if shared else escape(app.name)
    return [
        f"[bold]{escape(app.id)}[/bold]\n{label}",
        f"{escape(app.business_unit)} / {escape(app.cost_center)}\n"
        f"{escape(owner.name)} ({escape(owner.id)})",
        f"environments: {_choices(app.environments, app.default_environment)}\n"
        f"workloads: {_choices(app.workload_classes, app.default_workload_class)}",
    ]


def _accounts_table(registry: Registry) -> Table:
    from rich.table import Table

    table = Table(title="Provider accounts (whose bill lines they are)")
    for column in ("Provider", "Account", "Owner"):
        table.add_column(column, overflow="fold")
    for account in registry.provider_accounts:
        owner = "the gateway" if account.gateway else account.application or ""
        table.add_row(escape(account.provider), escape(account.label), escape(owner))
    return table


def _choices(allowed: tuple[str, ...], default: str | None) -> str:
    return ", ".join(escape(value) + ("*" if value == default else "") for value in allowed)


def _history_table(history: RegistryHistory, current: RegistryVersion) -> Table:
    from rich.table import Table

    table = Table(title="Registry versions")
    for column in ("Version", "Valid from", "Loaded", "Source", "SHA-256", ""):
        table.add_column(column, overflow="fold")
    for version in history.versions:
        table.add_row(
            str(version.version),
            _when(version.valid_from),
            f"{_when(version.loaded_at)} by {escape(version.loaded_by)}",
            escape(version.source_path),
            version.sha256[:12],
            "in effect" if version is current else "",
        )
    return table
