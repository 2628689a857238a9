"""LiteLLM spend logs as usage events (docs/integrations.md#litellm).

Rows of LiteLLM's ``LiteLLM_SpendLogs`` table (column names as in LiteLLM's
``schema.prisma``), read from its PostgreSQL database or from a CSV export of the table, become
events with ``source = "litellm"``. Each event id is derived from the row's ``request_id``
(the table's primary key) and start time, so importing the same rows again adds nothing.
Owners come from the mapping file (``owners.py``); the LiteLLM names are kept as context tags
so an unmapped key or team is visible in the exception queue. The prompt and response
columns (``messages``, ``response``, ``proxy_server_request``) are never read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spendtrail.bills.csvrows import csv_records
from spendtrail.errors import Problem, SpendtrailError
from spendtrail.events import AllocationContext, EventError, UsageEvent, derived_event_id
from spendtrail.events.model import outcome_for_status
from spendtrail.events.usage import usage_from_openai
from spendtrail.integrations.owners import OwnerMap
from spendtrail.journal.spool import Spool
from spendtrail.ledger.ingest import Ingester, IngestReport

if TYPE_CHECKING:
    import sqlalchemy as sa

TABLE = "LiteLLM_SpendLogs"
# The columns read; older LiteLLM versions lack some of the optional ones.
REQUIRED_COLUMNS = (
    "request_id",
    "call_type",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "model",
)
OPTIONAL_COLUMNS = (
    "api_key",
    "spend",
    "endTime",
    "model_group",
    "custom_llm_provider",
    "metadata",
    "request_tags",
    "team_id",
    "user",
    "end_user",
    "status",
)
# LiteLLM call types -> the OpenAI-style endpoint an event records.
ENDPOINTS = {
    "completion": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "embedding": "/v1/embeddings",
    "image_generation": "/v1/images/generations",
    "responses": "/v1/responses",
    "anthropic_messages": "/v1/messages",
    "transcription": "/v1/audio/transcriptions",
    "speech": "/v1/audio/speech",
    "moderation": "/v1/moderations",
    "rerank": "/v1/rerank",
}


class RowError(SpendtrailError):
    """One spend-log row that cannot become an event."""


@dataclass(frozen=True, slots=True)
class SpendRow:
    where: Problem  # where the row came from (line 0 for a database row), message unused
    cells: dict[str, Any]


@dataclass
class ImportReport:
    read: int = 0
    journaled: int = 0
    mapped: int = 0  # rows whose key, team or a tag was in the mapping file
    bad: list[Problem] = field(default_factory=list)


def event_from_row(cells: dict[str, Any], owners: OwnerMap) -> UsageEvent:
    """One row as an event; raises RowError naming the column."""
    request_id = _text(cells.get("request_id"))
    if not request_id:
        raise RowError("request_id: empty")
    started = _time(cells.get("startTime"), "startTime")
    ended = _time(cells.get("endTime"), "endTime") if _text(cells.get("endTime")) else None
    metadata = _json(cells.get("metadata"), "metadata", dict)
    tags = [str(tag) for tag in _json(cells.get("request_tags"), "request_tags", list)]
    provider = _text(cells.get("custom_llm_provider")) or owners.provider
    if not provider:
        raise RowError("custom_llm_provider: empty, and the mapping file names no 'provider'")
    model = _text(cells.get("model"))
    if model.startswith(provider + "/"):
        model = model[len(provider) + 1 :]
    status, outcome = _outcome(cells.get("status"), metadata)
    call_type = _text(cells.get("call_type"))
    if call_type not in ENDPOINTS:
        call_type = call_type.removeprefix("a")  # the async variant: acompletion, aembedding
    try:
        return UsageEvent(
            event_id=derived_event_id(started, f"litellm:{request_id}"),
            request_id=request_id[:200],
            started_at=started,
            ended_at=ended,
            provider=provider,
            endpoint=ENDPOINTS.get(call_type, f"litellm:{call_type or 'unknown'}")[:200],
            model_requested=_text(cells.get("model_group")) or model or None,
            model_served=model or None,
            http_status=status,
            outcome=outcome,
            context=_context(cells, metadata, tags, owners),
            usage=_usage(cells, metadata),
            raw_usage={"litellm_spend": str(cells["spend"])} if _text(cells.get("spend")) else None,
            source="litellm",
        )
    except EventError as exc:
        raise RowError(str(exc)) from None


def _context(
    cells: dict[str, Any], metadata: dict, tags: list[str], owners: OwnerMap
) -> AllocationContext:
    fields = dict(owners.defaults)
    names = _names(cells, metadata, tags)
    for section, items in names:
        for name in items:
            fields.update(owners.owner(section, name) or {})
    (team, team_alias), (key_hash, key_alias) = names[1][1], names[2][1]
    seen = {
        "litellm.key": key_alias or key_hash[:12],
        "litellm.team": team_alias or team,
        "litellm.user": _text(cells.get("user")),
        "litellm.end_user": _text(cells.get("end_user")),
        "litellm.tags": ",".join(tags),
    }
    return AllocationContext(**fields, tags={k: v[:200] for k, v in seen.items() if v})


def _names(cells: dict[str, Any], metadata: dict, tags: list[str]) -> list[tuple[str, list]]:
    """The row's names per mapping section, least specific first, so a key's mapping wins
    over its team's and a team's over a tag's."""
    return [
        ("tags", tags),
        (
            "teams",
            [
                _text(cells.get("team_id")) or _text(metadata.get("user_api_key_team_id")),
                _text(metadata.get("user_api_key_team_alias")),
            ],
        ),
        ("keys", [_text(cells.get("api_key")), _text(metadata.get("user_api_key_alias"))]),
    ]


