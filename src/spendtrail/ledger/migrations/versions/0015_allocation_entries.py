"""allocation entries, allocation periods (stored and closed months), statement snapshots

Revision ID: 0015_allocation_entries
Revises: 0014_alerts
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_allocation_entries"
down_revision = "0014_alerts"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "allocation_entries",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("application", sa.String(length=200), nullable=False),
        sa.Column("business_unit", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("cost_center", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("budget_owner", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_pico", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("unpriced_events", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("pool", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("rule_id", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("rules_version", sa.Integer()),
        sa.Column("method", sa.String(length=20), nullable=False, server_default=""),
        sa.Column("origin", sa.String(length=400), nullable=False, server_default=""),
        sa.Column("ratio", sa.String(length=100), nullable=False, server_default=""),
        sa.Column("day_from", sa.Date()),
        sa.Column("day_to", sa.Date()),
        sa.Column("reconciliation_id", _ID),
        sa.Column("adjusts_period", sa.String(length=7), nullable=False, server_default=""),
        sa.Column("adjusts_kind", sa.String(length=20), nullable=False, server_default=""),
        sa.Column("adjusts_entry_id", _ID),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index("ix_allocation_entries_period", "allocation_entries", ["period"])
    op.create_index("ix_allocation_entries_adjusts", "allocation_entries", ["adjusts_period"])
    op.create_table(
        "allocation_periods",
        sa.Column("period", sa.String(length=7), primary_key=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_by", sa.String(length=200), nullable=False),
        sa.Column("true_up_rule", sa.String(length=20), nullable=False),
        sa.Column("rules_version", sa.Integer()),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("closed_by", sa.String(length=200)),
        sa.Column("accepted", sa.Text()),
    )
    op.create_table(
        "statement_snapshots",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("scope", sa.String(length=400), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("period", "scope", "format", name="pk_statement_snapshots"),
    )


def downgrade() -> None:
    op.drop_table("statement_snapshots")
    op.drop_table("allocation_periods")
    op.drop_index("ix_allocation_entries_adjusts", table_name="allocation_entries")
    op.drop_index("ix_allocation_entries_period", table_name="allocation_entries")
    op.drop_table("allocation_entries")
