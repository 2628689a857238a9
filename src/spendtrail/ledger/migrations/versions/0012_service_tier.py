"""service tier on events and price entries

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_tier", sa.String(length=50), nullable=True))
    with op.batch_alter_table("price_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_tier", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("price_entries", schema=None) as batch_op:
        batch_op.drop_column("service_tier")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("service_tier")
