"""Gateway overhead: a static upstream called directly vs through `spendtrail gateway`.

    python bench/gateway.py [--requests 20000] [--warmup 1000] [--rss-requests 100000]
                            [--gateways gateway,"gateway 2 workers"] [--modes plain,stream]
                            [--upstream-server double|nginx]
    python bench/gateway.py --routing [--seconds 20] [--repeats 3]

Every server is its own process, and so is each load generator, so nothing measures itself:

- the upstream: a minimal HTTP/1.1 server answering every request with one fixed OpenAI-shaped
  chat completion (usage, an X-Oneapi-Request-Id header), a few microseconds a call; or, with
  `--upstream-server nginx`, nginx answering the same completion (plain calls only);
- real `spendtrail gateway` processes on one fresh SQLite ledger (`--gateways` picks them)
  holding the example registry and prices, called with a key from `spendtrail keys create`;
  every call is journaled. `gateway 2 workers` is the default gateway with `--workers 2` (its
  ingester a process beside the workers), `gateway 2 workers no polling` the same with
  `--busy-poll 0` (its event loops sleep as soon as they wait), `gateway asyncio` the
  default one on asyncio's event loop instead of uvloop (`--loop asyncio`). Every other row
  is one worker (`--workers 1`), and they differ in when the journal reaches the ledger:
  `gateway`'s follow-mode ingester runs as a thread inside it, during the measurement,
  `gateway + follow` runs `--no-ingest` with `spendtrail ingest --follow` as a
  separate process (also during the measurement), `gateway journal-only` runs `--no-ingest`
  and its spool is ingested after the run; `gateway routed` is `journal-only` started with
  `--routes`: a routes file of 20 model patterns, the benchmark's model matching the last one
  (routing side by side with the single-upstream gateway);
- the load generator: keep-alive connections, one request in flight on each, a fixed number
  of requests after a warm-up; per-request latency, and the CPU used meanwhile by the server
  under test, by itself, and by everything else on the machine (`rest`: noise when high).

`--routing` runs only the routing comparison, for longer: the single-upstream gateway, one
started with a routes file of three upstreams (the model chosen by pattern) and an identical
second single-upstream gateway as a control, all journal-only on the same upstream double,
each row --seconds long, --repeats rounds in rotating order, each round with the three
gateways started afresh (one process per gateway for the whole run would carry its own
speed into every round); it prints req/s and the p50/p95 latency each adds over the direct
row of its round, and the medians over the rounds.

Each row runs with non-streamed calls and, named "<target> stream", with streamed ones (the
upstream then answers an SSE stream of five events; `--modes`).
For concurrency 1 and 16 it measures the upstream directly and each gateway in the same run,
prints the added latency (gateway p50 - direct p50), keeps the default gateway busy until it
has served --rss-requests calls and reads its RSS, then checks that the ledger holds one event
per call. If LiteLLM's proxy is installed it runs on the same upstream and is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MODEL = "gpt-4o-mini"  # priced by examples/prices.yaml for provider cometapi
APPLICATION = "support-assistant"  # has a default workload class: calls are allocated
UPSTREAM_KEY = "bench-upstream-key"
LITELLM_KEY = "sk-bench-litellm"
# Ways to run the gateway with the ledger on: (row name, spool folder, ingest flag,
# whether a `spendtrail ingest --follow` process runs beside it during the measurement,
# whether it is started with a routes file instead of the single-upstream options, more
# options: workers, event loop; --loop auto picks uvloop where it is installed).
GATEWAYS = (
    ("gateway", "spool", "--ingest", False, False, ()),  # ingester in-process
    ("gateway 2 workers", "spool-workers", "--ingest", False, False, ("--workers", "2")),
    ("gateway asyncio", "spool-asyncio", "--ingest", False, False, ("--loop", "asyncio")),
    ("gateway 2 workers no polling", "spool-no-polling", "--ingest", False, False,
     ("--workers", "2", "--busy-poll", "0")),
    ("gateway + follow", "spool-follow", "--no-ingest", True, False, ()),  # ingester beside it
    ("gateway journal-only", "spool-journal", "--no-ingest", False, False, ()),  # ingested after
    ("gateway routed", "spool-routed", "--no-ingest", False, True, ()),  # journal-only, routed
)
ROUTE_PATTERNS = 20

# The upstream's one answer. Content-Length framing, no chunking: cheapest for both sides.
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1763798400, "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
              "prompt_tokens_details": {"cached_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0}},
}, separators=(",", ":")).encode()
UPSTREAM_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"X-Oneapi-Request-Id: 20261122000000000000bench\r\n"
    b"Content-Length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION
)
REQUEST_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]},
                          separators=(",", ":")).encode()
STREAM_BODY = json.dumps({"model": MODEL, "stream": True,
                          "messages": [{"role": "user", "content": "Say hi"}]},
                         separators=(",", ":")).encode()
# A streamed answer: two content chunks, the finish, the usage chunk (include_usage) and
# [DONE], framed by Content-Length like the plain one (the gateway re-chunks it anyway).
_CHUNK = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1763798400,
          "model": MODEL}
STREAM = b"".join(
    b"data: " + json.dumps({**_CHUNK, **part}, separators=(",", ":")).encode() + b"\n\n"
    for part in (
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo!"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": json.loads(COMPLETION)["usage"]},
    )) + b"data: [DONE]\n\n"
UPSTREAM_STREAM = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"X-Oneapi-Request-Id: 20261122000000000000bench\r\n"
    b"Content-Length: " + str(len(STREAM)).encode() + b"\r\n\r\n" + STREAM
)
# The load generator's bodies differ in a fixed-width tail (its pid and a counter): every call
# is a new logical request with its own entry in the gateway's retry linker, as in real traffic.
BODY_TEMPLATE = REQUEST_BODY.replace(b"Say hi", b"Say hi %010d-%010d")
STREAM_TEMPLATE = STREAM_BODY.replace(b"Say hi", b"Say hi %010d-%010d")
_sequence = itertools.count()


# -- HTTP/1.1 framing shared by the upstream and the load generator ------------------------------

def _content_length(head: bytes) -> int | None:
    """Content-Length of a header block; None for a chunked body."""
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        return None
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = lower.find(b"\r\n", at + 2)
    return int(lower[at + 17:end if end >= 0 else None])


class _Messages:
    """Splits a byte stream into complete HTTP messages (head, body): Content-Length framed,
    or chunked (the gateway's streams; the bodies here never hold the last-chunk bytes)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buffer += data
        found = []
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            length = _content_length(head)
            if length is None:
                last = self.buffer.find(b"\r\n0\r\n\r\n", end)
                if last < 0:
                    break
                size = last + 7
            else:
                size = end + 4 + length
            if len(self.buffer) < size:
                break
            found.append((head, bytes(self.buffer[end + 4:size])))
            del self.buffer[:size]
        return found


# -- the static upstream ---------------------------------------------------------------------

class _Upstream(asyncio.Protocol):
    """Raw asyncio rather than aiohttp: a few microseconds a call, so the measurement is about
    the gateway. Answers every complete request with UPSTREAM_RESPONSE, keep-alive."""

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.messages = _Messages()

    def data_received(self, data: bytes) -> None:
        for _, body in self.messages.feed(data):
            self.transport.write(UPSTREAM_STREAM if b'"stream":true' in body
                                 else UPSTREAM_RESPONSE)


async def run_upstream() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)  # the parent reads the port
    await server.serve_forever()


