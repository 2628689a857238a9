"""drop the index on events.request_id

Revision ID: 0019_no_request_id_index
Revises: 0018_event_owner_indexes
"""

from alembic import op

revision = "0019_no_request_id_index"
down_revision = "0018_event_owner_indexes"
branch_labels = None
depends_on = None

# Nothing looks an event up by its request id: the retries report, its one reader, takes
# each request's last attempt with a window over the period. Every ingested event paid an
# insert into the index (docs/benchmarks.md, "Ingest").


def upgrade() -> None:
    op.drop_index("ix_events_request_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_request_id", "events", ["request_id"])
