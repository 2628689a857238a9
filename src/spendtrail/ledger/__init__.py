"""The SQL ledger (docs/architecture.md): storage. Schema and migrations, ingest, costs and
repricing, the audit log. Persistence of lower layers' values belongs here; the pure packages
(``pricing``, ``registry``, ``bills``) never import it.

- ``schema.py``: the tables; ``migrations/`` creates them (checked to match).
- ``db.py``: opening the ledger per backend, forward-only migrations, binary COPY into PostgreSQL.
- ``url.py``: a ledger URL with its password hidden, for messages.
- ``ingest.py``: journal lines to validated, priced rows, idempotent on event id.
- ``intents.py``: the orphan rule: an intent never completed becomes an ``interrupted`` event.
- ``follow.py``: keep ingesting the journal, waiting out database outages.
- ``costs.py``: one event's cost entry and its share of the daily rollups.
- ``reprice.py``: a period recomputed as new cost revisions, never edits.
- ``audit.py``: the append-only audit log, written in the caller's transaction.
- ``prices.py``: price entries stored, read into a catalog; models seen without a price.
- ``genai_prices.py``: list prices from the genai-prices package, stored.
- ``versions.py``: one store for whole reviewed documents kept as numbered versions.
- ``registry_versions.py``: the owner registry's versions, over that store.
- ``stats.py``: what the ledger holds, counted.
- ``fetch_cursors.py``: how far each provider account's bill API has been read.
- ``allocation_entries.py``: a month's allocation entries, its record (stored, closed) and its
  statement snapshots; a closed month's entries are never rewritten.
- ``partitions.py``: monthly partitions of events and cost entries (PostgreSQL), made ahead.
- ``retention.py``: raw rows of closed months past the keep window dropped; rollups stay.
- ``users.py``: console users, their API tokens and sessions (secrets kept hashed).
- ``scoping.py``: a user's ``AccessScope`` as a SQL condition on a table's owner columns.
- ``event_list.py``: events of a period with their current cost, filtered, for drill-down.
"""
