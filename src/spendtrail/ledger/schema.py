"""Ledger tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them;
``tests/test_migrations.py`` checks the two never drift apart.

Money columns are integer pico-units (see ``spendtrail.money``) with a currency column
beside them. Rollup dimension columns are NOT NULL with '' for "none", because a unique
key treats NULLs as distinct and the ingest upsert relies on that key.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Timestamp = sa.DateTime(timezone=True)

# On PostgreSQL, events and cost_entries are partitioned by month on `day` (the event's UTC
# day; migration 0016, ledger/partitions.py), so their keys there include `day`: the events
# key is (event_id, day). `day` comes from the event's own start time, so a replayed event
# meets its first copy in the same partition (docs/ledger.md, "Partitions").
events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("ended_at", Timestamp),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("endpoint", sa.String(200), nullable=False),
    sa.Column("model_requested", sa.String(200)),
    sa.Column("model_served", sa.String(200)),
    sa.Column("http_status", sa.Integer),
    sa.Column("outcome", sa.String(20), nullable=False),
    # Owner as resolved by the registry when allocated; as captured when quarantined.
    sa.Column("business_unit", sa.String(200)),
    sa.Column("application", sa.String(200)),
    sa.Column("environment", sa.String(200)),
    sa.Column("workload_class", sa.String(200)),
    sa.Column("cost_center", sa.String(200)),
    sa.Column("budget_owner", sa.String(200)),
    sa.Column("job_id", sa.String(200)),
    sa.Column("allocation_status", sa.String(20), nullable=False),
    sa.Column("allocation_reasons", sa.String(500), nullable=False, server_default=""),
    sa.Column("registry_version", sa.Integer),
    sa.Column("context", sa.Text, nullable=False),  # the captured context, verbatim JSON
    sa.Column("usage", sa.Text, nullable=False),  # JSON of the Usage meters
    sa.Column("raw_usage", sa.Text),
    sa.Column("provider_request_id", sa.String(200)),
    sa.Column("response_id", sa.String(200)),
    sa.Column("gateway_key_id", sa.String(200)),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("ingested_at", Timestamp, nullable=False),
    sa.Column("service_tier", sa.String(50)),  # as billed; NULL: the standard tier
    sa.Index("ix_events_day", "day"),
    sa.Index("ix_events_provider_request_id", "provider_request_id"),
    # The drill to events: one owner's events of a period, newest first (event_list.py
    # compares these columns themselves, not coalesced, and bounds started_at).
    sa.Index("ix_events_application_started_at", "application", "started_at"),
    sa.Index("ix_events_business_unit_started_at", "business_unit", "started_at"),
    sa.Index("ix_events_cost_center_started_at", "cost_center", "started_at"),
    sa.Index("ix_events_budget_owner_started_at", "budget_owner", "started_at"),
)

cost_entries = sa.Table(
    "cost_entries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    # No foreign key: the ingester writes an entry in the same transaction as its event, and
    # a per-row FK trigger made PostgreSQL bulk ingest a third slower. tests/test_ingest.py
    # checks every entry has its event.
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # priced | incomplete | unpriced
    sa.Column("price_entry_id", sa.String(200)),
    sa.Column("currency", sa.String(3)),
    sa.Column("amount_pico", sa.BigInteger),
    sa.Column("breakdown", sa.Text, nullable=False),  # JSON {meter: amount in pico-units}
    sa.Column("flags", sa.String(500), nullable=False, server_default=""),
    sa.Column("priced_at", Timestamp, nullable=False),
    sa.Column("day", sa.Date, nullable=False),  # its event's day: the partition key
    sa.UniqueConstraint("event_id", "revision", "day", name="uq_cost_entries_event_revision"),
)

ROLLUP_DIMENSIONS = (
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
)
ROLLUP_MEASURES = (
    "events",
    "successes",
    "unpriced_events",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
    "images",
    "amount_pico",
)

rollups_daily = sa.Table(
    "rollups_daily",
    metadata,
    sa.Column("day", sa.Date, nullable=False),
    *(
        sa.Column(name, sa.String(200), nullable=False, server_default="")
        for name in ROLLUP_DIMENSIONS[1:]
    ),
    *(
        sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        for name in ROLLUP_MEASURES
    ),
    sa.PrimaryKeyConstraint(*ROLLUP_DIMENSIONS, name="pk_rollups_daily"),
)

price_entries = sa.Table(
    "price_entries",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("model_match", sa.String(500), nullable=False),
    sa.Column("match_kind", sa.String(20), nullable=False),  # exact | glob | regex
    sa.Column("kind", sa.String(20), nullable=False),  # list | contracted
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("prices", sa.Text, nullable=False),  # JSON {meter: decimal string}
    sa.Column("tiers", sa.Text),  # JSON list, see spendtrail.pricing
    sa.Column("effective_from", Timestamp, nullable=False),
    sa.Column("effective_to", Timestamp),
    sa.Column("source_url", sa.String(2000), nullable=False),
    sa.Column("source_id", sa.String(200)),
    sa.Column("checked_at", sa.Date, nullable=False),
    sa.Column("checked_by", sa.String(200), nullable=False),
    sa.Column("origin", sa.String(500), nullable=False),  # which import or sheet added it
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("service_tier", sa.String(50)),  # NULL: the standard tier
    sa.Index("ix_price_entries_provider", "provider"),
)

registry_versions = sa.Table(
    "registry_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("valid_from", Timestamp, nullable=False),
    sa.Column("loaded_at", Timestamp, nullable=False),
    sa.Column("loaded_by", sa.String(200), nullable=False),
    sa.Column("source_path", sa.String(2000), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("document", sa.Text, nullable=False),  # the normalized registry as JSON
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("object_type", sa.String(100), nullable=False),
    sa.Column("object_id", sa.String(500), nullable=False),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_audit_log_object", "object_type", "object_id"),
)

ingest_rejects = sa.Table(
    "ingest_rejects",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("source", sa.String(2000), nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.UniqueConstraint("source", "line", name="uq_ingest_rejects_source_line"),
)

# Keys the gateway issues to applications. Only a SHA-256 of the key is kept; the prefix is
# for people to tell keys apart. A key is valid until revoked_at, which rotation may set in
# the future to give callers a grace period.
gateway_keys = sa.Table(
    "gateway_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("application", sa.String(200), nullable=False),
    sa.Column("environment", sa.String(200)),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("key_prefix", sa.String(20), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", Timestamp),
    sa.Column("rotated_from", sa.String(64)),
    sa.UniqueConstraint("key_hash", name="uq_gateway_keys_key_hash"),
)

# Budgets (see spendtrail.budgets and docs/budgets.md). A limit is in integer pico-units of
# `currency`, or in tokens when `currency` is NULL. Custom periods are [custom_start,
# custom_end) in UTC days, matching the daily rollups spend is read from.
budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("scope", sa.String(20), nullable=False),
    sa.Column("scope_value", sa.String(200), nullable=False),
    sa.Column("environment", sa.String(200)),
    sa.Column("period", sa.String(10), nullable=False),
    sa.Column("custom_start", sa.Date),
    sa.Column("custom_end", sa.Date),
    sa.Column("currency", sa.String(3)),
    sa.Column("limit_units", sa.BigInteger, nullable=False),
    sa.Column("thresholds", sa.String(200), nullable=False, server_default=""),
    sa.Column("hard_limit", sa.Boolean, nullable=False),
    sa.Column("owner", sa.String(200)),
    sa.Column("notes", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# Shared budget counters for gateways that share this database: one row per budget counter
# (`Budget.counter_id`) and period, incremented atomically by an upsert, plus one settlement
# row per event so a repeated settle counts once and a reload can tell which settled spend
# the ledger holds. `reserved` is what admitted calls still in flight may cost; each of their
# reservations is a `budget_reservations` row until it is settled, released or expires.
budget_counters = sa.Table(
    "budget_counters",
    metadata,
    sa.Column("counter_id", sa.String(120), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("spent", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("counter_id", "period_start", name="pk_budget_counters"),
)

budget_settlements = sa.Table(
    "budget_settlements",
    metadata,
    sa.Column("counter_id", sa.String(120), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint(
        "counter_id", "period_start", "event_id", name="pk_budget_settlements"
    ),
    sa.Index("ix_budget_settlements_expires_at", "expires_at"),  # pruning at each reload
)

budget_reservations = sa.Table(
    "budget_reservations",
    metadata,
    sa.Column("counter_id", sa.String(120), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("reservation_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),  # dropped at a reload after this
    sa.PrimaryKeyConstraint(
        "counter_id", "period_start", "reservation_id", name="pk_budget_reservations"
    ),
    sa.Index("ix_budget_reservations_expires_at", "expires_at"),
    sa.Index("ix_budget_reservations_reservation_id", "reservation_id"),
)

# One row per budget, period and soft threshold crossed; the unique key makes it exactly once
# however many gateways see the crossing.
budget_alerts = sa.Table(
    "budget_alerts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("budget_id", sa.String(100), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_label", sa.String(40), nullable=False),
    sa.Column("threshold", sa.Integer, nullable=False),
    sa.Column("spent", sa.BigInteger, nullable=False),
    sa.Column("limit_units", sa.BigInteger, nullable=False),
    sa.Column("unit", sa.String(10), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.UniqueConstraint(
        "budget_id", "period_start", "threshold", name="uq_budget_alerts_once"
    ),
)

# Evidence (see spendtrail.evidence and docs/evidence.md): the source register, stored review
# notes (the note itself as JSON, with the columns people filter on beside it), the follow-up
# queue, smoke-test run logs in the seeds' fields, and handoff records.
evidence_sources = sa.Table(
    "evidence_sources",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("purpose", sa.Text, nullable=False, server_default=""),
    sa.Column("area", sa.String(200), nullable=False, server_default=""),
    sa.Column("covers", sa.String(500)),  # comma-separated claim kinds; NULL: any kind
    sa.Column("accessed", sa.Date, nullable=False),
    sa.Column("checked_by", sa.String(200), nullable=False),
    sa.Column("review_every_days", sa.Integer),
    sa.Column("updated_at", Timestamp, nullable=False),
)

review_notes = sa.Table(
    "review_notes",
    metadata,
    sa.Column("review_id", sa.String(64), primary_key=True),
    sa.Column("usage_period", sa.String(20), nullable=False),
    sa.Column("team_owner", sa.String(200)),
    sa.Column("review_result", sa.String(20)),  # NULL until checked
    sa.Column("follow_up_owner", sa.String(100)),
    sa.Column("note", sa.Text, nullable=False),  # ReviewNote JSON
    sa.Column("reasons", sa.Text),  # JSON list of the last check's reasons
    sa.Column("checked_at", Timestamp),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Index("ix_review_notes_period", "usage_period"),
)

follow_ups = sa.Table(
    "follow_ups",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("origin", sa.String(20), nullable=False),  # review | reconciliation | smoke
    sa.Column("origin_id", sa.String(200), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("routed_to", sa.String(100), nullable=False),
    sa.Column("opened_at", Timestamp, nullable=False),
    sa.Column("resolved_at", Timestamp),
    sa.Column("resolved_by", sa.String(200)),
    sa.Column("resolution", sa.Text),
    sa.Index("ix_follow_ups_origin", "origin", "origin_id"),
)

smoke_runs = sa.Table(
    "smoke_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("reviewed_at", Timestamp, nullable=False),
    sa.Column("operator", sa.String(200), nullable=False),
    sa.Column("source_urls_checked", sa.Text, nullable=False),  # JSON list
    sa.Column("workload_tag", sa.String(200), nullable=False),
    sa.Column("owner_tag", sa.String(200), nullable=False),
    sa.Column("environment", sa.String(200), nullable=False),
    sa.Column("happy_path_result", sa.String(20), nullable=False),
    sa.Column("error_path_result", sa.String(20), nullable=False),
    sa.Column("evidence_captured", sa.Boolean, nullable=False),
    sa.Column("decision", sa.String(20), nullable=False),  # proceed | review | stop
    sa.Column("follow_up_owner", sa.String(100)),
    sa.Column("upstream_url", sa.String(2000), nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON: what each path saw
)

handoffs = sa.Table(
    "handoffs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("document", sa.Text, nullable=False),  # JSON
    sa.Column("findings", sa.Text, nullable=False),  # JSON list of lint findings
)

# Provider bills (spendtrail.reconcile.store, docs/reconcile.md). One row per imported file;
# the same bytes (sha256) are imported once, unless that bill is voided. Lines keep the
# normalized BillLine: money in integer pico-units beside its currency, meters as columns
# (NULL for cost-only reports), the original row as JSON. `day` is period_start's UTC day,
# the key periods are selected on.
BillId = sa.BigInteger().with_variant(sa.Integer, "sqlite")

bill_imports = sa.Table(
    "bill_imports",
    metadata,
    sa.Column("id", BillId, primary_key=True),
    sa.Column("format", sa.String(40), nullable=False),
    sa.Column("file_name", sa.String(2000), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(200)),  # None when the lines name several providers
    sa.Column("imported_at", Timestamp, nullable=False),
    sa.Column("imported_by", sa.String(200), nullable=False),
    sa.Column("line_count", sa.Integer, nullable=False),
    sa.Column("error_count", sa.Integer, nullable=False),
    sa.Column("first_day", sa.Date),
    sa.Column("last_day", sa.Date),
    # A voided bill stays, as evidence, but no longer holds its file's sha256.
    sa.Column("voided_at", Timestamp),
    sa.Column("voided_by", sa.String(200)),
    sa.Column("void_reason", sa.Text),
    sa.Index("uq_bill_imports_sha256_live", "sha256", unique=True,
             sqlite_where=sa.text("voided_at IS NULL"),
             postgresql_where=sa.text("voided_at IS NULL")),
)

bill_import_errors = sa.Table(
    "bill_import_errors",
    metadata,
    sa.Column("id", BillId, primary_key=True),
    sa.Column("import_id", BillId, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("item", sa.String(200), nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("fatal", sa.Boolean, nullable=False),
    sa.Index("ix_bill_import_errors_import", "import_id"),
)

BILL_METERS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "requests",
    "images",
)

bill_lines = sa.Table(
    "bill_lines",
    metadata,
    sa.Column("id", BillId, primary_key=True),
    sa.Column("import_id", BillId, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("item", sa.String(200), nullable=False, server_default=""),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("granularity", sa.String(10), nullable=False),
    sa.Column("period_start", Timestamp, nullable=False),
    sa.Column("period_end", Timestamp, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("charge_kind", sa.String(20), nullable=False),
    sa.Column("currency", sa.String(3)),
    sa.Column("amount_pico", sa.BigInteger),
    sa.Column("effective_amount_pico", sa.BigInteger),
    *(sa.Column(name, sa.BigInteger) for name in BILL_METERS),
    sa.Column("usage_seconds", sa.String(50)),  # a Decimal, as text
    sa.Column("provider_request_id", sa.String(200)),
    sa.Column("response_id", sa.String(200)),
    sa.Column("key_name", sa.String(200)),
    sa.Column("project", sa.String(200)),
    sa.Column("model", sa.String(200)),
    sa.Column("description", sa.Text),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Index("ix_bill_lines_import_request", "import_id", "provider_request_id"),
    sa.Index("ix_bill_lines_import_day", "import_id", "day"),
)

# Reconciliation records: written once, never updated; a new run is a new record. Amounts are
# pico-units of `currency` (the bill's). `summary` is the JSON of the per-owner breakdown and
# the counts shown in the rendered record.
reconciliations = sa.Table(
    "reconciliations",
    metadata,
    sa.Column("id", BillId, primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("period_label", sa.String(40), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("bill_import_id", BillId, nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("method", sa.String(20), nullable=False),  # request | aggregate
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("tolerance", sa.String(40), nullable=False),  # a fraction, e.g. "0.01"
    sa.Column("logged_pico", sa.BigInteger, nullable=False),
    sa.Column("billed_pico", sa.BigInteger, nullable=False),
    sa.Column("variance_pico", sa.BigInteger, nullable=False),
    sa.Column("within_tolerance", sa.Boolean, nullable=False),
    sa.Column("result", sa.String(20), nullable=False),  # pass | fail | inconclusive
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
)

reconciliation_differences = sa.Table(
    "reconciliation_differences",
    metadata,
    sa.Column("id", BillId, primary_key=True),
    sa.Column("reconciliation_id", BillId, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("day", sa.Date),
    sa.Column("provider_request_id", sa.String(200)),
    sa.Column("event_id", sa.String(64)),
    sa.Column("bill_line", sa.Integer),  # the line in the bill file
    sa.Column("model", sa.String(200)),
    sa.Column("key_name", sa.String(200)),
    sa.Column("owner", sa.String(200)),
    sa.Column("logged_pico", sa.BigInteger),
    sa.Column("billed_pico", sa.BigInteger),
    sa.Column("logged_tokens", sa.String(100)),  # "input/output"
    sa.Column("billed_tokens", sa.String(100)),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_reconciliation_differences_rec", "reconciliation_id"),
)

# Allocation (spendtrail.allocation, docs/allocation.md). An exception-queue assignment never
# edits its event: it adds one reallocation row per event moving the event's current cost
# (pico-units of `currency`, NULL when unpriced) from its quarantined capture to a registry
# owner. `day` is the event's day, so coverage reads a period without joining events. One
# reallocation per event; a resolution closes a (reasons, captured application) group for the
# events ingested before it.
reallocations = sa.Table(
    "reallocations",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("group_id", sa.String(40), nullable=False),
    sa.Column("from_status", sa.String(20), nullable=False),
    sa.Column("from_application", sa.String(200)),
    sa.Column("from_reasons", sa.String(500), nullable=False),
    sa.Column("to_application", sa.String(200), nullable=False),
    sa.Column("to_business_unit", sa.String(200), nullable=False),
    sa.Column("to_cost_center", sa.String(200), nullable=False),
    sa.Column("to_budget_owner", sa.String(200), nullable=False),
    sa.Column("registry_version", sa.Integer, nullable=False),
    sa.Column("currency", sa.String(3)),
    sa.Column("amount_pico", sa.BigInteger),
    sa.Column("cost_revision", sa.Integer),
    sa.Column("assigned_by", sa.String(200), nullable=False),
    sa.Column("assigned_at", Timestamp, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.UniqueConstraint("event_id", name="uq_reallocations_event"),
    sa.Index("ix_reallocations_day", "day"),
)

exception_resolutions = sa.Table(
    "exception_resolutions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("group_id", sa.String(40), nullable=False),
    sa.Column("reasons", sa.String(500), nullable=False),
    sa.Column("application", sa.String(200)),
    sa.Column("resolved_at", Timestamp, nullable=False),
    sa.Column("resolved_by", sa.String(200), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Index("ix_exception_resolutions_group", "group_id"),
)

# Shared-cost rule versions (spendtrail.allocation.rule_store): each reviewed rules file that
# was loaded, as normalized JSON; reloading identical rules adds no version. The audit log
# records who loaded each version, why, and which rules it added, removed or changed.
shared_cost_rule_versions = sa.Table(
    "shared_cost_rule_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("loaded_at", Timestamp, nullable=False),
    sa.Column("loaded_by", sa.String(200), nullable=False),
    sa.Column("source_path", sa.String(2000), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("document", sa.Text, nullable=False),  # the normalized rules as JSON
)

# Which price entries priced a day's usage of a (provider, model), written at ingest and at
# repricing: statements list their price sources from it without reading every event. It only
# grows, so after a repricing it may still name an entry no current cost entry uses.
prices_used_daily = sa.Table(
    "prices_used_daily",
    metadata,
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("price_entry_id", sa.String(200), nullable=False),
    sa.PrimaryKeyConstraint("day", "provider", "model", "price_entry_id",
                            name="pk_prices_used_daily"),
)

# Intents of attempts whose completion ingest has not seen yet (docs/gateway.md, "Intent
# records"): held here until the completion arrives, or the writer is known to have stopped
# and the intent becomes an `interrupted` event. `intent` is the event JSON.
pending_intents = sa.Table(
    "pending_intents",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    # from the spool file's name; NULL if it has none. Informative only: the orphan rule goes
    # by the writer's lock (journal/spool.py), as process ids repeat across containers.
    sa.Column("writer_pid", sa.Integer),
    sa.Column("source", sa.String(2000), nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("intent", sa.Text, nullable=False),
    sa.Column("held_at", Timestamp, nullable=False),
)

# How far `spendtrail bills fetch` has read each provider account's API (docs/bills.md,
# "Fetching bills"): every closed UTC day up to `fetched_through` is stored as bills, so the
# next fetch starts the day after. `account` is the API's base URL, never a key.
bill_fetch_cursors = sa.Table(
    "bill_fetch_cursors",
    metadata,
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("account", sa.String(2000), nullable=False),
    sa.Column("fetched_through", sa.Date, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
    sa.PrimaryKeyConstraint("source", "account", name="pk_bill_fetch_cursors"),
)

# Alerts (spendtrail.alerts, docs/alerts.md): one row per condition and period, written once;
# the unique dedup key is what keeps a second `alerts check` from alerting again. The owner
# columns hold the owner the alert is about as the registry knows it (all NULL: company-wide),
# so one owner's alerts are a WHERE away. `details` is JSON of the figures shown.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("dedup_key", sa.String(300), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("period_label", sa.String(40)),
    sa.Column("application", sa.String(200)),
    sa.Column("cost_center", sa.String(200)),
    sa.Column("business_unit", sa.String(200)),
    sa.Column("budget_owner", sa.String(200)),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.UniqueConstraint("dedup_key", name="uq_alerts_dedup_key"),
    sa.Index("ix_alerts_created_at", "created_at"),
)

# Every attempt to deliver an alert to a channel: `status` delivered, retrying (another attempt
# follows) or failed (given up); `response` the HTTP status or SMTP reply, or the error;
# `target` the channel's address with its tokens masked. No secret is ever written here.
alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("alert_id", sa.BigInteger, nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("response", sa.String(500), nullable=False),
    sa.Index("ix_alert_deliveries_alert_channel", "alert_id", "channel"),
)

# A month's allocation, computed once and stored (spendtrail.allocation.entries,
# docs/allocation.md "Allocation entries"): one row per owner charge (direct, reassigned,
# shared split, true-up, adjustment of a closed month) and per amount charged to no owner
# (quarantined, unallocated pool), so the rows of a month add up to its ledger total plus
# its adjustments. A shared split names its rule, rules version, origin charge, pool and
# exact ratio; a true-up its reconciliation; an adjustment the closed month (and entry) it
# adjusts. Rows of a closed month are never rewritten.
EntryId = sa.BigInteger().with_variant(sa.Integer, "sqlite")

allocation_entries = sa.Table(
    "allocation_entries",
    metadata,
    sa.Column("id", EntryId, primary_key=True),
    sa.Column("period", sa.String(7), nullable=False),  # YYYY-MM
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("application", sa.String(200), nullable=False),
    sa.Column("business_unit", sa.String(200), nullable=False, server_default=""),
    sa.Column("cost_center", sa.String(200), nullable=False, server_default=""),
    sa.Column("budget_owner", sa.String(200), nullable=False, server_default=""),
    sa.Column("currency", sa.String(3), nullable=False),  # '' for unpriced usage
    sa.Column("amount_pico", sa.BigInteger, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("unpriced_events", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("pool", sa.String(200), nullable=False, server_default=""),
    sa.Column("rule_id", sa.String(200), nullable=False, server_default=""),
    sa.Column("rules_version", sa.Integer),
    sa.Column("method", sa.String(20), nullable=False, server_default=""),
    sa.Column("origin", sa.String(400), nullable=False, server_default=""),
    sa.Column("ratio", sa.String(100), nullable=False, server_default=""),  # exact fraction
    sa.Column("day_from", sa.Date),
    sa.Column("day_to", sa.Date),  # exclusive
    sa.Column("reconciliation_id", BillId),
    sa.Column("adjusts_period", sa.String(7), nullable=False, server_default=""),
    sa.Column("adjusts_kind", sa.String(20), nullable=False, server_default=""),
    sa.Column("adjusts_entry_id", EntryId),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_allocation_entries_period", "period"),
    sa.Index("ix_allocation_entries_adjusts", "adjusts_period"),
)

# One row per month whose allocation was stored: when and from what (``basis``: the JSON
# fingerprint of the books the entries were computed from, so a reader knows whether they
# are still current), and whether it is closed (``spendtrail close``; reopening clears it,
# and both are in the audit log).
allocation_periods = sa.Table(
    "allocation_periods",
    metadata,
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("computed_at", Timestamp, nullable=False),
    sa.Column("computed_by", sa.String(200), nullable=False),
    sa.Column("true_up_rule", sa.String(20), nullable=False),
    sa.Column("rules_version", sa.Integer),
    sa.Column("basis", sa.Text, nullable=False),
    sa.Column("closed_at", Timestamp),
    sa.Column("closed_by", sa.String(200)),
    sa.Column("accepted", sa.Text),  # JSON {blocker code: reason} accepted at the close
)

# The statements of a closed month as they were produced at the close: the bytes and their
# sha256, per scope ("company", "application:ID", ...) and format, so the same statement is
# returned later byte for byte.
statement_snapshots = sa.Table(
    "statement_snapshots",
    metadata,
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("scope", sa.String(400), nullable=False),
    sa.Column("format", sa.String(10), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("period", "scope", "format", name="pk_statement_snapshots"),
)

# Months whose raw rows (events, cost entries) `spendtrail ledger retention` dropped
# (docs/ledger.md, "Retention"): the daily rollups of the month stay, and were checked
# against the raw rows just before the drop; `totals` is their JSON (events, pico-units per
# currency). Ingest rejects an event of a retired month rather than count it again.
retired_months = sa.Table(
    "retired_months",
    metadata,
    sa.Column("month", sa.Date, primary_key=True),  # the month's first day
    sa.Column("retired_at", Timestamp, nullable=False),
    sa.Column("retired_by", sa.String(200), nullable=False),
    sa.Column("keep", sa.String(20), nullable=False),  # the window it fell out of, e.g. 13m
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("totals", sa.Text, nullable=False),
)

# Console users (docs/console.md). A password is kept only as its argon2 hash; `scope` is the
# JSON list of owners an `owner` or scoped `viewer` sees (["*"]: everyone's).
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("password_hash", sa.String(200)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("disabled_at", Timestamp),
    sa.UniqueConstraint("name", name="uq_users_name"),
)

# API tokens for scripts and console sessions: only a SHA-256 of the secret is kept.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("token_prefix", sa.String(20), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", Timestamp),
    sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf_token", sa.String(100), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index("ix_console_sessions_user", "user_id"),
)