def is_mapped(cells: dict[str, Any], owners: OwnerMap) -> bool:
    """Whether the mapping file names the row's key, team or one of its tags."""
    metadata = _json(cells.get("metadata"), "metadata", dict)
    tags = [str(tag) for tag in _json(cells.get("request_tags"), "request_tags", list)]
    return any(
        owners.owner(section, name)
        for section, items in _names(cells, metadata, tags)
        for name in items
    )


def _usage(cells: dict[str, Any], metadata: dict):
    """LiteLLM's token columns, with the cache details of its stored usage object."""
    detail = metadata.get("usage_object")
    raw: dict[str, Any] = dict(detail) if isinstance(detail, dict) else {}
    raw["prompt_tokens"] = _count(cells.get("prompt_tokens"), "prompt_tokens")
    raw["completion_tokens"] = _count(cells.get("completion_tokens"), "completion_tokens")
    prompt_details = raw.get("prompt_tokens_details")
    prompt_details = dict(prompt_details) if isinstance(prompt_details, dict) else {}
    if not prompt_details.get("cached_tokens") and raw.get("cache_read_input_tokens"):
        prompt_details["cached_tokens"] = raw["cache_read_input_tokens"]
    if not prompt_details.get("cache_write_tokens") and raw.get("cache_creation_input_tokens"):
        prompt_details["cache_write_tokens"] = raw["cache_creation_input_tokens"]
    raw["prompt_tokens_details"] = prompt_details
    return usage_from_openai(raw)


def _outcome(status: Any, metadata: dict) -> tuple[int | None, str]:
    if _text(status).lower() not in ("failure", "error", "failed"):
        return None, "success"
    error = metadata.get("error_information")
    code = _text(error.get("error_code")) if isinstance(error, dict) else ""
    if code.isdigit() and 100 <= int(code) <= 599:
        return int(code), outcome_for_status(int(code))
    return None, "upstream_error"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _count(value: Any, column: str) -> int:
    text = _text(value)
    if not text:
        return 0
    try:
        number = int(text)
    except ValueError:
        raise RowError(f"{column}: expected a whole number, got {text!r}") from None
    if number < 0:
        raise RowError(f"{column}: expected a non-negative number, got {number}")
    return number


def _time(value: Any, column: str) -> datetime:
    """LiteLLM stores UTC timestamps without an offset; an export may add one."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(_text(value))
        except ValueError:
            raise RowError(f"{column}: expected a timestamp, got {_text(value)!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json(value: Any, column: str, kind: type) -> Any:
    if value is None or value == "":
        return kind()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError(f"{column}: not valid JSON") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise RowError(f"{column}: expected a JSON {'object' if kind is dict else 'list'}")
    return value


# -- sources ------------------------------------------------------------------------------


def csv_rows(path: Path) -> Iterator[SpendRow]:
    """Rows of a CSV export of the table (its column names as the header row)."""

    def check(header: list[str]) -> str | None:
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        return f"missing columns: {', '.join(missing)}" if missing else None

    for record in csv_records(path, check):
        if hasattr(record, "cells"):
            yield SpendRow(Problem(str(path), record.line, ""), record.cells)
        else:
            problem = Problem(record.source, record.line, record.reason)
            if record.fatal:
                raise SpendtrailError(str(problem))
            yield SpendRow(problem, {})


def postgres_rows(url: str, batch: int = 5000) -> Iterator[SpendRow]:
    """Rows of the table in LiteLLM's database, oldest first, streamed by a server cursor."""
    import psycopg
    from psycopg.rows import dict_row

    try:
        connection = psycopg.connect(url, autocommit=False)
    except psycopg.Error as exc:
        raise SpendtrailError(
            f"cannot connect to LiteLLM's database: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    with connection:
        present = {
            row[0]
            for row in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (TABLE,)
            )
        }
        if not present:
            raise SpendtrailError(f'LiteLLM\'s database has no "{TABLE}" table')
        missing = [name for name in REQUIRED_COLUMNS if name not in present]
        if missing:
            raise SpendtrailError(f'"{TABLE}" lacks the columns {", ".join(missing)}')
        columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in present]
        select = ", ".join(f'"{c}"' for c in columns)
        with connection.cursor(name="spendtrail_litellm", row_factory=dict_row) as cursor:
            cursor.itersize = batch
            cursor.execute(f'SELECT {select} FROM "{TABLE}" ORDER BY "startTime", request_id')
            for cells in cursor:
                yield SpendRow(Problem(f"{TABLE} request_id {cells['request_id']}", 0, ""), cells)


def journal_rows(rows: Iterable[SpendRow], owners: OwnerMap, spool: Spool) -> ImportReport:
    """Append each row's event to the spool; a bad row is reported, the others go on."""
    report = ImportReport()
    for row in rows:
        report.read += 1
        if row.where.message:  # the reader could not read the row
            report.bad.append(row.where)
            continue
        try:
            event = event_from_row(row.cells, owners)
            report.mapped += is_mapped(row.cells, owners)
        except RowError as exc:
            report.bad.append(row.where._replace(message=str(exc)))
            continue
        spool.append(event)
        report.journaled += 1
    return report


def import_spend_logs(
    rows: Iterable[SpendRow], owners: OwnerMap, spool_dir: Path, engine: sa.Engine
) -> tuple[ImportReport, IngestReport]:
    """Journal the rows' events to the spool, then ingest the spool as ``spendtrail ingest``
    does: a replay journals the same event ids, which ingest skips."""
    with Spool(spool_dir, max_age=float("inf")) as spool:
        report = journal_rows(rows, owners, spool)
    return report, Ingester(engine).ingest_spool(spool_dir)
