"""allocation: reallocations from the exception queue, exception resolutions

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reallocations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=False),
        sa.Column("from_application", sa.String(length=200), nullable=True),
        sa.Column("from_reasons", sa.String(length=500), nullable=False),
        sa.Column("to_application", sa.String(length=200), nullable=False),
        sa.Column("to_business_unit", sa.String(length=200), nullable=False),
        sa.Column("to_cost_center", sa.String(length=200), nullable=False),
        sa.Column("to_budget_owner", sa.String(length=200), nullable=False),
        sa.Column("registry_version", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount_pico", sa.BigInteger(), nullable=True),
        sa.Column("cost_revision", sa.Integer(), nullable=True),
        sa.Column("assigned_by", sa.String(length=200), nullable=False),
        sa.Column("assigned_at", _TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_reallocations_event"),
    )
    op.create_index("ix_reallocations_day", "reallocations", ["day"])
    op.create_table(
        "exception_resolutions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("reasons", sa.String(length=500), nullable=False),
        sa.Column("application", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", _TS, nullable=False),
        sa.Column("resolved_by", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_exception_resolutions_group", "exception_resolutions", ["group_id"]
    )

