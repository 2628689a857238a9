"""Console latency: p50 and p95 of the API reads and the console pages people wait on.

    python bench/serve.py [--events 200000] [--runs 20] [--backend sqlite|postgresql]
    python bench/serve.py --ledger URL   # time an existing ledger (bench/books.py's 10M)

Generates (or reuses) bench/books.py's month of N events (2026-10, five applications, three
models), ingests them into a fresh ledger with the example registry and price sheet, adds an
admin and an owner user (scoped to one application) with API tokens, starts `spendtrail
serve` as a child process on a free loopback port and times each request over HTTP, after
one warm-up call, as each user: the overview, spend by application x model x day for the
month, the first page of events under one application's month and under one of its days
(a row of that grouping), the month's statement (the
company's for the admin, the application's for the owner) and the budgets; then the HTML
pages of the console showing the same: the overview, the explorer grouped by application x
model x day, the drill to the events, the statement's page and its rendered view, the
budgets. With ``--ledger`` nothing is generated or ingested: the ledger given is timed (it
must hold the month of bench/books.py); the users and tokens are still added. Figures are
printed as a table and as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import requests
from books import PERIOD, ensure_data
from ledgers import OUT, fresh_ledger, spendtrail

OWNER_APP = "search-summaries"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def users(url: str) -> dict[str, str]:
    from spendtrail.access.roles import Role
    from spendtrail.access.scope import EVERYONE, parse_scope
    from spendtrail.ledger.db import open_ledger
    from spendtrail.ledger.users import add_user, create_token

    engine = open_ledger(url)
    tokens = {}
    run = f"{os.getpid()}-{int(time.time())}"  # an existing ledger may hold earlier runs' users
    with engine.begin() as conn:
        for name, role, scope in (("admin", Role.admin, EVERYONE),
                                  ("owner", Role.owner, parse_scope([f"application:{OWNER_APP}"]))):
            user = f"bench-{name}-{run}"
            add_user(conn, name=user, role=role, scope=scope, password=None, actor="bench")
            tokens[name] = create_token(conn, user, name="bench", actor="bench")[1]
    engine.dispose()
    return tokens


def requests_of(user: str) -> dict[str, tuple[str, dict]]:
    owner = "company" if user == "admin" else f"application:{OWNER_APP}"
    return {
        "overview": ("/api/v1/overview", {}),
        "spend app x model x day": ("/api/v1/spend", {
            "period": PERIOD, "group_by": "application,model,day"}),
        "events under a month": ("/api/v1/spend/events", {
            "period": PERIOD, "application": OWNER_APP, "limit": 100}),
        "events under a day": ("/api/v1/spend/events", {
            "period": PERIOD, "application": OWNER_APP, "day": "2026-10-14", "limit": 100}),
        "statement (json)": ("/api/v1/statements/render", {
            "period": PERIOD, "owner": owner, "format": "json"}),
        "budgets": ("/api/v1/budgets", {}),
        "page: overview": ("/", {}),
        "page: explorer app x model x day": ("/spend", {
            "period": PERIOD, "by": ["application", "model", "day"]}),
        "page: drill to events": ("/spend/events", {"period": PERIOD, "application": OWNER_APP}),
        "page: statement": (f"/statements/{owner}", {"period": PERIOD}),
        "page: statement view (html)": (f"/statements/{owner}/file", {
            "period": PERIOD, "format": "html", "inline": "1"}),
        "page: budgets": ("/budgets", {}),
    }


def timed(base: str, token: str, path: str, params: dict, runs: int) -> dict[str, float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    first = session.get(base + path, params=params, timeout=600)
    first.raise_for_status()
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        session.get(base + path, params=params, timeout=600).raise_for_status()
        times.append((time.perf_counter() - begin) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[max(0, round(0.95 * len(times)) - 1)], 1),
            "bytes": len(first.content)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--ledger", metavar="URL",
                        help="Time this existing ledger; generate and ingest nothing.")
    args = parser.parse_args()
    if args.ledger:
        url = args.ledger
    else:
        events_path, _ = ensure_data(args.events)
        url = fresh_ledger(args.backend, f"serve-{args.events}")
        begin = time.perf_counter()
        spendtrail(url, "ingest", str(events_path))
        print(f"ingested {args.events} events in {time.perf_counter() - begin:.1f}s", flush=True)
    tokens = users(url)
    port = free_port()
    log = OUT / "serve.log"
    env = {**os.environ, "SPENDTRAIL_DATABASE_URL": url, "SPENDTRAIL_HOME": str(OUT / "home")}
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "spendtrail.cli.app", "serve",
                                   "--port", str(port)], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # the child has no readiness signal but its socket
            try:
                requests.get(base + "/api/openapi.json", timeout=5)
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"spendtrail serve did not start; see {log}")
                time.sleep(0.2)
        rows = []
        for user, token in tokens.items():
            for name, (path, params) in requests_of(user).items():
                rows.append({"user": user, "request": name,
                             **timed(base, token, path, params, args.runs)})
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{'user':6} {'request':34} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>9}")
    for row in rows:
        print(f"{row['user']:6} {row['request']:34} {row['p50_ms']:8} {row['p95_ms']:8} "
              f"{row['bytes']:9}")
    print(json.dumps({"events": None if args.ledger else args.events,
                      "ledger": "given" if args.ledger else args.backend, "runs": args.runs,
                      "rows": rows}))


if __name__ == "__main__":
    main()
