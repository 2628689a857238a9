"""The Alembic migrations and the SQLAlchemy tables describe the same schema."""

import uuid
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from spendtrail.ledger.db import _MIGRATIONS, _alembic_config, make_engine, migrate, script_heads
from spendtrail.ledger.partitions import is_partition
from spendtrail.ledger.schema import bill_imports, metadata


def test_migrations_match_the_tables(ledger):
    # The monthly partitions of events and cost entries are not tables of schema.py.
    def tables_of_schema(name, type_, _parent):
        return not (type_ == "table" and is_partition(name))

    with ledger.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": tables_of_schema})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_the_heads_read_as_text_are_alembics(ledger):
    from alembic.script import ScriptDirectory

    assert script_heads() == set(ScriptDirectory(_MIGRATIONS).get_heads())
    with ledger.connect() as conn:
        assert set(MigrationContext.configure(conn).get_current_heads()) == script_heads()


def test_a_ledger_behind_the_scripts_is_brought_up(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0013_bill_fetch_cursors")
    migrate(engine)
    with engine.connect() as conn:
        assert set(MigrationContext.configure(conn).get_current_heads()) == script_heads()
        assert sa.inspect(conn).has_table("users")


def test_migrate_is_idempotent(ledger):
    migrate(ledger)
    migrate(ledger)


def test_void_bills_migration_keeps_the_bills_of_an_older_ledger(tmp_path, request):
    """0010_void_bills recreates bill_imports on SQLite (batch mode): the rows survive, and
    the sha256 stays unique among live bills only."""
    for backend in ("sqlite", "postgresql"):
        with ledger_at("0008", backend, tmp_path, request) as engine:
            with engine.begin() as conn:
                conn.execute(sa.text(
                    "INSERT INTO bill_imports (format, file_name, sha256, provider, imported_at,"
                    " imported_by, line_count, error_count) VALUES ('cometapi-csv', 'old.csv',"
                    " 'abc', 'cometapi', '2026-10-01 00:00:00', 'ana', 5, 0)"))
            migrate(engine)
            with engine.begin() as conn:
                row = conn.execute(sa.select(bill_imports)).mappings().one()
                assert (row["id"], row["file_name"], row["sha256"], row["voided_at"]) == (
                    1, "old.csv", "abc", None)
                with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                    conn.execute(bill_imports.insert().values(
                        {**row, "id": 2, "file_name": "again.csv"}))
                conn.execute(bill_imports.update().values(voided_at=row["imported_at"]))
                conn.execute(bill_imports.insert().values({**row, "id": 2}))


@contextmanager
def ledger_at(revision: str, backend: str, tmp_path, request):
    """A new ledger of `backend` migrated up to `revision` only, dropped afterwards."""
    if backend == "sqlite":
        url, drop = f"sqlite:///{tmp_path / f'at-{revision}.db'}", None
    else:
        url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_url"))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
        yield engine
    finally:
        engine.dispose()
        if drop is not None:
            drop()


def _fresh_postgres_database(session_url: str):
    """An empty database beside the session's, and a function that drops it."""
    admin = make_engine(session_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"spendtrail_mig_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(admin.url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop
