"""Instructions a gateway call costs, counted by valgrind's callgrind: a figure a busy machine
does not change (CPU time and req/s do), to compare variants of the hot path.

    python bench/gateway_instructions.py [--requests 2000] [--loops asyncio,uvloop]
                                         [--upstreams single,routed]

For each event loop and each way of naming the upstream (`single`: `--profile custom
--provider cometapi --upstream URL`; `routed`: `--routes` with the three upstreams of
`bench/gateway.py --routing`, the model chosen by the last pattern): one `spendtrail gateway
--workers 1 --no-ingest` process runs under `valgrind --tool=callgrind` with instrumentation
off; after a warm-up (every cache and the retry linker in use) it is switched on with
`callgrind_control -i on`, the load generator of bench/gateway.py sends --requests calls
(concurrency 1, plain, then streamed), and the instructions counted in the gateway's user
space are divided by the calls. Kernel work (the socket calls) is not counted:
bench/gateway.py measures the whole. Two processes of the same gateway differ by up to
about 8,000 instructions a call (hash seeds, timing): smaller differences say nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import (  # noqa: E402  (bench/gateway.py, beside this file)
    ROOT,
    bench_ledger,
    check_gateway,
    free_port,
    load,
    spawn,
    stop,
    wait_http,
    write_three_routes,
)


def counted(out: Path) -> int:
    """Instructions in the callgrind dumps written so far (each one's last `totals:` line;
    its `summary:` line says 0 when instrumentation was switched on late)."""
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        found = re.findall(rb"^totals: (\d+)", dump.read_bytes(), re.M)
        total += int(found[-1]) if found else 0
    return total


def measure(env: dict, upstream_port: int, key: str, loop: str, upstreams: str,
            requests: int, work: Path) -> dict[str, float]:
    port = free_port()
    name = f"{loop}-{upstreams}"
    out = work / f"callgrind-{name}.out"
    log = work / f"gateway-{name}.log"
    chosen = (["--routes", str(write_three_routes(work / "routes-3.yaml", upstream_port))]
              if upstreams == "routed" else
              ["--profile", "custom", "--provider", "cometapi",
               "--upstream", f"http://127.0.0.1:{upstream_port}/v1"])
    proc = spawn(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                  f"--callgrind-out-file={out}", sys.executable, "-m", "spendtrail.cli.app",
                  "gateway", *chosen, "--port", str(port),
                  "--workers", "1", "--no-ingest", "--loop", loop,
                  "--busy-poll", "0",  # the work a call costs, not polling for the next
                  "--refresh-seconds", "600"],  # no reloads inside the counted window
                 {**env, "SPENDTRAIL_SPOOL_DIR": str(work / f"spool-{name}")}, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, "the gateway", log, 600)
        check_gateway(port, key)
        figures = {}
        for stream in (False, True):
            load(port, key, 1, 200, 0, proc.pid, stream=stream)  # warm-up, not counted
            before = counted(out)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                           capture_output=True)
            load(port, key, 1, requests, 0, proc.pid, stream=stream)
            subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True,
                           capture_output=True)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           capture_output=True)
            figures["stream" if stream else "plain"] = (counted(out) - before) / requests
    finally:
        stop(proc)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    # uvloop is an optional extra: measured only where it is installed.
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    parser.add_argument("--loops", default="asyncio,uvloop" if has_uvloop else "asyncio")
    parser.add_argument("--upstreams", default="single",
                        help="single (the upstream options) and/or routed (a routes file)")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    work, env, key = bench_ledger("instructions-")
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "gateway.py"),
                                 "--upstream"], stdout=subprocess.PIPE, text=True)
    began = time.monotonic()
    try:
        upstream_port = int(upstream.stdout.readline())
        print(f"load average {os.getloadavg()[0]:.1f}; {args.requests:,} calls per row, "
              f"concurrency 1", flush=True)
        for loop in args.loops.split(","):
            for upstreams in args.upstreams.split(","):
                figures = measure(env, upstream_port, key, loop, upstreams, args.requests,
                                  work)
                print(f"{loop:<8} {upstreams:<7} plain {figures['plain']:>12,.0f} "
                      f"instructions a call, streamed {figures['stream']:>12,.0f}", flush=True)
    finally:
        stop(upstream)
    print(f"{time.monotonic() - began:.0f} s; callgrind files in {work}")


if __name__ == "__main__":
    main()
