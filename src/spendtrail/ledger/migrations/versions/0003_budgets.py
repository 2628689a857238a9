"""budgets

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("scope_value", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=200), nullable=True),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("custom_start", sa.Date(), nullable=True),
        sa.Column("custom_end", sa.Date(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("limit_units", sa.BigInteger(), nullable=False),
        sa.Column("thresholds", sa.String(length=200), server_default="", nullable=False),
        sa.Column("hard_limit", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "budget_counters",
        sa.Column("counter_id", sa.String(length=120), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("counter_id", "period_start", name="pk_budget_counters"),
    )
    op.create_table(
        "budget_settlements",
        sa.Column("counter_id", sa.String(length=120), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "counter_id", "period_start", "event_id", name="pk_budget_settlements"
        ),
    )
    with op.batch_alter_table("budget_settlements", schema=None) as batch_op:
        batch_op.create_index("ix_budget_settlements_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("budget_id", sa.String(length=100), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_label", sa.String(length=40), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("limit_units", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "budget_id", "period_start", "threshold", name="uq_budget_alerts_once"
        ),
    )
