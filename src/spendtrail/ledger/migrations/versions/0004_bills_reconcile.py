"""bills and reconciliations

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
METERS = (
    "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "input_audio_tokens", "output_audio_tokens", "requests", "images",
)


def upgrade() -> None:
    op.create_table(
        "bill_imports",
        sa.Column("id", Id, nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("file_name", sa.String(length=2000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=True),
        sa.Column("imported_at", Timestamp, nullable=False),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=True),
        sa.Column("last_day", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256", name="uq_bill_imports_sha256"),
    )
    op.create_table(
        "bill_import_errors",
        sa.Column("id", Id, nullable=False),
        sa.Column("import_id", Id, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=200), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("fatal", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bill_import_errors_import", "bill_import_errors", ["import_id"])
    op.create_table(
        "bill_lines",
        sa.Column("id", Id, nullable=False),
        sa.Column("import_id", Id, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=200), server_default="", nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=False),
        sa.Column("granularity", sa.String(length=10), nullable=False),
        sa.Column("period_start", Timestamp, nullable=False),
        sa.Column("period_end", Timestamp, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("charge_kind", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount_pico", sa.BigInteger(), nullable=True),
        sa.Column("effective_amount_pico", sa.BigInteger(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in METERS),
        sa.Column("usage_seconds", sa.String(length=50), nullable=True),
        sa.Column("provider_request_id", sa.String(length=200), nullable=True),
        sa.Column("response_id", sa.String(length=200), nullable=True),
        sa.Column("key_name", sa.String(length=200), nullable=True),
        sa.Column("project", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_bill_lines_import_request", "bill_lines", ["import_id", "provider_request_id"]
    )
    op.create_index("ix_bill_lines_import_day", "bill_lines", ["import_id", "day"])
    op.create_table(
        "reconciliations",
        sa.Column("id", Id, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("period_label", sa.String(length=40), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("bill_import_id", Id, nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tolerance", sa.String(length=40), nullable=False),
        sa.Column("logged_pico", sa.BigInteger(), nullable=False),
        sa.Column("billed_pico", sa.BigInteger(), nullable=False),
        sa.Column("variance_pico", sa.BigInteger(), nullable=False),
        sa.Column("within_tolerance", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=20), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "reconciliation_differences",
        sa.Column("id", Id, nullable=False),
        sa.Column("reconciliation_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("provider_request_id", sa.String(length=200), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("bill_line", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("key_name", sa.String(length=200), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("logged_pico", sa.BigInteger(), nullable=True),
        sa.Column("billed_pico", sa.BigInteger(), nullable=True),
        sa.Column("logged_tokens", sa.String(length=100), nullable=True),
        sa.Column("billed_tokens", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_reconciliation_differences_rec", "reconciliation_differences", ["reconciliation_id"]
    )
