"""evidence: source register, review notes, follow-ups, smoke runs, handoffs

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evidence_sources",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("purpose", sa.Text(), server_default="", nullable=False),
        sa.Column("area", sa.String(length=200), server_default="", nullable=False),
        sa.Column("covers", sa.String(length=500), nullable=True),
        sa.Column("accessed", sa.Date(), nullable=False),
        sa.Column("checked_by", sa.String(length=200), nullable=False),
        sa.Column("review_every_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "review_notes",
        sa.Column("review_id", sa.String(length=64), nullable=False),
        sa.Column("usage_period", sa.String(length=20), nullable=False),
        sa.Column("team_owner", sa.String(length=200), nullable=True),
        sa.Column("review_result", sa.String(length=20), nullable=True),
        sa.Column("follow_up_owner", sa.String(length=100), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("checked_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("review_id"),
    )
    op.create_index("ix_review_notes_period", "review_notes", ["usage_period"])
    op.create_table(
        "follow_ups",
        sa.Column("id", _ID, nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("origin_id", sa.String(length=200), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("routed_to", sa.String(length=100), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_follow_ups_origin", "follow_ups", ["origin", "origin_id"])
    op.create_table(
        "smoke_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("reviewed_at", _TS, nullable=False),
        sa.Column("operator", sa.String(length=200), nullable=False),
        sa.Column("source_urls_checked", sa.Text(), nullable=False),
        sa.Column("workload_tag", sa.String(length=200), nullable=False),
        sa.Column("owner_tag", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=200), nullable=False),
        sa.Column("happy_path_result", sa.String(length=20), nullable=False),
        sa.Column("error_path_result", sa.String(length=20), nullable=False),
        sa.Column("evidence_captured", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("follow_up_owner", sa.String(length=100), nullable=True),
        sa.Column("upstream_url", sa.String(length=2000), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
