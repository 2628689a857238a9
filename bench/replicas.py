"""Three gateway replicas on one PostgreSQL ledger, one of them SIGKILLed mid-load.

    python bench/replicas.py [--seconds 120] [--clients 24] [--journal spool|nats]
                             [--budget-usd 0.008] [--latency-ms 20]

Every part is a real process: the provider simulator (`spendtrail simulate-provider`, with
its usage log: the provider's own record of every call it took), three `spendtrail gateway
--no-ingest --budget-counters redis` processes on ports of their own, and the ingesters:

- `--journal spool` (the default): each gateway journals to a spool folder of its own, as a
  replica with its own volume does, and one `spendtrail ingest --follow` per folder;
- `--journal nats`: the gateways journal to one NATS JetStream stream (127.0.0.1:4222, a
  stream of this run's own, deleted at the end) and two `spendtrail ingest --follow`
  processes share its consumer.

The ledger is a fresh PostgreSQL database on 127.0.0.1:5432 (dropped at the end unless
--keep) holding the example registry and prices, a key for `support-assistant` and one
for `search-summaries`, and a hard money budget on `search-summaries` for the month; the
budget counters are in Redis (127.0.0.1:6379), shared by the three gateways.

The load is `--clients` aiohttp clients in this process, one call in flight each, spread
round-robin over the gateways; a quarter of them call as `search-summaries` (half their
calls without `max_tokens`, which the gateways reserve as 8 output tokens while the
simulator writes more, so some estimates are below the real cost). Halfway through, gateway
1 is SIGKILLed with calls in flight and started again on its port and journal.

At the end (gateways stopped, the journal ingested, held intents resolved) it prints the
throughput, the answered calls, and checks the ledger against the answers and against the
provider's log: every answered call has its event (lost), no provider call has two events
(duplicated), every call the provider took has an event or an `interrupted` one (the calls
in flight at the kill), no intent left held. Then the budget: its spend in the ledger
against its limit, and the overshoot against the bound of docs/budgets.md (the sum over the
admitted calls of what each cost beyond its estimate).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import psycopg
import sqlalchemy as sa

from spendtrail.events import Usage
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.schema import cost_entries, events, ingest_rejects, pending_intents
from spendtrail.money import from_pico
from spendtrail.pricing import price_usage

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MODEL = "gpt-4o-mini"
PROVIDER = "cometapi"
BUDGETED = "search-summaries"
UPSTREAM_KEY = "sk-bench-replicas-upstream"
RESERVE_OUTPUT_TOKENS = 8  # below what the simulator writes for a call without max_tokens
GATEWAYS = 3
KILLED = 1  # the gateway SIGKILLed halfway
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--journal", choices=("spool", "nats"), default="spool")
    parser.add_argument("--budget-usd", default="0.008", help="the hard monthly limit")
    parser.add_argument("--latency-ms", type=int, default=20, help="the simulator's delay")
    parser.add_argument("--keep", action="store_true", help="keep the database and folder")
    args = parser.parse_args()
    # Started in the background by a non-interactive shell, this script inherits an ignored
    # SIGINT; restore it so the servers it starts can be stopped cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    print(f"$ python bench/replicas.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"uptime at start: {_uptime()}")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="replicas-", dir=OUT))
    tag = uuid.uuid4().hex[:10]
    database = f"bench_replicas_{tag}"
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    stream = f"BENCH{tag.upper()}"
    budget_id = f"replicas-{tag}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "SPENDTRAIL_HOME": str(work),
        "SPENDTRAIL_ACTOR": "bench",
        "SPENDTRAIL_DATABASE_URL": db_url,
        "SPENDTRAIL_UPSTREAM_KEY": UPSTREAM_KEY,
        "COLUMNS": "200",
    }
    if args.journal == "nats":
        # A call lasts milliseconds here: a short horizon resolves the killed gateway's
        # intents within the run (docs/journal.md, "The orphan rule on a stream").
        env["SPENDTRAIL_JOURNAL_URL"] = f"{NATS}/{stream}?intent_horizon=5&ack_wait=5"
    _sql(f'CREATE DATABASE "{database}"')
    procs = Processes(work)
    try:
        keys = _seed(env, budget_id, args.budget_usd)
        simulator = procs.start(
            "simulator",
            [
                "simulate-provider",
                "--port",
                "0",
                "--latency-ms",
                str(args.latency_ms),
                "--usage-log",
                str(work / "provider-log.csv"),
            ],
            env,
        )
        upstream = _wait_line(work / "simulator.log", "simulator listening on ", simulator)
        ports = [_free_port() for _ in range(GATEWAYS)]
        gateway_args = [
            [
                "gateway",
                "--profile",
                "custom",
                "--upstream",
                upstream,
                "--provider",
                PROVIDER,
                "--port",
                str(port),
                "--no-ingest",
                "--budget-counters",
                "redis",
                "--redis-url",
                REDIS,
                "--reserve-output-tokens",
                str(RESERVE_OUTPUT_TOKENS),
                "--refresh-seconds",
                "1",
            ]
            for port in ports
        ]
        gateway_env = [
            {**env, "SPENDTRAIL_SPOOL_DIR": str(work / f"spool-{n}")} for n in range(GATEWAYS)
        ]
        for n in range(GATEWAYS):
            procs.start(f"gateway-{n}", gateway_args[n], gateway_env[n])
        for n in range(GATEWAYS):
            _wait_ready(ports[n], procs.get(f"gateway-{n}"), work / f"gateway-{n}.log")
        ingesters = (
            [f"ingest-{n}" for n in range(GATEWAYS)]
            if args.journal == "spool"
            else ["ingest-0", "ingest-1"]
        )
        for n, name in enumerate(ingesters):
            procs.start(
                name,
                ["ingest", "--follow", "--interval", "0.5"],
                gateway_env[n] if args.journal == "spool" else env,
            )

        def kill_and_restart() -> tuple[float, float]:
            killed_at = time.monotonic()
            procs.get(f"gateway-{KILLED}").send_signal(signal.SIGKILL)
            procs.get(f"gateway-{KILLED}").wait(10)
            procs.start(f"gateway-{KILLED}", gateway_args[KILLED], gateway_env[KILLED])
            _wait_ready(
                ports[KILLED], procs.get(f"gateway-{KILLED}"), work / f"gateway-{KILLED}.log"
            )
            return killed_at, time.monotonic() - killed_at

        load = asyncio.run(_load(ports, keys, args.clients, args.seconds, kill_and_restart))
        print(f"uptime at the end of the load: {_uptime()}")
        if args.keep:  # what each answer said, to look into the ledger with
            (work / "answered.txt").write_text(
                "".join(f"{a.event_id} {a.application}\n" for a in load.answered)
            )
        for n in range(GATEWAYS):
            procs.stop(f"gateway-{n}")
        procs.stop("simulator")  # closes its usage log
        billed = _billed(work / "provider-log.csv")
        caught_up = _wait_for_ledger(db_url, len(billed), timeout=180)
        for name in ingesters:
            procs.stop(name)
        _report(args, load, billed, caught_up, db_url, budget_id, env)
    finally:
        procs.stop_all()
        _forget_budget(budget_id)
        if args.journal == "nats":
            _delete_stream(stream)
        if args.keep:
            print(f"kept: database {database}, folder {work}")
        else:
            _sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            shutil.rmtree(work, ignore_errors=True)


# -- set-up ------------------------------------------------------------------------------------


def _seed(env: dict, budget_id: str, limit: str) -> dict[str, str]:
    """Registry, prices, a key per application, the hard budget; returns the keys."""
    _cli(env, "registry", "load", str(ROOT / "examples" / "registry.yaml"))
    _cli(env, "prices", "import", "sheet", str(ROOT / "examples" / "prices.yaml"))
    keys = {
        app: _cli(
            env, "keys", "create", "--application", app, "--environment", "production"
        ).strip()
        for app in ("support-assistant", BUDGETED)
    }
    _cli(
        env,
        "budgets",
        "set",
        budget_id,
        "--application",
        BUDGETED,
        "--period",
        "month",
        "--limit",
        f"{limit} USD",
        "--hard",
        "--reason",
        "bench/replicas.py",
    )
    return keys


def _cli(env: dict, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "spendtrail.cli.app", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"spendtrail {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def _sql(statement: str) -> None:
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as conn:
        conn.execute(statement)


class Processes:
    """The servers of the run by name, their output in `<name>.log` in the work folder."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        with (self.work / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "spendtrail.cli.app", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._procs[name] = proc
        return proc

    def get(self, name: str) -> subprocess.Popen:
        return self._procs[name]

    def stop(self, name: str) -> None:
        """SIGTERM (a gateway drains its calls and seals its spool), SIGKILL after 30 s."""
        proc = self._procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for name in self._procs:
            self.stop(name)


