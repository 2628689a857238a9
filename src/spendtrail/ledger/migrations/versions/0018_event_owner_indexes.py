"""indexes on events' owner columns with the start time, for the drill to events

Revision ID: 0018_event_owner_indexes
Revises: 0017_users
"""

from alembic import op

revision = "0018_event_owner_indexes"
down_revision = "0017_users"
branch_labels = None
depends_on = None

# The spend explorer's drill lists one owner's events of a period, newest first: an index on
# (owner, started_at) gives them in that order, so a page reads its own rows, not the
# period's. On PostgreSQL an index on the partitioned table is created on every partition,
# and on those made later.
OWNERS = ("application", "business_unit", "cost_center", "budget_owner")


def upgrade() -> None:
    for owner in OWNERS:
        op.create_index(f"ix_events_{owner}_started_at", "events", [owner, "started_at"])


def downgrade() -> None:
    for owner in OWNERS:
        op.drop_index(f"ix_events_{owner}_started_at", table_name="events")
