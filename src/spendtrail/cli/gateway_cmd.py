"""`spendtrail gateway` (run the OpenAI-compatible gateway) and `spendtrail keys`."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import socket
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from spendtrail.cli.common import actor, console, err_console, fail, ledger, settings
from spendtrail.errors import SpendtrailError
from spendtrail.gateway.budget import DEFAULT_OUTPUT_TOKENS  # named in the options' help
from spendtrail.gateway.config import PROFILES  # named in --profile's help
from spendtrail.gateway.polling import DEFAULT_WINDOW_US  # the default of --busy-poll

if TYPE_CHECKING:
    from spendtrail.budgets import BudgetGuard, Counters
    from spendtrail.gateway import GatewayKey, Policy, Routes

keys_app = typer.Typer(
    help="Gateway keys: issued per application, shown once, stored hashed.",
    no_args_is_help=True,
)

Reason = Annotated[str, typer.Option(help="Why; kept in the audit log.")]


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


@keys_app.command("create")
def create(
    application: Annotated[str, typer.Option(help="Application id from the registry.")],
    environment: Annotated[
        str | None,
        typer.Option(help="Fix the environment too; default: the caller may name one."),
    ] = None,
    reason: Reason = "",
) -> None:
    """Issue a gateway key. The key is printed once; only its hash is stored."""
    from spendtrail.gateway import create_key

    try:
        with ledger().begin() as conn:
            key, value = create_key(conn, application=application, environment=environment,
                                    actor=actor(), reason=reason)
    except SpendtrailError as exc:
        fail(str(exc))
    err_console.print(
        f"created gateway key {key.id} for {escape(_scope(key))}; it is shown only now, "
        "store it in the application's secret store:",
        highlight=False,
    )
    typer.echo(value)  # alone on stdout, so it can be piped into a secret store


@keys_app.command("list")
def list_keys(
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """Every gateway key with its prefix, owner and state (never the key itself)."""
    from rich.table import Table

    from spendtrail.gateway import load_keys

    with ledger().connect() as conn:
        keys = load_keys(conn)
    now = datetime.now(UTC)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps([{**key.record(), "active": key.active(now)} for key in keys],
                              indent=2, default=str))
        return
    table = Table(title="Gateway keys")
    for column in ("Id", "Prefix", "Application", "Environment", "Created", "State"):
        table.add_column(column, overflow="fold")
    for key in keys:
        table.add_row(key.id, key.key_prefix + "…", escape(key.application),
                      escape(key.environment or "any"),
                      f"{_when(key.created_at)} by {escape(key.created_by)}", _state(key, now))
    console.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="Key id (keys list).")],
           reason: Reason = "") -> None:
    """Revoke a key; running gateways refuse it within their refresh interval."""
    from spendtrail.gateway import revoke_key

    try:
        with ledger().begin() as conn:
            key = revoke_key(conn, key_id, actor=actor(), reason=reason)
    except SpendtrailError as exc:
        fail(str(exc))
    console.print(f"revoked {key.id} ({escape(_scope(key))}) at {_when(key.revoked_at)}",
                  highlight=False)


@keys_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="Key id (keys list).")],
    grace: Annotated[
        int, typer.Option(min=0, help="Seconds the old key keeps working.")
    ] = 0,
    reason: Reason = "",
) -> None:
    """Issue a new key for the same application and environment and revoke the old one
    (after the grace period). The new key is printed once."""
    from spendtrail.gateway import rotate_key

    try:
        with ledger().begin() as conn:
            key, value = rotate_key(conn, key_id, actor=actor(), reason=reason,
                                    grace=timedelta(seconds=grace))
    except SpendtrailError as exc:
        fail(str(exc))
    err_console.print(
        f"rotated {key_id} to {key.id} for {escape(_scope(key))}; the old key stops working "
        f"{'now' if not grace else f'in {grace} s'}. The new key is shown only now:",
        highlight=False,
    )
    typer.echo(value)


class CounterStore(StrEnum):
    memory = "memory"
    sql = "sql"
    redis = "redis"


def gateway(
    upstream: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible base URL; default: the profile's."),
    ] = None,
    profile: Annotated[
        str,
        typer.Option(help=f"Upstream profile: {', '.join(PROFILES)} or custom. Sets the "
                     "default URL, provider name and key variable."),
    ] = "cometapi",
    provider: Annotated[
        str | None,
        typer.Option(help="Provider name in events and the price catalog; default: the "
                     "profile name."),
    ] = None,
    routes: Annotated[
        Path | None,
        typer.Option(help="YAML routes file: which upstream serves which model, each with "
                     "its key variable (docs/gateway.md). Replaces --profile, --upstream and "
                     "--provider."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8787,
    policy_file: Annotated[
        Path | None, typer.Option(help="YAML header policy (docs/gateway.md).")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="ENV=reject|quarantine, repeatable; '*=MODE' sets the default. "
                     "Overrides --policy-file."),
    ] = None,
    refresh_seconds: Annotated[
        float, typer.Option(min=0.1, help="How often keys, registry and prices reload.")
    ] = 2.0,
    connect_timeout: Annotated[float, typer.Option(min=0.1)] = 10.0,
    read_timeout: Annotated[
        float, typer.Option(min=0.1, help="Longest silence from the provider, in seconds.")
    ] = 600.0,
    ingest: Annotated[
        bool, typer.Option(envvar="SPENDTRAIL_GATEWAY_INGEST",
                           help="Move journaled events into the ledger from this process; "
                           "--no-ingest when `spendtrail ingest --follow` runs elsewhere.")
    ] = True,
    budget_counters: Annotated[
        CounterStore, typer.Option(help="Where settled spend is counted: memory (one "
                                   "gateway), sql (replicas sharing the ledger) or redis.")
    ] = CounterStore.memory,
    redis_url: Annotated[
        str, typer.Option(help="Redis for --budget-counters redis.")
    ] = "redis://127.0.0.1:6379/0",
    reserve_output_tokens: Annotated[
        int, typer.Option(min=1, help="Output tokens a budgeted call is assumed to write when "
                          "it sets no max_tokens; its cost is reserved until it settles.")
    ] = DEFAULT_OUTPUT_TOKENS,
    grace: Annotated[
        float, typer.Option(min=0, envvar="SPENDTRAIL_GATEWAY_GRACE",
                            help="On SIGINT or SIGTERM, seconds calls in flight may finish "
                            "before the gateway exits.")
    ] = 10.0,
    loop: Annotated[
        str, typer.Option(envvar="SPENDTRAIL_GATEWAY_LOOP",
                          help="Event loop: uvloop (pip install 'spendtrail[uvloop]'), asyncio, "
                          "or auto (asyncio's with --busy-poll, else uvloop when installed).")
    ] = "auto",
    busy_poll: Annotated[
        int, typer.Option(min=0, envvar="SPENDTRAIL_GATEWAY_BUSY_POLL",
                          help="Microseconds the event loop looks for work before it sleeps, "
                          "while its waits are that short (0: never; not on uvloop). Less "
                          "latency a call on virtual machines, at up to that much CPU a "
                          "wait.")
    ] = DEFAULT_WINDOW_US,
    workers: Annotated[
        int | None, typer.Option(min=1, envvar="SPENDTRAIL_GATEWAY_WORKERS",
                                 help="Worker processes on the port, each an event loop of "
                                 "its own; one ingester serves them all. Default: the number "
                                 "of cores (1 with memory budget counters and budgets "
                                 "defined).")
    ] = None,
) -> None:
    """Run the OpenAI-compatible gateway. The provider key comes from the environment
    (SPENDTRAIL_UPSTREAM_KEY, or the profile's variable such as COMETAPI_KEY)."""
    from spendtrail.budgets import BudgetGuard
    from spendtrail.gateway import (
        GatewayConfig,
        Policy,
        Routes,
        load_policy,
        load_routes,
        upstream_key,
    )
    from spendtrail.gateway.budget import GuardedBudgets
    from spendtrail.journal.jetstream import parse_journal_url
    from spendtrail.ledger.url import redact_url

    if profile not in PROFILES and profile != "custom":
        fail(f"--profile: expected one of {', '.join(PROFILES)}, custom; got '{profile}'")
    if routes is not None and (upstream is not None or provider is not None
                               or profile != "cometapi"):
        fail("--routes names every upstream: leave out --profile, --upstream and --provider")
    if routes is None and profile == "custom" and (upstream is None or provider is None):
        fail("--profile custom needs --upstream URL and --provider NAME")
    try:
        if routes is not None:
            table = load_routes(routes)
        else:
            known = PROFILES.get(profile)
            table = Routes.single(upstream or known.base_url, upstream_key(profile),
                                  (provider or profile).lower(), known.api if known else "openai")
        chosen = load_policy(policy_file) if policy_file else Policy()
        chosen = _with_overrides(chosen, policy or [])
        s = settings()
        journal = (parse_journal_url(s.journal_url).display if s.journal_url
                   else f"spool {s.spool}")
    except SpendtrailError as exc:
        fail(str(exc))
    from spendtrail.gateway.app import LOOPS, listen, run, serve  # aiohttp: only when serving
    from spendtrail.gateway.app import ingest as ingest_journal
    from spendtrail.gateway.workers import (
        default_workers,
        listen_shared,
        plan_workers,
        shared_metrics_dir,
        supervise,
    )

    if loop not in LOOPS:
        fail(f"--loop: expected one of {', '.join(LOOPS)}; got '{loop}'")
    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401  (checked before the port is taken)
        except ImportError:
            fail("--loop uvloop needs the uvloop package: pip install 'spendtrail[uvloop]'")
    polling = busy_poll / 1e6  # seconds; run() does not poll on uvloop
    count = workers or default_workers()
    try:  # first, so a busy port is the only thing a second gateway does
        sockets = listen_shared(host, port, count) if count > 1 else [listen(host, port)]
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

    def config(budgets: BudgetGuard | None, ingest: bool,
               metrics_dir: Path | None = None) -> GatewayConfig:
        return GatewayConfig(
            routes=table,
            ledger_url=s.ledger_url,
            spool_dir=s.spool,
            journal_url=s.journal_url,
            policy=chosen,
            refresh_seconds=refresh_seconds,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ingest=ingest,
            grace_seconds=grace,
            metrics_dir=metrics_dir,
            budget=GuardedBudgets(budgets or BudgetGuard.load(
                ledger(), _counters(budget_counters, redis_url)),
                output_tokens=reserve_output_tokens),
        )

    guard = BudgetGuard.load(ledger(), _counters(budget_counters, redis_url))  # migrates first
    try:
        count, note = plan_workers(workers, count, guard)
    except SpendtrailError as exc:
        fail(str(exc))
    for extra in sockets[count:]:
        extra.close()
    del sockets[count:]
    rules = ", ".join(f"{env}={mode}" for env, mode in sorted(chosen.modes.items()))
    bound = sockets[0].getsockname()[1]  # the port chosen when --port 0
    err_console.print(
        f"spendtrail gateway on http://{host}:{bound}/v1 -> {escape(_upstreams(table))} "
        f"(keys from the environment)\n"
        f"  {count} worker{'s' if count > 1 else ''}, ledger "
        f"{escape(redact_url(s.ledger_url))}, journal {escape(journal)}\n"
        f"  header policy: {rules + ', ' if rules else ''}environments the registry marks "
        f"strict: reject, otherwise {chosen.default}" + (f"\n  {note}" if note else ""),
        highlight=False,
    )
    # The start-up heap (the imported modules) lives as long as the process: keep it
    # out of the cyclic collector, whose full passes over it cost ~60 ms (docs/benchmarks.md).
    # A call's objects die by reference counting, so the young generation is collected every
    # 20,000 allocations, not 700: ~4 % more calls/s at concurrency 16.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000)
    # SIGINT and SIGTERM drain calls in flight for --grace seconds, seal the spool and exit 0
    # (serve takes both signals over, even when SIGINT was inherited ignored). Ctrl-C before
    # the server runs is a plain interrupt.
    if count == 1:
        with contextlib.suppress(KeyboardInterrupt):
            run(serve(config(guard, ingest), sock=sockets[0], stop_on_signals=True), loop,
                polling)
        return
    ledger().dispose()  # no connection crosses a fork: each worker opens its own
    metrics_dir = shared_metrics_dir(s.spool, bound)

    def worker(sock: socket.socket) -> None:
        ledger().dispose(close=False)
        with contextlib.suppress(KeyboardInterrupt):
            run(serve(config(None, False, metrics_dir), sock=sock, stop_on_signals=True),
                loop, polling)

    host_ingester = functools.partial(ingest_journal, config(guard, True)) if ingest else None
    raise typer.Exit(supervise(sockets, worker, host_ingester))


def _upstreams(routes: Routes) -> str:
    return ", ".join(f"{upstream.url} (provider {upstream.provider})"
                     for upstream in routes.upstreams)


def _counters(store: CounterStore, redis_url: str) -> Counters:
    from spendtrail.budgets import MemoryCounters, RedisCounters, SqlCounters

    if store is CounterStore.memory:
        return MemoryCounters()
    if store is CounterStore.sql:
        return SqlCounters(ledger())
    try:
        import redis  # optional: pip install 'spendtrail[redis]'
    except ImportError:
        fail("--budget-counters redis needs the redis package: pip install 'spendtrail[redis]'")
    return RedisCounters(redis.Redis.from_url(redis_url))


def _with_overrides(policy: Policy, rules: list[str]) -> Policy:
    from spendtrail.gateway import Policy
    from spendtrail.gateway.identity import MODES

    modes = dict(policy.modes)
    default = policy.default
    for rule in rules:
        env, sep, mode = rule.partition("=")
        if not sep or not env or mode not in MODES:
            raise SpendtrailError(f"--policy: expected ENV=reject|quarantine, got '{rule}'")
        if env == "*":
            default = mode  # type: ignore[assignment]
        else:
            modes[env] = mode  # type: ignore[assignment]
    return Policy(modes, default)


def _scope(key: GatewayKey) -> str:
    return key.application + (f" in {key.environment}" if key.environment else "")


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _state(key: GatewayKey, now: datetime) -> str:
    if key.revoked_at is None:
        return "active"
    if key.active(now):
        return f"active until {_when(key.revoked_at)}"
    return f"revoked {_when(key.revoked_at)}"