def _wait_line(log: Path, prefix: str, proc: subprocess.Popen) -> str:
    """The rest of the first line of `log` that starts with `prefix`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else ():
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"{log.stem} did not start:\n{log.read_text()[-2000:]}")


def _wait_ready(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:  # not listening yet, or 503 until its snapshot is loaded
            time.sleep(0.05)
    raise SystemExit(f"{log.stem} did not become ready:\n{log.read_text()[-2000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# -- the load ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    event_id: str
    application: str
    body_bytes: int
    max_tokens: int | None


@dataclass
class Load:
    seconds: float = 0.0
    answered: list[Answered] = field(default_factory=list)
    per_gateway: Counter = field(default_factory=Counter)
    refused: int = 0  # 429 budget_exceeded
    failed: Counter = field(default_factory=Counter)  # other answers and connection errors
    in_flight_at_kill: int = 0
    killed_after: float = 0.0
    restart_seconds: float = 0.0
    first_refusal_after: float | None = None


async def _load(
    ports: list[int], keys: dict[str, str], clients: int, seconds: float, kill_and_restart
) -> Load:
    load = Load()
    in_flight = Counter()  # calls outstanding per gateway
    started = time.monotonic()
    deadline = started + seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        gateway = n % len(ports)
        app = BUDGETED if n % 4 == 3 else "support-assistant"
        headers = {"Authorization": f"Bearer {keys[app]}", "Content-Type": "application/json"}
        if app == BUDGETED:
            headers["X-Spendtrail-Workload"] = "batch"
        url = f"http://127.0.0.1:{ports[gateway]}/v1/chat/completions"
        i = 0
        while time.monotonic() < deadline:
            i += 1
            max_tokens = 16 if i % 2 else None
            payload = {"model": MODEL, "messages": [{"role": "user", "content": f"q {n} {i}"}]}
            if max_tokens:
                payload["max_tokens"] = max_tokens
            body = json.dumps(payload).encode()
            in_flight[gateway] += 1
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        load.answered.append(
                            Answered(
                                response.headers["X-Spendtrail-Event-Id"],
                                app,
                                len(body),
                                max_tokens,
                            )
                        )
                        load.per_gateway[gateway] += 1
                        continue
                    if response.status == 429:
                        load.refused += 1
                        if load.first_refusal_after is None:
                            load.first_refusal_after = time.monotonic() - started
                    else:
                        load.failed[f"HTTP {response.status}"] += 1
            except (TimeoutError, aiohttp.ClientError) as error:
                load.failed[type(error).__name__] += 1
            finally:
                in_flight[gateway] -= 1
            await asyncio.sleep(0.05)  # refused or failed: the client backs off a little

    async def killer() -> None:
        await asyncio.sleep(seconds / 2)
        load.in_flight_at_kill = in_flight[KILLED]
        killed_at, load.restart_seconds = await asyncio.to_thread(kill_and_restart)
        load.killed_after = killed_at - started

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        killing = asyncio.ensure_future(killer())
        await asyncio.gather(*(client(n, session) for n in range(clients)))
        load.seconds = time.monotonic() - started
        await killing  # a restart slower than the rest of the run ends after the load
    return load


# -- the checks -------------------------------------------------------------------------------


def _billed(log: Path) -> list[str]:
    """The request ids of the calls the provider took (its usage log; error rows too)."""
    with log.open(newline="") as handle:
        return [row["request_id"] for row in csv.DictReader(handle)]


def _wait_for_ledger(db_url: str, billed: int, timeout: float) -> bool:
    """Until every billed call can have its event and no intent is held."""
    engine = sa.create_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                count = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()
                held = conn.execute(
                    sa.select(sa.func.count()).select_from(pending_intents)
                ).scalar()
            if count >= billed and held == 0:
                return True
            time.sleep(0.5)
        return False
    finally:
        engine.dispose()


def _report(
    args, load: Load, billed: list[str], caught_up: bool, db_url: str, budget_id: str, env: dict
) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events)).all()
        held = conn.execute(sa.select(sa.func.count()).select_from(pending_intents)).scalar()
        costs = dict(
            conn.execute(
                sa.select(cost_entries.c.event_id, cost_entries.c.amount_pico).where(
                    cost_entries.c.revision == 1
                )
            ).all()
        )
        catalog = load_catalog(conn)
        rejects = conn.execute(sa.select(ingest_rejects.c.source, ingest_rejects.c.error)).all()
    engine.dispose()

    by_id = {row.event_id: row for row in rows}
    by_rid = Counter(row.provider_request_id for row in rows if row.provider_request_id)
    billed_set = set(billed)
    lost = [a.event_id for a in load.answered if a.event_id not in by_id]
    # an answered call's event was journaled before its answer: it must not be `interrupted`
    answered_interrupted = [
        a.event_id
        for a in load.answered
        if a.event_id in by_id and by_id[a.event_id].outcome == "interrupted"
    ]
    duplicated = sum(count - 1 for count in by_rid.values() if count > 1)
    phantom = [rid for rid in by_rid if rid not in billed_set]  # an event of no billed call
    interrupted = [row for row in rows if row.outcome == "interrupted"]
    blind = [row for row in interrupted if row.provider_request_id is None]
    without_event = [rid for rid in billed if rid not in by_rid]

    answered = len(load.answered)
    distinct = len({a.event_id for a in load.answered})
    print()
    print(
        f"journal: {args.journal}; {GATEWAYS} gateways, {args.clients} clients, "
        f"simulator latency {args.latency_ms} ms, {load.seconds:.1f} s of load"
    )
    print(
        f"throughput: {answered / load.seconds:,.0f} answered calls/s "
        f"({answered:,} answered; per gateway "
        f"{', '.join(f'{load.per_gateway[n]:,}' for n in range(GATEWAYS))}); "
        f"{load.refused:,} refused by the budget (429); failed: "
        f"{dict(load.failed) or 'none'}"
    )
    print(
        f"kill: gateway {KILLED} SIGKILLed at {load.killed_after:.1f} s with "
        f"{load.in_flight_at_kill} calls in flight, serving again after "
        f"{load.restart_seconds:.2f} s"
    )
    print(
        f"ledger: {len(rows):,} events for {len(billed):,} calls the provider took; "
        f"caught up: {'yes' if caught_up else 'NO (timed out)'}; held intents: {held}"
    )
    print(f"  lost (answered, no event): {len(lost)}")
    print(f"  answers carrying an event id another answer carried too: {answered - distinct}")
    print(f"  answered but recorded as interrupted: {len(answered_interrupted)}")
    print(f"  journal lines rejected at ingest: {len(rejects)}")
    for source, error in rejects[:5]:
        print(f"    {Path(source).name}: {error[:160]}")
    print(f"  duplicated (a provider call with two events): {duplicated}")
    print(f"  events of no provider call: {len(phantom)}")
    print(
        f"  interrupted events: {len(interrupted)} ({len(blind)} without the provider's "
        f"request id); provider calls without an event of their own: {len(without_event)} "
        f"({'all covered' if len(without_event) <= len(blind) else 'NOT covered'} "
        "by those interrupted events)"
    )

    budget = json.loads(_cli(env, "budgets", "show", budget_id, "--format", "json"))[0]
    limit, spend = Decimal(str(budget["limit"])), Decimal(str(budget["spent"]))
    bound = _bound(load.answered, costs, by_id, catalog)
    overshoot = max(spend - limit, Decimal(0))
    budgeted_interrupted = sum(1 for row in interrupted if row.application == BUDGETED)
    print(
        f"budget {budget_id} (application {BUDGETED}, hard): spent {spend} of {limit} USD; "
        f"first refusal at "
        f"{'never' if load.first_refusal_after is None else f'{load.first_refusal_after:.1f} s'}"
    )
    print(
        f"  overshoot: {overshoot} USD; documented bound (sum over admitted calls of "
        f"max(0, real cost - estimate)): {bound} USD -> "
        f"{'within' if overshoot <= bound else 'BEYOND'} the bound"
    )
    print(
        f"  interrupted calls of {BUDGETED} (unpriced until reconciled, so not in the "
        f"spend): {budgeted_interrupted}"
    )


def _bound(answered: list[Answered], costs: dict, by_id: dict, catalog) -> Decimal:
    """docs/budgets.md "The bound": over the budgeted application's admitted calls, what
    each really cost beyond its estimate (the gateways' estimate: body bytes / 4 input
    tokens, max_tokens or RESERVE_OUTPUT_TOKENS output tokens, priced like the call)."""
    total = 0
    for call in answered:
        if call.application != BUDGETED or call.event_id not in by_id:
            continue
        entry = catalog.lookup(PROVIDER, MODEL, _aware(by_id[call.event_id].started_at))
        usage = Usage(
            input_tokens=math.ceil(call.body_bytes / 4),
            output_tokens=call.max_tokens or RESERVE_OUTPUT_TOKENS,
            requests=1,
        )
        estimate = price_usage(usage, entry).total_pico
        total += max(0, (costs.get(call.event_id) or 0) - estimate)
    return from_pico(total)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _forget_budget(budget_id: str) -> None:
    """Drop this run's counters from the shared Redis."""
    import redis

    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(f"spendtrail:budget:{{{budget_id}:*"):
        client.delete(key)
    client.close()


def _delete_stream(stream: str) -> None:
    """Delete this run's stream with one request to JetStream's API subject."""
    import nats

    async def delete() -> dict:
        nc = await nats.connect(NATS, connect_timeout=2, max_reconnect_attempts=1)
        reply = await nc.request(f"$JS.API.STREAM.DELETE.{stream}", b"", timeout=5)
        await nc.close()
        return json.loads(reply.data)

    try:
        answer = asyncio.run(delete())
    except Exception as error:  # the server is gone
        answer = {"error": str(error)}
    if "error" in answer:
        print(f"(stream {stream} not deleted: {answer['error']})")


if __name__ == "__main__":
    main()
