"""The Alembic migrations and the SQLAlchemy tables describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from spendtrail.ledger.db import migrate
from spendtrail.ledger.schema import metadata


def test_migrations_match_the_tables(ledger):
    with ledger.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_is_idempotent(ledger):
    migrate(ledger)
    migrate(ledger)
