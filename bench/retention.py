"""Retention on a partitioned PostgreSQL ledger: a month's statement, retired, and again.

    python bench/retention.py URL [--period 2026-10] [--keep 1m] [--today 2026-12-04]

Times the month's statement (JSON, CSV and Markdown with a fixed `generated_at`, and their
sha256), `retention --dry-run` (the rollups checked against the raw rows), the retention
itself, then the statement again: the sha256 must not change. Destructive: run it on a
benchmark ledger, such as the one `bench/books.py` leaves.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from datetime import UTC, date, datetime


def main() -> None:
    from spendtrail.ledger.db import make_engine
    from spendtrail.ledger.retention import parse_keep, retire
    from spendtrail.periods import parse_period
    from spendtrail.reports.chargeback import build_statement, to_csv, to_json
    from spendtrail.reports.statement_view import to_markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--period", default="2026-10")
    parser.add_argument("--keep", default="1m")
    parser.add_argument("--today", default="2026-12-04")
    args = parser.parse_args()
    engine = make_engine(args.url)
    period, today = parse_period(args.period), date.fromisoformat(args.today)

    def statement(label: str) -> str:
        begin = time.perf_counter()
        with engine.connect() as conn:
            built = build_statement(conn, period, generated_at=datetime(2026, 12, 4, tzinfo=UTC))
        seconds = time.perf_counter() - begin
        digest = hashlib.sha256(
            (to_json(built) + to_csv(built) + to_markdown(built)).encode()
        ).hexdigest()
        print(f"statement {label}: {seconds:.2f}s sha256 {digest}", flush=True)
        return digest

    before = statement("before")
    for dry_run in (True, False):
        begin = time.perf_counter()
        done = retire(engine, parse_keep(args.keep), today=today, actor="bench", dry_run=dry_run)
        months = [(f"{t.month:%Y-%m}", t.events, t.amount_pico) for t in done]
        print(
            f"retention --keep {args.keep}{' --dry-run' if dry_run else ''}: {months} in "
            f"{time.perf_counter() - begin:.1f}s",
            flush=True,
        )
    after = statement("after")
    print("byte-identical" if before == after else "DIFFERENT", flush=True)


if __name__ == "__main__":
    main()
