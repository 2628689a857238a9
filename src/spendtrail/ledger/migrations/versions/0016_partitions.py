"""partitions: events and cost entries by month on PostgreSQL; retired months

Every cost entry gets its event's day (the partition key). On PostgreSQL the two tables are
rebuilt as tables partitioned by RANGE (day): the rows are copied into one partition per
month they cover and a default partition, and the keys gain `day` (docs/ledger.md). SQLite
keeps its tables unpartitioned.

Revision ID: 0016_partitions
Revises: 0015_allocation_entries
"""

import sqlalchemy as sa
from alembic import op

from spendtrail.ledger.partitions import create_months, default_partition

revision = "0016_partitions"
down_revision = "0015_allocation_entries"
branch_labels = None
depends_on = None

# Set by the day of the cost entry's event; an entry without one (none should exist) takes
# the day it was priced, so no row is lost.
_BACKFILL = (
    "UPDATE cost_entries SET day = COALESCE("
    "(SELECT events.day FROM events WHERE events.event_id = cost_entries.event_id), {fallback})"
)


def upgrade() -> None:
    op.create_table(
        "retired_months",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_by", sa.String(length=200), nullable=False),
        sa.Column("keep", sa.String(length=20), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("month"),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.add_column("cost_entries", sa.Column("day", sa.Date(), nullable=True))
        op.execute(_BACKFILL.format(fallback="date(priced_at)"))
        with op.batch_alter_table("cost_entries") as batch:
            batch.alter_column("day", existing_type=sa.Date(), nullable=False)
            batch.drop_constraint("uq_cost_entries_event_revision", type_="unique")
            batch.create_unique_constraint(
                "uq_cost_entries_event_revision", ["event_id", "revision", "day"]
            )
        return
    _partition_postgresql()


def _partition_postgresql() -> None:
    op.execute("ALTER TABLE cost_entries ADD COLUMN day date")
    op.execute("UPDATE cost_entries c SET day = e.day FROM events e WHERE e.event_id = c.event_id")
    op.execute(
        "UPDATE cost_entries SET day = (priced_at AT TIME ZONE 'UTC')::date WHERE day IS NULL"
    )
    op.execute("ALTER TABLE cost_entries ALTER COLUMN day SET NOT NULL")
    # The id sequence outlives the old table: the new one goes on numbering from it.
    op.execute("ALTER SEQUENCE cost_entries_id_seq OWNED BY NONE")
    for table in ("events", "cost_entries"):
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_unpartitioned")
        op.execute(
            f"CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (day)"
        )
        op.execute(f"CREATE TABLE {default_partition(table)} PARTITION OF {table} DEFAULT")
    bind = op.get_bind()
    months = bind.execute(
        sa.text(
            "SELECT DISTINCT date_trunc('month', day)::date FROM events_unpartitioned "
            "UNION SELECT DISTINCT date_trunc('month', day)::date FROM cost_entries_unpartitioned"
        )
    ).scalars()
    create_months(bind, months)
    for table in ("events", "cost_entries"):
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned")
        op.execute(f"DROP TABLE {table}_unpartitioned")
    # Keys and indexes after the copy: built once over the rows, not row by row.
    op.execute("ALTER TABLE events ADD PRIMARY KEY (event_id, day)")
    op.create_index("ix_events_day", "events", ["day"])
    op.create_index("ix_events_request_id", "events", ["request_id"])
    op.create_index("ix_events_provider_request_id", "events", ["provider_request_id"])
    op.execute("ALTER TABLE cost_entries ADD PRIMARY KEY (id, day)")
    op.execute("ALTER SEQUENCE cost_entries_id_seq OWNED BY cost_entries.id")
    op.create_unique_constraint(
        "uq_cost_entries_event_revision", "cost_entries", ["event_id", "revision", "day"]
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger's migrations go forward only")
