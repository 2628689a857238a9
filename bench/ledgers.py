"""Fresh ledgers for the benchmarks: a new SQLite file or PostgreSQL database, set up through
the `spendtrail` CLI with the example registry and price sheet, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
POSTGRES_URL = os.environ.get(
    "SPENDTRAIL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def spendtrail(url: str, *args: str) -> None:
    env = {**os.environ, "SPENDTRAIL_DATABASE_URL": url, "SPENDTRAIL_ACTOR": "bench"}
    subprocess.run([sys.executable, "-m", "spendtrail.cli.app", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def fresh_ledger(backend: str, name: str, *, list_prices: bool = False,
                 postgres_url: str = POSTGRES_URL) -> str:
    """An empty ledger named `name` with the example registry and price sheet (and, with
    `list_prices`, genai-prices' openai and anthropic list prices); returns its URL. A
    PostgreSQL ledger is a new database on the server of `postgres_url`."""
    if backend == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        db = OUT / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db}"
    else:
        import sqlalchemy as sa

        admin = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"),
                                 isolation_level="AUTOCOMMIT")
        database = f"spendtrail_{name}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            # Byte-order collation, as docs/deploy.md advises for a ledger: its text keys
            # are ids and slugs, and comparing them with memcmp rather than strcoll takes
            # ~7 % off the server's ingest CPU (docs/benchmarks.md, "Ingest").
            conn.execute(sa.text(
                f'CREATE DATABASE "{database}" TEMPLATE template0 LC_COLLATE "C"'))
        admin.dispose()
        url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    spendtrail(url, "registry", "load", str(ROOT / "examples" / "registry.yaml"))
    spendtrail(url, "prices", "import", "sheet", str(ROOT / "examples" / "prices.yaml"))
    if list_prices:
        spendtrail(url, "prices", "import", "genai-prices", "--provider", "openai",
                   "--provider", "anthropic")
    return url
