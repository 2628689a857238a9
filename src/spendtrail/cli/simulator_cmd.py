"""`spendtrail simulate-provider`: run the provider simulator (test double) in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spendtrail.cli.common import console, fail
from spendtrail.errors import SpendtrailError
from spendtrail.simulator.config import FAULTS  # named in --fault's help


def _fault_rates(
    error_rate: float, timeout_rate: float, cut_rate: float, faults: list[str]
) -> dict[str, float]:
    from spendtrail.simulator import spread_error_rate

    rates = spread_error_rate(error_rate)
    if timeout_rate:
        rates["timeout"] = timeout_rate
    if cut_rate:
        rates["cut_stream"] = cut_rate
    for item in faults:
        kind, _, rate = item.partition("=")
        try:
            rates[kind.strip()] = float(rate)
        except ValueError:
            message = f"--fault {item!r}: expected KIND=RATE, e.g. reset=0.01"
            raise SpendtrailError(message) from None
    return rates


def simulate_provider(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 8090,
    latency_ms: Annotated[float, typer.Option(
        min=0.0, help="Delay before each response (a stream's head).")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(
        min=0.0, help="Random extra delay, uniform in [0, jitter).")] = 0.0,
    ttft_ms: Annotated[float, typer.Option(
        min=0.0, help="Streams: delay from the head to the first chunk.")] = 0.0,
    chunk_delay_ms: Annotated[float, typer.Option(
        min=0.0, help="Streams: delay between chunks.")] = 0.0,
    error_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Fraction answered 500/502/503/429 (split evenly).")] = 0.0,
    timeout_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Fraction held for --timeout-hold-s seconds.")] = 0.0,
    cut_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Fraction cut after --cut-after chunks.")] = 0.0,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help=f"KIND=RATE, repeatable; KIND is one of {', '.join(FAULTS)}.")] = None,
    cut_after: Annotated[int, typer.Option(
        min=0, help="Data chunks a cut stream sends before the connection closes.")] = 3,
    timeout_hold_s: Annotated[float, typer.Option(
        min=0.0, help="How long a timeout fault holds the request.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed of the fault and jitter draws.")] = 0,
    usage_log: Annotated[Path | None, typer.Option(
        help="Append CometAPI-format log rows (CSV) to this file.")] = None,
    prices: Annotated[Path | None, typer.Option(
        help="YAML price file (docs/simulator.md); default: a built-in illustrative table.")
    ] = None,
    keys: Annotated[Path | None, typer.Option(
        help="YAML file TOKEN_NAME: API_KEY; only these keys are accepted. Default: any key "
             "not starting with 'invalid'.")] = None,
    cache_min_tokens: Annotated[int | None, typer.Option(
        min=1, help="Prompts this long report cached tokens.")] = None,
    group: Annotated[str, typer.Option(help="The group column of the usage log.")] = "default",
    access_token: Annotated[str | None, typer.Option(
        envvar="SPENDTRAIL_SIMULATOR_ACCESS_TOKEN",
        help="Serve /api/log/self and /api/log/self/export to this bearer token.")] = None,
) -> None:
    """Run an OpenAI-compatible provider simulator (a test double) until interrupted."""
    from spendtrail.simulator import DEFAULT_PRICES, SimulatorConfig, load_keys, load_prices

    try:
        config = SimulatorConfig(
            prices=load_prices(prices) if prices else DEFAULT_PRICES,
            keys=load_keys(keys) if keys else None,
            latency_ms=latency_ms, jitter_ms=jitter_ms, ttft_ms=ttft_ms,
            chunk_delay_ms=chunk_delay_ms,
            fault_rates=_fault_rates(error_rate, timeout_rate, cut_rate, fault or []),
            seed=seed, timeout_hold_s=timeout_hold_s, cut_after_chunks=cut_after,
            cache_min_tokens=cache_min_tokens, usage_log=usage_log, group=group,
            access_token=access_token,
        )

        def ready(url: str) -> None:
            console.print(f"simulator listening on {url}", highlight=False)
            if usage_log is not None:
                console.print(f"usage log: {usage_log}", highlight=False)

        from spendtrail.simulator.server import run_simulator  # aiohttp: only when serving

        run_simulator(config, host, port, on_ready=ready)
    except SpendtrailError as exc:
        fail(str(exc))
    except OSError as exc:  # the port is taken, the address is not ours, ...
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
