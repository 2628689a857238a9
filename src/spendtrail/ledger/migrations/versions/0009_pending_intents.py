"""pending intents

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_intents",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("writer_pid", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=2000), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("intent", sa.Text(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )


def downgrade() -> None:
    op.drop_table("pending_intents")
