"""Closing the books at scale: reconcile a CometAPI export, close the month, then a month's
chargeback statement.

    python bench/books.py [--events 1000000] [--chargeback-events 10000000] [--backends sqlite]
                          [--postgres postgresql://user@host:5432/db] [--chargeback-only]

1. Writes N ledger events (provider cometapi, models of the example price sheet, UUIDv7-shaped
   ids, one `provider_request_id` each, one month) and the CometAPI usage-log CSV export that
   bills them: each consume row carries the event's tokens and its exact sheet price in quota
   units (500,000 = 1 USD, rounded to the unit as CometAPI does). Planted differences: events
   missing from the bill, bill lines no event carries, token mismatches, price mismatches,
   refund rows and error rows. A fresh ledger (example registry and sheet) ingests the events
   (workers=2); a child process imports the bill; another child reconciles the month. Each
   child reports its time and peak RSS; the differences found must equal the planted ones.
   Then the month is closed (``spendtrail.close.close_period``, every blocker accepted): its
   allocation entries and true-up stored, the statements of the company and every owner
   snapshotted in four formats, and its FOCUS export snapshotted (so the close's time holds
   the export's pass over the events); a child writes the FOCUS export (of a closed month:
   the snapshot, read back); a child reads the closed month's company statement back (the
   snapshot).
2. A child process builds the chargeback statement for the month from a ledger holding
   `--chargeback-events` events (the reconcile ledger when the counts are equal).
   `--chargeback-only` skips step 1; `--postgres` names the server PostgreSQL ledgers are
   created on (a new database each).
Figures are printed as a table and as JSON.

One step alone, on an existing ledger: ``python bench/books.py --child STEP URL ARG``, e.g.
``--child close URL -`` or ``--child focus-pass URL 1`` (the FOCUS export's pass over the
month's events by ARG worker processes; 1 is one process).
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
from decimal import Decimal
from pathlib import Path

import yaml
from ledgers import OUT, POSTGRES_URL, ROOT, fresh_ledger

PERIOD = "2026-10"
MONTH_SECONDS = 31 * 86_400
QUOTA_PICO = 2_000_000  # one CometAPI quota unit (1/500,000 USD) in pico-USD

# Models of examples/prices.yaml (cometapi) with uncached input/output prices in USD per 1M
# tokens; the event carries no cached or cache-write tokens, and stays under the claude tier.
MODELS = {"gpt-4o-mini": ("0.15", "0.60"), "gpt-4o": ("2.00", "8.00"),
          "claude-sonnet-4-20250514": ("2.40", "12.00")}
# Planted differences: kind -> how many.
PLANTED = {"in_ledger_not_billed": 100, "billed_not_in_ledger": 100, "token_mismatch": 100,
           "price_mismatch": 100, "refund": 50, "error_billed": 50}
HEADER = "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,request_id\n"


def check_sheet() -> None:
    """The prices used for the quotas must be the sheet's."""
    sheet = yaml.safe_load((ROOT / "examples" / "prices.yaml").read_text())
    for entry in sheet["prices"]:
        for model, (pin, pout) in MODELS.items():
            if entry["model"] == model or (entry.get("match") == "regex"
                                           and model.startswith("claude-sonnet-4")):
                prices = entry["prices"]
                assert (Decimal(str(prices["input_tokens"])), Decimal(str(prices["output_tokens"]))
                        ) == (Decimal(pin), Decimal(pout)), (model, prices)


def generate(events_path: Path, bill_path: Path, count: int, seed: int = 11) -> None:
    from spendtrail.events import AllocationContext, Usage, UsageEvent, encode_event

    registry = yaml.safe_load((ROOT / "examples" / "registry.yaml").read_text())
    apps = [(a["id"], a["environments"], a["workload_classes"]) for a in registry["applications"]]
    models = [(name, int(Decimal(pin) * 10**6), int(Decimal(pout) * 10**6))  # pico per token
              for name, (pin, pout) in MODELS.items()]
    rng = random.Random(seed)
    picked = rng.sample(range(count), 350)
    missing, tokens, price = set(picked[:100]), set(picked[100:200]), set(picked[200:300])
    refunds = set(picked[300:350])
    extras = set(rng.sample(range(count), PLANTED["billed_not_in_ledger"]))
    errors = set(rng.sample(range(count), PLANTED["error_billed"]))
    start = datetime(2026, 10, 1, tzinfo=UTC)
    epoch = int(start.timestamp())
    events_path.parent.mkdir(parents=True, exist_ok=True)
    with events_path.open("wb") as out, bill_path.open("w") as bill:
        bill.write(HEADER)
        for i in range(count):
            app, envs, workloads = apps[i % len(apps)]
            model, pin, pout = models[i % len(models)]
            prompt, completion = rng.randint(50, 4000), rng.randint(10, 800)
            offset = i * MONTH_SECONDS // count
            at = start + timedelta(seconds=offset)
            rid = f"2026{i:016d}"
            event = UsageEvent(
                event_id=str(uuid.UUID(int=int(at.timestamp() * 1000) << 80 | 0x7 << 76
                                       | 0b10 << 62 | rng.getrandbits(62))),
                request_id=f"req-{i}",
                started_at=at,
                ended_at=at + timedelta(milliseconds=rng.randint(200, 3000)),
                provider="cometapi",
                model_requested=model,
                model_served=model,
                http_status=200,
                context=AllocationContext(application=app, environment=envs[i % len(envs)],
                                          workload_class=workloads[i % len(workloads)],
                                          job_id=f"job-{i // 100}"),
                usage=Usage(input_tokens=prompt, output_tokens=completion, requests=1),
                provider_request_id=rid,
                source="bench",
            )
            out.write(encode_event(event) + b"\n")
            quota = (prompt * pin + completion * pout + QUOTA_PICO // 2) // QUOTA_PICO
            created, key = epoch + offset, f"key-{app}"
            if i not in missing:
                billed_prompt = prompt + 7 if i in tokens else prompt
                billed_quota = quota + 50 if i in price else quota
                bill.write(f"{created},2,{key},{model},{billed_prompt},{completion},"
                           f"{billed_quota},{rid}\n")
            if i in refunds:
                bill.write(f"{created + 30},6,{key},{model},0,0,{quota},{rid}\n")
            if i in extras:
                bill.write(f"{created},2,{key},{model},{prompt},{completion},{quota},"
                           f"9999{i:016d}\n")
            if i in errors:
                bill.write(f"{created},5,{key},{model},0,0,0,8888{i:016d}\n")


def peak_mib() -> float:
    """This process's peak RSS plus its worker processes' (the ingest's and the FOCUS pass's
    workers, one per core): an upper bound, as the largest worker's peak times the cores."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (os.cpu_count() or 1)
    return (own + workers) / 1024


def child(step: str, url: str, arg: str) -> None:
    """Runs in its own process so its peak RSS is the step's alone."""
    from spendtrail.ledger.db import make_engine
    from spendtrail.periods import parse_period

    engine = make_engine(url)
    period = parse_period(PERIOD)
    begin = time.perf_counter()
    if step == "ingest":
        from spendtrail.ledger.ingest import Ingester

        report = Ingester(engine, workers=2).ingest_paths([Path(arg)])
        figures = {"events": report.inserted, "unpriced": report.unpriced,
                   "quarantined": report.quarantined, "rejected": len(report.rejected)}
    elif step == "import":
        from spendtrail.reconcile import import_bill

        result = import_bill(engine, Path(arg), "cometapi-csv", actor="bench")
        figures = {"bill": result.bill.id, "lines": result.bill.line_count,
                   "errors": result.bill.error_count}
    elif step == "reconcile":
        from spendtrail.reconcile import reconcile

        record = reconcile(engine, period=period, bill_id=int(arg), reviewer="bench",
                           actor="bench")
        figures = {"result": record.result, "counts": record.counts,
                   "variance_pico": record.variance_pico, "reasons": record.reasons}
    elif step == "close":
        from spendtrail.close import BLOCKERS, close_period

        result = close_period(engine, period, actor="bench",
                              accept=dict.fromkeys(BLOCKERS, "bench: accepted to time the close"))
        figures = {"entries": result.entries, "snapshots": len(result.snapshots),
                   "blockers": [b.code for b in result.blockers],
                   "owners": len(result.charges)}
    elif step == "focus":
        from spendtrail.reports.focus import export_focus

        summary = export_focus(engine, period, Path(arg), "csv")
        figures = {"rows": summary.rows, "exported_events": summary.exported_events,
                   "snapshot": summary.closed}
    elif step == "focus-pass":  # the FOCUS export's pass over the month's events, ARG workers
        from spendtrail.ledger.prices import load_catalog
        from spendtrail.reports.focus_sums import event_sums

        with engine.connect() as conn:
            catalog = load_catalog(conn)
            begin = time.perf_counter()  # the pass, not the catalog
            sums, counts = event_sums(conn, period, catalog, workers=int(arg))
        figures = {"row_keys": len(sums), "events": counts.events, "workers": int(arg)}
    elif step == "closed-statement":
        from spendtrail.reports.chargeback import Scope
        from spendtrail.reports.statement_file import statement_document

        begin = time.perf_counter()  # the read, not the imports
        with engine.connect() as conn:
            content, built = statement_document(conn, period, Scope(), "md")
        figures = {"bytes": len(content), "snapshot": built is None}
    else:
        import sqlalchemy as sa

        from spendtrail.reports.chargeback import _price_sources, build_statement

        with engine.connect() as conn:
            statement = build_statement(conn, period)
            seconds = time.perf_counter() - begin
            mark = time.perf_counter()
            _price_sources(conn, period)
            price_sources = time.perf_counter() - mark
            rollups = conn.execute(sa.text("SELECT count(*) FROM rollups_daily")).scalar_one()
            events = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
        print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_mib(),
                          "owners": len(statement.owners), "rollup_rows": rollups,
                          "events": events, "price_sources_seconds": price_sources}))
        return
    print(json.dumps({"seconds": time.perf_counter() - begin, "peak_rss_mib": peak_mib(),
                      **figures}))


