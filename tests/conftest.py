"""Shared fixtures. Ledger tests run once on SQLite and once on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from factories import seed_books

from spendtrail.cli import common
from spendtrail.ledger.db import make_engine, migrate
from spendtrail.ledger.schema import metadata

POSTGRES_URL = os.environ.get(
    "SPENDTRAIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
POSTGRES_HINT = (
    f"PostgreSQL not reachable at {POSTGRES_URL}; start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or point SPENDTRAIL_TEST_POSTGRES_URL at a server where you may create databases"
)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway database on the real server, migrated once for the session."""
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"spendtrail_test_{uuid.uuid4().hex[:10]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        pytest.skip(POSTGRES_HINT)
    url = sa.engine.make_url(make_engine(POSTGRES_URL).url).set(database=name)
    url_text = url.render_as_string(hide_password=False)
    engine = make_engine(url_text)
    migrate(engine)
    engine.dispose()
    yield url_text
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """A migrated, empty ledger URL on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        return url
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def ledger(ledger_url):
    """A migrated, empty ledger engine on each backend."""
    engine = make_engine(ledger_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's real spendtrail home."""
    monkeypatch.setenv("SPENDTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPENDTRAIL_DATABASE_URL", raising=False)
    monkeypatch.setenv("SPENDTRAIL_ACTOR", "test-runner")


@pytest.fixture
def seeded(ledger, tmp_path):
    """A ledger with the example registry and a small CometAPI price sheet loaded."""
    with ledger.begin() as conn:
        seed_books(conn, tmp_path)
    return ledger


@pytest.fixture
def cli_ledger(ledger, ledger_url, monkeypatch):
    """Point the in-process CLI at the test's ledger (its settings and engine are cached per
    process, so the caches are cleared around the test); yields the ledger engine."""
    monkeypatch.setenv("SPENDTRAIL_DATABASE_URL", ledger_url)
    monkeypatch.setenv("SPENDTRAIL_ACTOR", "ana")
    common.settings.cache_clear()
    common.ledger.cache_clear()
    yield ledger
    if common.ledger.cache_info().currsize:
        common.ledger().dispose()
    common.settings.cache_clear()
    common.ledger.cache_clear()
