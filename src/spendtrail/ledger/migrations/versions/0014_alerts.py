"""alerts and their delivery attempts

Revision ID: 0014_alerts
Revises: 0013_bill_fetch_cursors
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_alerts"
down_revision = "0013_bill_fetch_cursors"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_label", sa.String(length=40)),
        sa.Column("application", sa.String(length=200)),
        sa.Column("cost_center", sa.String(length=200)),
        sa.Column("business_unit", sa.String(length=200)),
        sa.Column("budget_owner", sa.String(length=200)),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.UniqueConstraint("dedup_key", name="uq_alerts_dedup_key"),
    )
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", Id, primary_key=True),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("response", sa.String(length=500), nullable=False),
    )
    op.create_index(
        "ix_alert_deliveries_alert_channel", "alert_deliveries", ["alert_id", "channel"]
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alerts")