def run_child(step: str, url: str, arg: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step, url, arg],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


def ensure_data(count: int) -> tuple[Path, Path]:
    events_path, bill_path = OUT / f"books-events-{count}.jsonl", OUT / f"books-bill-{count}.csv"
    if not (events_path.exists() and bill_path.exists()):
        begin = time.perf_counter()
        generate(events_path, bill_path, count)
        print(f"generated {count} events and their bill in {time.perf_counter() - begin:.1f}s",
              flush=True)
    return events_path, bill_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chargeback-events", type=int, default=10_000_000)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--postgres", default=POSTGRES_URL, metavar="URL")
    parser.add_argument("--chargeback-only", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("STEP", "URL", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    check_sheet()
    results = []
    for backend in args.backends.split(","):
        if args.chargeback_only:
            cb_events, _ = ensure_data(args.chargeback_events)
            url = fresh_ledger(backend, f"books_{backend}_{args.chargeback_events}",
                               postgres_url=args.postgres)
            ingest = run_child("ingest", url, str(cb_events))
            print(f"{backend}: ingested {ingest['events']} events in {ingest['seconds']:.1f}s "
                  f"(peak RSS {ingest['peak_rss_mib']:.0f} MiB)", flush=True)
            results.append(chargeback(backend, url))
            continue
        events_path, bill_path = ensure_data(args.events)
        url = fresh_ledger(backend, f"books_{backend}_{args.events}", postgres_url=args.postgres)
        ingest = run_child("ingest", url, str(events_path))
        print(f"{backend}: ingested {ingest['events']} events in {ingest['seconds']:.1f}s "
              f"(peak RSS {ingest['peak_rss_mib']:.0f} MiB)", flush=True)
        imported = run_child("import", url, str(bill_path))
        print(f"{backend}: imported {imported['lines']} bill lines ({imported['errors']} errors) "
              f"in {imported['seconds']:.1f}s (peak RSS {imported['peak_rss_mib']:.0f} MiB)",
              flush=True)
        rec = run_child("reconcile", url, str(imported["bill"]))
        found = {kind: rec["counts"].get(kind, 0) for kind in PLANTED}
        ok = found == PLANTED
        print(f"{backend}: reconciled {rec['counts']['bill_lines']} lines against "
              f"{rec['counts']['events']} events in {rec['seconds']:.1f}s, peak RSS "
              f"{rec['peak_rss_mib']:.0f} MiB, result {rec['result']}; differences {found} "
              f"{'= planted' if ok else '!= planted ' + str(PLANTED)}", flush=True)
        results.append({"backend": backend, "step": "reconcile", "events": args.events,
                        "ingest": ingest, "import": imported, "reconcile": rec,
                        "planted": PLANTED, "found": found, "all_found": ok})
        closed = run_child("close", url, "")
        print(f"{backend}: closed {PERIOD} ({args.events} events, blockers accepted: "
              f"{', '.join(closed['blockers']) or 'none'}): {closed['entries']} allocation "
              f"entries, {closed['snapshots']} statement snapshots for {closed['owners']} "
              f"owners in {closed['seconds']:.1f}s, peak RSS {closed['peak_rss_mib']:.0f} MiB",
              flush=True)
        focus = run_child("focus", url, str(OUT / f"books-focus-{backend}-{args.events}.csv"))
        print(f"{backend}: FOCUS export, {focus['rows']} rows from {focus['exported_events']} "
              f"events (the close's snapshot: {focus['snapshot']}), in {focus['seconds']:.1f}s, "
              f"peak RSS {focus['peak_rss_mib']:.0f} MiB",
              flush=True)
        read = run_child("closed-statement", url, "")
        print(f"{backend}: the closed month's statement ({read['bytes']} bytes, snapshot: "
              f"{read['snapshot']}) in {read['seconds']:.3f}s, peak RSS "
              f"{read['peak_rss_mib']:.0f} MiB", flush=True)
        results.append({"backend": backend, "step": "close", "events": args.events,
                        "close": closed, "focus": focus, "closed_statement": read})

        if args.chargeback_events != args.events:
            cb_events, _ = ensure_data(args.chargeback_events)
            url = fresh_ledger(backend, f"books_{backend}_{args.chargeback_events}",
                               postgres_url=args.postgres)
            run_child("ingest", url, str(cb_events))
        results.append(chargeback(backend, url))
    print(json.dumps(results, indent=2))


def chargeback(backend: str, url: str) -> dict:
    statement = run_child("chargeback", url, "")
    print(f"{backend}: chargeback statement for {PERIOD} ({statement['events']} events, "
          f"{statement['rollup_rows']} rollup rows, {statement['owners']} owners) in "
          f"{statement['seconds']:.2f}s (of which price sources "
          f"{statement['price_sources_seconds']:.2f}s), peak RSS "
          f"{statement['peak_rss_mib']:.0f} MiB", flush=True)
    return {"backend": backend, "step": "chargeback", **statement}


if __name__ == "__main__":
    main()
