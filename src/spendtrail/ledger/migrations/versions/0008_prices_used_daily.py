"""prices used per day

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prices_used_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("price_entry_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("day", "provider", "model", "price_entry_id",
                                name="pk_prices_used_daily"),
    )
    # Ledgers ingested before this table existed: fill it from their current cost entries.
    op.execute(
        "INSERT INTO prices_used_daily (day, provider, model, price_entry_id) "
        "SELECT DISTINCT e.day, e.provider, COALESCE(e.model_served, e.model_requested, ''), "
        "c.price_entry_id FROM cost_entries c JOIN events e ON e.event_id = c.event_id "
        "WHERE c.price_entry_id IS NOT NULL"
    )
