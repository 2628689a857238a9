"""Bringing in what other tools captured (docs/integrations.md): LiteLLM's spend logs and
OpenTelemetry GenAI spans become usage events, journaled to the spool and ingested as usual,
idempotent on replay (event ids derived from the source's own ids).

- ``owners.py``: the owner mapping file: the other tool's names -> allocation fields.
- ``litellm.py``: ``LiteLLM_SpendLogs`` rows (PostgreSQL or CSV) -> events; journal, ingest.
- ``otel.py``: OTLP trace exports (protobuf or JSON) -> events of their GenAI model spans.
- ``otlp_receiver.py``: the OTLP/HTTP ``/v1/traces`` receiver that journals those events.
"""