# -- the load generator ------------------------------------------------------------------------

class _Client(asyncio.Protocol):
    """One keep-alive connection with one request in flight. Raw asyncio for the same reason
    as the upstream: the client shares the 2 cores with the gateway, so the less CPU it takes
    the less it disturbs the measurement (its CPU is printed as `client`)."""

    def __init__(self) -> None:
        self.messages = _Messages()
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        messages = self.messages.feed(data)
        if messages and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(messages[0][0] + b"\r\n\r\n" + messages[0][1])

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    async def call(self, request: bytes) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its running children (a gateway's
    workers and ingester) so far, from /proc/PID/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            user, system = user + int(fields[11]), system + int(fields[12])
    return user / tick, system / tick


async def run_load(port: int, key: str, concurrency: int, count: int, server_pid: int,
                   seconds: float = 0, stream: bool = False) -> dict:
    """`count` requests (or, when `seconds` is given, as many as fit in that time) over
    `concurrency` connections, streamed or not; returns rate and latency figures, and the CPU
    the server (`server_pid`) used per request over the same window."""
    template = STREAM_TEMPLATE if stream else BODY_TEMPLATE
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(template % (0, 0))}\r\n\r\n"
    ).encode()
    pid = os.getpid()
    loop = asyncio.get_running_loop()
    clients = [(await loop.create_connection(_Client, "127.0.0.1", port))[1]
               for _ in range(concurrency)]
    latencies: list[int] = []
    failures: list[bytes] = []
    remaining = count
    deadline = time.perf_counter() + seconds

    async def worker(client: _Client) -> None:
        nonlocal remaining
        while time.perf_counter() < deadline if seconds else remaining > 0:
            remaining -= 1
            request = head + template % (pid, next(_sequence))
            begin = time.perf_counter_ns()
            answer = await client.call(request)
            latencies.append(time.perf_counter_ns() - begin)
            if not answer.startswith(b"HTTP/1.1 200") or (stream and b"[DONE]" not in answer):
                failures.append(answer)

    user, system = cpu_seconds(server_pid)
    machine, own = busy_cpu_seconds(), time.process_time()
    begin = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    seconds = time.perf_counter() - begin
    machine, own = busy_cpu_seconds() - machine, time.process_time() - own
    after = cpu_seconds(server_pid)
    user, system = after[0] - user, after[1] - system
    cpu = user + system
    for client in clients:
        client.transport.close()
    latencies.sort()
    return {"requests": len(latencies), "seconds": seconds, "rate": len(latencies) / seconds,
            "p50_ms": latencies[len(latencies) // 2] / 1e6,
            "p95_ms": latencies[min(len(latencies) - 1, len(latencies) * 95 // 100)] / 1e6,
            "p99_ms": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] / 1e6,
            "server_cpu": cpu / seconds, "server_cpu_us": cpu / len(latencies) * 1e6,
            "server_sys": system / cpu if cpu else 0.0, "client_cpu": own / seconds,
            # Busy CPU outside the server and this client: the upstream behind a gateway,
            # an ingester, and anything else running on the machine (noise).
            "rest_cpu": max(0.0, machine - cpu - own) / seconds,
            "errors": len(failures), "first_error": failures[0].decode()[:300] if failures else ""}


def load(port: int, key: str, concurrency: int, count: int, warmup: int, pid: int,
         seconds: float = 0, stream: bool = False) -> dict:
    """Runs a load-generator process: warm-up requests first (not counted), then `count`
    (or, with `seconds`, as many as that time allows)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--load", str(port), key, str(concurrency), str(count),
         str(warmup), str(pid), str(seconds), str(int(stream))], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"the load generator failed on port {port}:\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout)
    if figures["errors"]:
        raise SystemExit(f"{figures['errors']} of {count} requests failed on port {port}: "
                         f"{figures['first_error']}")
    return figures


def load_child(port: int, key: str, concurrency: int, count: int, warmup: int, pid: int,
               seconds: float, stream: int) -> None:
    async def both() -> dict:
        if warmup:
            await run_load(port, key, concurrency, warmup, pid, stream=bool(stream))
        return await run_load(port, key, concurrency, count, pid, seconds, bool(stream))

    print(json.dumps(asyncio.run(both())))


# -- set-up ------------------------------------------------------------------------------------

def bench_ledger(prefix: str) -> tuple[Path, dict, str]:
    """A fresh folder under bench/out with a SQLite ledger holding the example registry and
    prices: (the folder, the environment naming it, a production key of APPLICATION)."""
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=OUT))
    env = {**os.environ, "SPENDTRAIL_HOME": str(work), "SPENDTRAIL_ACTOR": "bench",
           "SPENDTRAIL_DATABASE_URL": f"sqlite:///{work / 'ledger.db'}",
           "SPENDTRAIL_UPSTREAM_KEY": UPSTREAM_KEY}
    spendtrail(env, "registry", "load", str(ROOT / "examples" / "registry.yaml"))
    spendtrail(env, "prices", "import", "sheet", str(ROOT / "examples" / "prices.yaml"))
    key = spendtrail(env, "keys", "create", "--application", APPLICATION,
                     "--environment", "production").strip()
    return work, env, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spendtrail(env: dict, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "spendtrail.cli.app", *args], env=env,
                          check=True, capture_output=True, text=True)
    return proc.stdout


def wait_http(url: str, proc: subprocess.Popen, what: str, log: Path,
              seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start (exit {proc.poll()}), see {log}:\n"
                                 f"{log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def spawn(args: list[str], env: dict | None, log: Path) -> subprocess.Popen:
    """A server process; its output goes to a file (a pipe nobody reads could fill up)."""
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB: now, and the peak so far."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def check_gateway(port: int, key: str) -> dict[str, str]:
    """One call before measuring: the full path runs (allocated, priced, journaled)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=REQUEST_BODY, method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        headers = {name: response.headers.get(name, "") for name in
                   ("X-Spendtrail-Allocation", "X-Spendtrail-Cost", "X-Oneapi-Request-Id")}
    if headers["X-Spendtrail-Allocation"] != "allocated" or "USD" not in \
            headers["X-Spendtrail-Cost"]:
        raise SystemExit(f"the gateway did not allocate and price the call: {headers}")
    return headers


def start_nginx(workdir: Path) -> tuple[subprocess.Popen, int]:
    """nginx as the upstream (the issue's static upstream): one process, no access log,
    every request answered with the plain completion by `return 200`. Plain calls only:
    nginx does not look into a body for its "stream": true."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        raise SystemExit("--upstream-server nginx: nginx is not installed (apt install "
                         "nginx-light)")
    body = COMPLETION.decode()
    assert "'" not in body and "\\" not in body  # nginx's single-quoted string holds it as is
    port = free_port()
    config = workdir / "nginx.conf"
    config.write_text(f"""daemon off; master_process off; worker_processes 1;
pid {workdir}/nginx.pid; error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path {workdir}/nginx-body; proxy_temp_path {workdir}/nginx-proxy;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      add_header X-Oneapi-Request-Id 20261122000000000000bench;
      return 200 '{body}';
    }}
  }}
}}
""")
    proc = spawn([binary, "-p", str(workdir), "-c", str(config)], None,
                 workdir / "nginx.log")
    wait_http(f"http://127.0.0.1:{port}/", proc, "nginx", workdir / "nginx.log")
    return proc, port


def start_litellm(upstream_port: int, workdir: Path) -> tuple[subprocess.Popen, int]:
    """LiteLLM's proxy, one worker, on the same upstream. It has no database here, so it
    keeps no spend logs: its figures are a lower bound on its cost with the ledger on."""
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{MODEL}", "api_base": f"http://127.0.0.1:{upstream_port}/v1",
            "api_key": UPSTREAM_KEY}}],
        "general_settings": {"master_key": LITELLM_KEY},  # it refuses to start without one
    }))
    log = workdir / "litellm.log"
    proc = spawn([sys.executable, "-m", "litellm.proxy.proxy_cli", "--config", str(config),
                  "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"], None, log)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, "LiteLLM proxy", log, 120)
    return proc, port


def write_routes(path: Path, upstream_port: int) -> Path:
    """Routes to two upstream names (both the benchmark's upstream), the model matching only
    the last of ROUTE_PATTERNS patterns: the slowest match a routes file of that size has."""
    url = f"http://127.0.0.1:{upstream_port}/v1"
    routes = "".join(f"  - model: 'other-{n}-*'\n    upstream: spare\n"
                     for n in range(ROUTE_PATTERNS - 1))
    path.write_text(f"upstreams:\n"
                    f"  comet: {{url: '{url}', key_env: SPENDTRAIL_UPSTREAM_KEY, "
                    f"provider: cometapi}}\n"
                    f"  spare: {{url: '{url}', key_env: SPENDTRAIL_UPSTREAM_KEY}}\n"
                    f"routes:\n{routes}  - model: 'gpt-4o-*'\n    upstream: comet\n")
    return path


def start_gateway(env: dict, upstream_port: int, spool: Path, flag: str, routes: Path | None,
                  options: tuple[str, ...]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = spool.with_suffix(".log")
    upstream = (["--routes", str(routes)] if routes else
                ["--profile", "custom", "--provider", "cometapi",
                 "--upstream", f"http://127.0.0.1:{upstream_port}/v1"])
    proc = spawn([sys.executable, "-m", "spendtrail.cli.app", "gateway", *upstream,
                  "--port", str(port), "--workers", "1", flag, *options],  # the last --workers wins
                 {**env, "SPENDTRAIL_SPOOL_DIR": str(spool)}, log)
    wait_http(f"http://127.0.0.1:{port}/readyz", proc, "the gateway", log)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # a gateway seals its spool and ingests it on the way out
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ledger_events(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


# -- routing side by side ------------------------------------------------------------------------

# "single upstream B" is a second, identical single-upstream gateway: the spread between the
# two identical gateways is the noise the routed one is judged against.
ROUTED_TARGETS = ("direct", "single upstream", "routes file", "single upstream B")


def write_three_routes(path: Path, upstream_port: int) -> Path:
    """Three upstreams (all the benchmark's upstream double, under three names and providers),
    each chosen by a model pattern; the benchmark's model matches the last route."""
    url = f"http://127.0.0.1:{upstream_port}/v1"
    path.write_text(f"upstreams:\n"
                    f"  openai: {{url: '{url}', key_env: SPENDTRAIL_UPSTREAM_KEY}}\n"
                    f"  local: {{url: '{url}', key_env: SPENDTRAIL_UPSTREAM_KEY, "
                    f"provider: vllm}}\n"
                    f"  comet: {{url: '{url}', key_env: SPENDTRAIL_UPSTREAM_KEY, "
                    f"provider: cometapi}}\n"
                    f"routes:\n"
                    f"  - {{model: 'gpt-4.1*', upstream: openai}}\n"
                    f"  - {{model: 'meta-llama/*', upstream: local}}\n"
                    f"  - {{model: 'gpt-4o-*', upstream: comet}}\n")
    return path


def compare_routing(args, env: dict, key: str, work: Path, upstream_port: int,
                    upstream_pid: int, concurrencies: list[int]) -> None:
    """The single-upstream gateway, one started with a routes file of three upstreams and a
    second single-upstream gateway as a control, on the same upstream double, all
    journal-only; each row runs --seconds, and the rounds rotate the gateways' order, so
    slow drift of the shared machine's load falls on all of them. Every round starts its
    three gateways afresh: a process's own speed (its hash seed and memory layout, a few
    percent at concurrency 1) would otherwise repeat in every round and read as routing's."""
    routes = write_three_routes(work / "routes-3.yaml", upstream_port)
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}; {args.seconds:g} s per row "
          f"after {args.warmup:,} warm-up requests, {args.repeats} rounds, fresh gateways "
          f"each round", flush=True)
    print(f"{'round':>5} {'conc':>4} {'target':<16} {'requests':>9} {'req/s':>8} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'rest':>5}", flush=True)
    rows = []
    try:
        for round_ in range(1, args.repeats + 1):
            gateways: list[tuple[subprocess.Popen, int]] = []
            try:
                for spool, file in (("spool-single", None), ("spool-routes", routes),
                                    ("spool-single-b", None)):
                    gateways.append(start_gateway(env, upstream_port, work / spool,
                                                  "--no-ingest", file, ()))
                    check_gateway(gateways[-1][1], key)
                targets = {"direct": (upstream_port, upstream_pid)}
                for name, (proc, port) in zip(ROUTED_TARGETS[1:], gateways, strict=True):
                    targets[name] = (port, proc.pid)
                shift = (round_ - 1) % (len(ROUTED_TARGETS) - 1)  # each takes each place
                gateways_order = ROUTED_TARGETS[1 + shift:] + ROUTED_TARGETS[1:1 + shift]
                for concurrency in concurrencies:
                    for name in ("direct", *gateways_order):
                        port, pid = targets[name]
                        figures = load(port, key, concurrency, 0, args.warmup, pid,
                                       args.seconds)
                        rows.append({"round": round_, "target": name,
                                     "concurrency": concurrency, **figures})
                        print(f"{round_:>5} {concurrency:>4} {name:<16} "
                              f"{figures['requests']:>9,} {figures['rate']:>8,.0f} "
                              f"{figures['p50_ms']:>8.3f} {figures['p95_ms']:>8.3f} "
                              f"{figures['rest_cpu']:>5.0%}", flush=True)
            finally:
                for proc, _ in gateways:
                    stop(proc)
        print(f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        summary = routing_summary(rows, concurrencies)
        print(json.dumps({"rows": rows, "summary": summary}, indent=2))
    finally:
        if not args.keep:  # the spools: a few hundred MB after a full run
            shutil.rmtree(work)


def routing_summary(rows: list[dict], concurrencies: list[int]) -> dict:
    """Per concurrency and gateway: the median over the rounds of req/s and of the latency
    added over the direct row of the same round; and routes / single as ratios."""
    def median(values: list[float]) -> float:
        values = sorted(values)
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    summary = {}
    print(f"{'conc':>4} {'target':<16} {'req/s':>8} {'added p50 ms':>13} {'added p95 ms':>13}"
          "   (medians over the rounds)", flush=True)
    for concurrency in concurrencies:
        direct = {r["round"]: r for r in rows
                  if r["concurrency"] == concurrency and r["target"] == "direct"}
        figures = {}
        for name in ROUTED_TARGETS[1:]:
            mine = [r for r in rows if r["concurrency"] == concurrency and r["target"] == name]
            figures[name] = {
                "rate": median([r["rate"] for r in mine]),
                "added_p50_ms": median([r["p50_ms"] - direct[r["round"]]["p50_ms"]
                                        for r in mine]),
                "added_p95_ms": median([r["p95_ms"] - direct[r["round"]]["p95_ms"]
                                        for r in mine]),
            }
            f = figures[name]
            print(f"{concurrency:>4} {name:<16} {f['rate']:>8,.0f} {f['added_p50_ms']:>13.3f} "
                  f"{f['added_p95_ms']:>13.3f}", flush=True)
        single, routed = figures["single upstream"], figures["routes file"]
        control = figures["single upstream B"]
        figures["routes / single req/s"] = routed["rate"] / single["rate"]
        figures["single B / single req/s"] = control["rate"] / single["rate"]
        print(f"{concurrency:>4} routes file / single upstream: "
              f"{figures['routes / single req/s']:.3f}x the req/s; the identical control "
              f"gateway: {figures['single B / single req/s']:.3f}x", flush=True)
        summary[f"c={concurrency}"] = figures
    return summary


# -- the run -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000,
                        help="measured requests per row (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--rss-requests", type=int, default=100_000,
                        help="total calls through the gateway before its RSS is read")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--keep", action="store_true",
                        help="keep the ledger, spools and server logs (bench/out/gateway-*)")
    parser.add_argument("--routing", action="store_true",
                        help="only the routing comparison: the single-upstream gateway beside "
                             "one with a routes file of 3 upstreams and an identical "
                             "single-upstream control, --seconds per row, --repeats rounds")
    parser.add_argument("--seconds", type=float, default=20,
                        help="with --routing: seconds measured per row")
    parser.add_argument("--repeats", type=int, default=3,
                        help="with --routing: rounds, the gateways' order rotating")
    parser.add_argument("--gateways", default=",".join(g[0] for g in GATEWAYS),
                        help="which gateway rows to run, by name, comma-separated")
    parser.add_argument("--modes", default="plain,stream",
                        help="plain (non-streamed calls) and/or stream (streamed calls)")
    parser.add_argument("--upstream-server", choices=("double", "nginx"), default="double",
                        help="what answers as the provider: this script's own double, or "
                        "nginx (plain calls only)")
    parser.add_argument("--load", nargs=8, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_upstream())
        return
    if args.load:
        load_child(int(args.load[0]), args.load[1], *map(int, args.load[2:6]),
                   float(args.load[6]), int(args.load[7]))
        return
    if args.upstream_server == "nginx" and ("stream" in args.modes.split(",") or args.routing):
        parser.error("--upstream-server nginx answers plain calls only: add --modes plain "
                     "(and no --routing)")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    chosen = [g for g in GATEWAYS if g[0] in args.gateways.split(",")]
    modes = args.modes.split(",")
    # Started in the background by a non-interactive shell, this script inherits an ignored
    # SIGINT and so would every server: restore it, so stop() lets the gateways shut down
    # cleanly (seal the spool, last ingest round).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    work, env, key = bench_ledger("gateway-")  # ledger, spools, server logs

    if args.upstream_server == "nginx":
        upstream, upstream_port = start_nginx(work)
    else:
        upstream = subprocess.Popen([sys.executable, __file__, "--upstream"],
                                    stdout=subprocess.PIPE, text=True)
    procs = [upstream]
    served: dict[str, int] = {}
    try:
        if args.upstream_server != "nginx":
            upstream_port = int(upstream.stdout.readline())
        if args.routing:
            compare_routing(args, env, key, work, upstream_port, upstream.pid, concurrencies)
            return
        # target name -> (port, pid of the server whose CPU is read, key to send)
        targets = {"direct": (upstream_port, upstream.pid, key)}
        routes = write_routes(work / "routes.yaml", upstream_port)
        for name, spool, flag, follower, routed, options in chosen:
            proc, port = start_gateway(env, upstream_port, work / spool, flag,
                                       routes if routed else None, options)
            procs.append(proc)
            if follower:
                procs.append(spawn(
                    [sys.executable, "-m", "spendtrail.cli.app", "ingest", "--follow"],
                    {**env, "SPENDTRAIL_SPOOL_DIR": str(work / spool)},
                    work / f"{spool}-ingest.log"))
            check_gateway(port, key)
            targets[name] = (port, proc.pid, key)
            served[name] = 1
        gateway_pid = targets["gateway"][1] if "gateway" in targets else None
        started_rss = rss_mib(gateway_pid)[0] if gateway_pid else 0.0

        litellm = importlib.util.find_spec("litellm") is not None
        if litellm:
            proc, port = start_litellm(upstream_port, work)
            procs.append(proc)
            targets["litellm"] = (port, proc.pid, LITELLM_KEY)
        else:
            print("LiteLLM not installed: skipped", flush=True)
        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
              f"{os.getloadavg()[0]:.1f}; {args.requests:,} requests per row after "
              f"{args.warmup:,} warm-up", flush=True)

        rows = []
        # Each target in each mode: a streamed row is named "<target> stream".
        runs = [(name + (" stream" if mode == "stream" else ""), name, mode == "stream")
                for mode in modes for name in targets if not (mode == "stream" and
                                                               name == "litellm")]
        print(f"{'target':<27} {'conc':>4} {'requests':>9} {'req/s':>8} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'server CPU':>10} {'CPU/req':>9} {'sys':>4} {'client':>6} "
              f"{'rest':>5}", flush=True)
        for concurrency in concurrencies:
            for name, target, stream in runs:
                port, pid, token = targets[target]
                figures = load(port, token, concurrency, args.requests, args.warmup, pid,
                               stream=stream)
                if target in served:
                    served[target] += args.warmup + args.requests
                rows.append({"target": name, "concurrency": concurrency, **figures})
                print(f"{name:<27} {concurrency:>4} {figures['requests']:>9,} "
                      f"{figures['rate']:>8,.0f} {figures['p50_ms']:>8.3f} "
                      f"{figures['p99_ms']:>8.3f} {figures['server_cpu']:>10.0%} "
                      f"{figures['server_cpu_us']:>6.0f} us {figures['server_sys']:>4.0%} "
                      f"{figures['client_cpu']:>6.0%} {figures['rest_cpu']:>5.0%}", flush=True)

        added = {}
        for concurrency in concurrencies:
            by = {r["target"]: r for r in rows if r["concurrency"] == concurrency}
            for name, row in by.items():
                if name.startswith("direct"):
                    continue
                direct = by["direct stream" if name.endswith(" stream") else "direct"]
                added[f"{name} c={concurrency}"] = row["p50_ms"] - direct["p50_ms"]
                print(f"c={concurrency:<3} {name:<27} adds {row['p50_ms'] - direct['p50_ms']:.3f}"
                      f" ms at p50, {row['p99_ms'] - direct['p99_ms']:.3f} ms at p99, "
                      f"{row['rate'] / direct['rate']:.3f}x direct's req/s", flush=True)
            for name in targets:
                if name != "direct" and f"{name} stream" in by and name in by:
                    print(f"c={concurrency:<3} {name:<27} streamed / plain req/s: "
                          f"{by[name + ' stream']['rate'] / by[name]['rate']:.2f}", flush=True)
            if "gateway" in by and "gateway 2 workers" in by:
                print(f"c={concurrency:<3} 2 workers / 1 worker req/s: "
                      f"{by['gateway 2 workers']['rate'] / by['gateway']['rate']:.2f}", flush=True)
            if "litellm" in by:
                print(f"c={concurrency:<3} gateway / LiteLLM: "
                      f"{by['gateway']['rate'] / by['litellm']['rate']:.2f}x the req/s, "
                      f"{by['litellm']['p50_ms'] / by['gateway']['p50_ms']:.2f}x lower p50",
                      flush=True)

        # Keep the default gateway busy until it has served --rss-requests calls, then read
        # its RSS (VmHWM is the peak over its whole life).
        measured_rss = rss = peak = 0.0
        if gateway_pid is None:
            print("the gateway row was not run: no RSS figures", flush=True)
        else:
            measured_rss = rss_mib(gateway_pid)[0]
        if gateway_pid is not None and served["gateway"] < args.rss_requests:
            soak = load(targets["gateway"][0], key, 16, args.rss_requests - served["gateway"],
                        0, gateway_pid)
            served["gateway"] += soak["requests"]
            print(f"soak: {soak['requests']:,} more requests at c=16, {soak['rate']:,.0f} req/s",
                  flush=True)
        if gateway_pid is not None:
            rss, peak = rss_mib(gateway_pid)
            print(f"load average {os.getloadavg()[0]:.1f}; gateway RSS: {started_rss:.1f} MiB "
                  f"after start, {measured_rss:.1f} MiB after the rows, {rss:.1f} MiB after "
                  f"{served['gateway']:,} requests (peak {peak:.1f} MiB)", flush=True)
    finally:
        for proc in reversed(procs):
            stop(proc)

    # The ledger was on: every call through a gateway must now be one event in it. What the
    # ingesters had not picked up when they stopped (and the journal-only spool) goes in now.
    for _, spool, _, _, _, _ in chosen:
        spendtrail({**env, "SPENDTRAIL_SPOOL_DIR": str(work / spool)}, "ingest")
    events = ledger_events(work / "ledger.db")
    print(f"ledger: {events:,} events for {sum(served.values()):,} calls through the gateways"
          f" ({'all recorded' if events == sum(served.values()) else 'MISMATCH'})", flush=True)
    summary = {"rows": rows, "added_p50_ms": added, "gateway_requests": served,
               "gateway_rss_mib": {"start": started_rss, "after_rows": measured_rss,
                                   "end": rss, "peak": peak},
               "ledger_events": events, "litellm": litellm}
    print(json.dumps(summary, indent=2))
    if args.keep or events != sum(served.values()):
        print(f"kept {work}")
    else:  # a few hundred MB of spool and ledger per run
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
