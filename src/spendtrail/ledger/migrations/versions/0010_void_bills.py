"""void bills: a voided bill keeps its rows but frees its file's sha256

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LIVE = sa.text("voided_at IS NULL")


def upgrade() -> None:
    # Batch mode: SQLite drops a table constraint by copying the table.
    with op.batch_alter_table("bill_imports") as batch:
        batch.drop_constraint("uq_bill_imports_sha256", type_="unique")
        batch.add_column(sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("voided_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("void_reason", sa.Text(), nullable=True))
    op.create_index(
        "uq_bill_imports_sha256_live",
        "bill_imports",
        ["sha256"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
