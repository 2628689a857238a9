"""The `spendtrail` command. Faces hold no business logic: parse, call a layer, render.

Start-up is kept short (docs/benchmarks.md, "CLI start-up"): every command lives in a
`*_cmd.py` module named in COMMANDS, with its one-line help, and that module is imported only
when the command runs (or its own --help is asked for). `spendtrail --help` lists the table
without importing any of them; the modules import the domain layers inside their commands.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    from collections.abc import Sequence

# name: (module in spendtrail.cli, attribute: a Typer group or a command function, help line)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("ingest_cmd", "init", "Create the spendtrail home, the ledger (migrated) and "
             "the spool folder."),
    "ingest": ("ingest_cmd", "ingest", "Validate, price and write events to the ledger; "
               "idempotent on event id."),
    "registry": ("registry_cmd", "app", "The owner registry."),
    "prices": ("prices_cmd", "app", "The dated, sourced price catalog."),
    "ledger": ("ledger_cmd", "app", "Where the ledger is and what it holds."),
    "costs": ("costs_cmd", "costs", "Cost by owner, model and day for a period, with "
              "unpriced and quarantined counts."),
    "budgets": ("budgets_cmd", "app", "Budgets: limits per owner and period."),
    "alerts": ("alerts_cmd", "app", "Alerts: check the books, deliver to webhooks and "
               "e-mail, list them."),
    "gateway": ("gateway_cmd", "gateway", "Run the OpenAI-compatible gateway."),
    "keys": ("gateway_cmd", "keys_app", "Gateway keys: create, list, revoke, rotate."),
    "simulate-provider": ("simulator_cmd", "simulate_provider", "Run an OpenAI-compatible "
                          "provider simulator (a test double) until interrupted."),
    "import": ("integrations_cmd", "import_app", "Import usage captured by other tools "
               "(LiteLLM spend logs)."),
    "otlp": ("integrations_cmd", "otlp", "Receive OpenTelemetry traces (OTLP/HTTP) and "
             "journal their GenAI model calls."),
    "bills": ("bills_cmd", "app", "The provider's bills: import, fetch, list and void."),
    "reconcile": ("reconcile_cmd", "reconcile", "Match a bill against the ledger for a period "
                  "and record the result."),
    "reprice": ("reprice_cmd", "reprice", "Reprice the period's events at their own time with "
                "the current price catalog."),
    "report": ("report_cmd", "app", "Chargeback statements, unit cost, retries."),
    "export": ("export_cmd", "app", "Export the ledger in standard formats."),
    "allocation": ("allocation_cmd", "allocation_app", "Coverage KPIs, shared-cost rules and "
                   "the month's allocation entries."),
    "close": ("close_cmd", "close", "Close a month: list its blockers, store its allocation "
              "entries, snapshot its statements."),
    "reopen": ("close_cmd", "reopen", "Reopen a closed month, with a reason (audited)."),
    "exceptions": ("allocation_cmd", "exceptions_app",
                   "The queue of quarantined (unallocated) usage."),
    "sources": ("evidence_cmd", "sources_app", "The register of sources relied on."),
    "review": ("evidence_cmd", "review_app", "Chargeback review notes."),
    "followups": ("evidence_cmd", "followups_app", "Open questions, routed."),
    "audit": ("evidence_cmd", "audit_app", "The append-only audit trail."),
    "handoff": ("evidence_cmd", "handoff_app", "Cost handoff records."),
    "serve": ("serve_cmd", "serve", "Serve the web console (/) and its HTTP API (/api/v1)."),
    "users": ("users_cmd", "users_app", "Console users: add, list, disable."),
    "tokens": ("users_cmd", "tokens_app", "API tokens for scripts: create, list, revoke."),
    "smoke": ("evidence_cmd", "smoke", "Smoke-test the request path through a gateway on "
              "loopback; exits 1 on failure."),
}


class _Unloaded(TyperCommand):
    """A command listed by name and help line; its module is not imported yet."""

    def __init__(self, name: str, module: str, attribute: str, help_line: str) -> None:
        super().__init__(name=name, help=help_line)
        self.module, self.attribute = module, attribute

    def load(self) -> Any:
        target = getattr(importlib.import_module(f"spendtrail.cli.{self.module}"),
                         self.attribute)
        if isinstance(target, typer.Typer):
            group = typer.main.get_group(target)
            group.name, group.help = self.name, self.help
            return group
        single = typer.Typer(add_completion=False)
        single.command(self.name)(target)
        return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """Lists every command of COMMANDS; imports a command's module when the command is
    resolved (to run it, show its help or complete it), never to list it."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (module, attribute, help_line) in COMMANDS.items():
            self.commands.setdefault(name, _Unloaded(name, module, attribute, help_line))

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, _Unloaded):
            command = self.commands[command.name] = command.load()
        return name, command, rest


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"spendtrail {version('spendtrail')}")
        raise typer.Exit()


app = typer.Typer(cls=LazyGroup, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def spendtrail(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the installed version and exit.")] = False,
) -> None:
    """spendtrail: explainable, chargeable AI API spend."""


def main(args: Sequence[str] | None = None) -> None:
    try:
        app(args)
    except SpendtrailError as exc:
        from spendtrail.cli.common import fail

        try:
            fail(str(exc))
        except typer.Exit as done:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
