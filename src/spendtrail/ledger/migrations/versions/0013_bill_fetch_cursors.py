"""bill fetch cursors: how far each provider account's bill API has been read

Revision ID: 0013_bill_fetch_cursors
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_bill_fetch_cursors"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bill_fetch_cursors",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=2000), nullable=False),
        sa.Column("fetched_through", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("source", "account", name="pk_bill_fetch_cursors"),
    )


def downgrade() -> None:
    op.drop_table("bill_fetch_cursors")
