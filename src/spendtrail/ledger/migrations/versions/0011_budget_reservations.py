"""budget reservations: admitted calls hold their estimated cost until they settle

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("budget_counters") as batch:
        batch.add_column(sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False))
    op.create_table(
        "budget_reservations",
        sa.Column("counter_id", sa.String(length=120), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "counter_id", "period_start", "reservation_id", name="pk_budget_reservations"
        ),
    )
    op.create_index("ix_budget_reservations_expires_at", "budget_reservations", ["expires_at"])
    op.create_index(
        "ix_budget_reservations_reservation_id", "budget_reservations", ["reservation_id"]
    )


def downgrade() -> None:
    op.drop_table("budget_reservations")
    with op.batch_alter_table("budget_counters") as batch:
        batch.drop_column("reserved")
