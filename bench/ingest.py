"""Ingest throughput and memory: N synthetic events into SQLite and PostgreSQL.

    python bench/ingest.py [--events 1000000] [--backends sqlite,postgresql] [--months 1]
                           [--postgres postgresql://user@host:5432/db]

For each backend and for N/10 and N events (to show memory is flat in N), a fresh ledger is
set up with the example registry and price sheet, then a child process ingests the JSONL
file and reports events/s and its peak RSS (and, on PostgreSQL, the monthly partitions the
ingester created). The events are spread over `--months` months from October 2026. Figures
are printed as a table and as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from ledgers import OUT, POSTGRES_URL, ROOT, fresh_ledger

# (provider, model) pairs: priced by the example sheet or genai-prices, plus one unpriced.
MODELS = [
    ("cometapi", "gpt-4o-mini"),
    ("cometapi", "gpt-4o"),
    ("cometapi", "claude-sonnet-4-20250514"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("cometapi", "mystery-model-x"),
]


def generate(path: Path, count: int, months: int = 1, seed: int = 7) -> None:
    """Write `count` events over `months` months of 30 days; ~2% name an unknown application
    and ~1% an unpriced model."""
    from spendtrail.events import AllocationContext, Usage, UsageEvent, encode_event

    registry = yaml.safe_load((ROOT / "examples" / "registry.yaml").read_text())
    apps = [(a["id"], a["environments"], a["workload_classes"]) for a in registry["applications"]]
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for i in range(count):
            app, envs, workloads = apps[i % len(apps)]
            if rng.random() < 0.02:
                app = "unregistered-app"
            provider, model = MODELS[i % (len(MODELS) - 1)]
            if rng.random() < 0.01:
                provider, model = MODELS[-1]
            prompt = rng.randint(50, 4000)
            at = start + timedelta(seconds=i * 2_592_000 * months // count)
            event = UsageEvent(
                # UUIDv7-shaped like real capture ids: time-ordered, random tail.
                event_id=str(uuid.UUID(int=int(at.timestamp() * 1000) << 80 | 0x7 << 76
                                       | 0b10 << 62 | rng.getrandbits(62))),
                request_id=f"req-{i}",
                started_at=at,
                ended_at=at + timedelta(milliseconds=rng.randint(200, 3000)),
                provider=provider,
                model_requested=model,
                model_served=model,
                http_status=200,
                context=AllocationContext(application=app, environment=envs[i % len(envs)],
                                          workload_class=workloads[i % len(workloads)],
                                          job_id=f"job-{i // 100}"),
                usage=Usage(input_tokens=prompt, cached_input_tokens=prompt // 4,
                            output_tokens=rng.randint(10, 800), requests=1),
                provider_request_id=f"2026{i:016d}",
                source="bench",
            )
            out.write(encode_event(event) + b"\n")


def child(url: str, path: str, batch_size: int, workers: int) -> None:
    """Runs in its own process so its peak RSS is the ingest's alone."""
    from spendtrail.ledger.db import make_engine
    from spendtrail.ledger.ingest import Ingester

    engine = make_engine(url)
    begin = time.perf_counter()
    report = Ingester(engine, batch_size=batch_size, workers=workers).ingest_paths([Path(path)])
    seconds = time.perf_counter() - begin
    partitions = None
    if engine.dialect.name == "postgresql":
        from spendtrail.ledger.partitions import partition_months

        with engine.connect() as conn:
            partitions = len(partition_months(conn))
    # The parent and its worker processes, each at its own peak.
    peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"events": report.inserted, "seconds": seconds,
                      "rate": report.inserted / seconds, "peak_rss_mib": peak_kib / 1024,
                      "quarantined": report.quarantined, "unpriced": report.unpriced,
                      "rejected": len(report.rejected), "month_partitions": partitions}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--months", type=int, default=1)
    parser.add_argument("--postgres", default=POSTGRES_URL, metavar="URL",
                        help="the server for the PostgreSQL ledgers (a new database each)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.batch_size, args.workers)
        return

    results = []
    for count in (args.events // 10, args.events):
        path = OUT / (f"events-{count}.jsonl" if args.months == 1
                      else f"events-{count}-{args.months}m.jsonl")
        if not path.exists():
            begin = time.perf_counter()
            generate(path, count, args.months)
            print(f"generated {count} events in {time.perf_counter() - begin:.1f}s", flush=True)
        for backend in args.backends.split(","):
            url = fresh_ledger(backend, f"bench_{backend}_{count}", list_prices=True,
                               postgres_url=args.postgres)
            proc = subprocess.run(
                [sys.executable, __file__, "--batch-size", str(args.batch_size),
                 "--workers", str(args.workers), "--child", url, str(path)],
                check=True, capture_output=True, text=True)
            figures = {"backend": backend, "workers": args.workers, **json.loads(proc.stdout)}
            results.append(figures)
            print(f"{backend:<11} {figures['events']:>9} events  {figures['rate']:>9,.0f} ev/s  "
                  f"{args.workers} workers  "
                  f"{figures['seconds']:6.1f}s  peak RSS {figures['peak_rss_mib']:6.1f} MiB  "
                  f"(quarantined {figures['quarantined']}, unpriced {figures['unpriced']}, "
                  f"month partitions {figures['month_partitions']})",
                  flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
