"""initial ledger

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("object_type", sa.String(length=100), nullable=False),
        sa.Column("object_id", sa.String(length=500), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_object", ["object_type", "object_id"], unique=False)

    op.create_table(
        "cost_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("price_entry_id", sa.String(length=200), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount_pico", sa.BigInteger(), nullable=True),
        sa.Column("breakdown", sa.Text(), nullable=False),
        sa.Column("flags", sa.String(length=500), server_default="", nullable=False),
        sa.Column("priced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "revision", name="uq_cost_entries_event_revision"),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("model_requested", sa.String(length=200), nullable=True),
        sa.Column("model_served", sa.String(length=200), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("business_unit", sa.String(length=200), nullable=True),
        sa.Column("application", sa.String(length=200), nullable=True),
        sa.Column("environment", sa.String(length=200), nullable=True),
        sa.Column("workload_class", sa.String(length=200), nullable=True),
        sa.Column("cost_center", sa.String(length=200), nullable=True),
        sa.Column("budget_owner", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.String(length=200), nullable=True),
        sa.Column("allocation_status", sa.String(length=20), nullable=False),
        sa.Column("allocation_reasons", sa.String(length=500), server_default="", nullable=False),
        sa.Column("registry_version", sa.Integer(), nullable=True),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("usage", sa.Text(), nullable=False),
        sa.Column("raw_usage", sa.Text(), nullable=True),
        sa.Column("provider_request_id", sa.String(length=200), nullable=True),
        sa.Column("response_id", sa.String(length=200), nullable=True),
        sa.Column("gateway_key_id", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_day", ["day"], unique=False)
        batch_op.create_index(
            "ix_events_provider_request_id", ["provider_request_id"], unique=False
        )
        batch_op.create_index("ix_events_request_id", ["request_id"], unique=False)

    op.create_table(
        "ingest_rejects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=2000), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "line", name="uq_ingest_rejects_source_line"),
    )
    op.create_table(
        "price_entries",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=False),
        sa.Column("model_match", sa.String(length=500), nullable=False),
        sa.Column("match_kind", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("prices", sa.Text(), nullable=False),
        sa.Column("tiers", sa.Text(), nullable=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_url", sa.String(length=2000), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("checked_at", sa.Date(), nullable=False),
        sa.Column("checked_by", sa.String(length=200), nullable=False),
        sa.Column("origin", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("price_entries", schema=None) as batch_op:
        batch_op.create_index("ix_price_entries_provider", ["provider"], unique=False)

    op.create_table(
        "registry_versions",
        sa.Column("version", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loaded_by", sa.String(length=200), nullable=False),
        sa.Column("source_path", sa.String(length=2000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "rollups_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=200), server_default="", nullable=False),
        sa.Column("model", sa.String(length=200), server_default="", nullable=False),
        sa.Column("business_unit", sa.String(length=200), server_default="", nullable=False),
        sa.Column("application", sa.String(length=200), server_default="", nullable=False),
        sa.Column("environment", sa.String(length=200), server_default="", nullable=False),
        sa.Column("workload_class", sa.String(length=200), server_default="", nullable=False),
        sa.Column("cost_center", sa.String(length=200), server_default="", nullable=False),
        sa.Column("budget_owner", sa.String(length=200), server_default="", nullable=False),
        sa.Column("allocation_status", sa.String(length=200), server_default="", nullable=False),
        sa.Column("currency", sa.String(length=200), server_default="", nullable=False),
        sa.Column("events", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("successes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("unpriced_events", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("images", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("amount_pico", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "provider",
            "model",
            "business_unit",
            "application",
            "environment",
            "workload_class",
            "cost_center",
            "budget_owner",
            "allocation_status",
            "currency",
            name="pk_rollups_daily",
        ),
    )
