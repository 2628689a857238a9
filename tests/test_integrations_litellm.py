"""LiteLLM spend logs imported as events: from a real PostgreSQL table with LiteLLM's column
names (as its schema.prisma declares them) and from a CSV export, owners from a mapping file,
idempotent on replay, on both ledger backends."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from conftest import POSTGRES_URL

from spendtrail.errors import SpendtrailError
from spendtrail.integrations.litellm import csv_rows, import_spend_logs, postgres_rows
from spendtrail.integrations.owners import (
    LITELLM_SECTIONS,
    OwnerMapError,
    load_owner_map,
)
from spendtrail.ledger.schema import cost_entries, events

# LiteLLM_SpendLogs as Prisma creates it in PostgreSQL (String -> TEXT, Float -> DOUBLE
# PRECISION, Int -> INTEGER, DateTime -> TIMESTAMP(3), Json -> JSONB).
SPEND_LOGS_DDL = """
CREATE TABLE "LiteLLM_SpendLogs" (
    "request_id" TEXT NOT NULL PRIMARY KEY,
    "call_type" TEXT NOT NULL,
    "api_key" TEXT NOT NULL DEFAULT '',
    "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    "total_tokens" INTEGER NOT NULL DEFAULT 0,
    "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    "request_duration_ms" INTEGER,
    "completionStartTime" TIMESTAMP(3),
    "model" TEXT NOT NULL DEFAULT '',
    "model_id" TEXT DEFAULT '',
    "model_group" TEXT DEFAULT '',
    "custom_llm_provider" TEXT DEFAULT '',
    "api_base" TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    "metadata" JSONB DEFAULT '{}',
    "cache_hit" TEXT DEFAULT '',
    "cache_key" TEXT DEFAULT '',
    "request_tags" JSONB DEFAULT '[]',
    "team_id" TEXT,
    "organization_id" TEXT,
    "end_user" TEXT,
    "requester_ip_address" TEXT,
    "messages" JSONB DEFAULT '{}',
    "response" JSONB DEFAULT '{}',
    "session_id" TEXT,
    "status" TEXT,
    "mcp_namespaced_tool_name" TEXT,
    "agent_id" TEXT,
    "proxy_server_request" JSONB DEFAULT '{}'
)
"""
KEY_HASH = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
COLUMNS = (
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "endTime",
    "model",
    "model_group",
    "custom_llm_provider",
    "user",
    "metadata",
    "request_tags",
    "team_id",
    "end_user",
    "status",
    "messages",
)
ROWS = [
    # A key mapped by its alias; 200 of the 1000 prompt tokens read from cache.
    (
        "chatcmpl-1",
        "acompletion",
        KEY_HASH,
        0.000435,
        1500,
        1000,
        500,
        "2026-10-05 12:00:00.250",
        "2026-10-05 12:00:01.500",
        "gpt-4o-mini",
        "gpt-4o-mini",
        "cometapi",
        "u-1",
        {
            "user_api_key_alias": "search-batch-key",
            "usage_object": {
                "prompt_tokens": 1000,
                "completion_tokens": 500,
                "prompt_tokens_details": {"cached_tokens": 200},
            },
        },
        [],
        None,
        None,
        "success",
        {"content": "a prompt that must never be read"},
    ),
    # A team mapped by its id, a tag setting the workload class.
    (
        "chatcmpl-2",
        "completion",
        "",
        0.0025,
        300,
        200,
        100,
        "2026-10-05 13:00:00",
        "2026-10-05 13:00:02",
        "gpt-4o",
        "gpt-4o",
        "cometapi",
        "",
        {},
        ["eval-run"],
        "team-legal",
        None,
        "success",
        {},
    ),
    # A team nobody mapped: kept, with what is known, and quarantined.
    (
        "chatcmpl-3",
        "acompletion",
        "",
        0.0001,
        30,
        20,
        10,
        "2026-10-05 14:00:00",
        "2026-10-05 14:00:01",
        "cometapi/gpt-4o-mini",
        "mini",
        "cometapi",
        "",
        {"user_api_key_team_alias": "Mystery Team"},
        [],
        "team-unknown",
        "customer-9",
        "success",
        {},
    ),
    # A failed call: a 429, no usage.
    (
        "chatcmpl-4",
        "acompletion",
        KEY_HASH,
        0,
        0,
        0,
        0,
        "2026-10-05 15:00:00",
        "2026-10-05 15:00:00.100",
        "gpt-4o-mini",
        "gpt-4o-mini",
        "cometapi",
        "",
        {"user_api_key_alias": "search-batch-key", "error_information": {"error_code": "429"}},
        [],
        None,
        None,
        "failure",
        {},
    ),
    # A row that cannot be an event: negative tokens.
    (
        "chatcmpl-5",
        "acompletion",
        "",
        0,
        0,
        -5,
        0,
        "2026-10-05 16:00:00",
        "2026-10-05 16:00:01",
        "gpt-4o-mini",
        "",
        "cometapi",
        "",
        {},
        [],
        None,
        None,
        "success",
        {},
    ),
]
MAPPING = """\
defaults:
  environment: production
keys:
  search-batch-key: {application: search-summaries, workload_class: batch}
teams:
  team-legal: {application: contract-review, workload_class: user_facing}
tags:
  eval-run: {workload_class: eval}
"""


@pytest.fixture(scope="module")
def litellm_db():
    """A throwaway database on the local PostgreSQL holding LiteLLM's spend-log table."""
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    name = f"litellm_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:
        conn.execute(SPEND_LOGS_DDL)
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        for row in ROWS:
            values = [json.dumps(v) if isinstance(v, dict | list) else v for v in row]
            conn.execute(
                f'INSERT INTO "LiteLLM_SpendLogs" ({names}) VALUES ({placeholders})', values
            )
    yield url
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def mapping(tmp_path):
    path = tmp_path / "litellm-owners.yaml"
    path.write_text(MAPPING)
    return load_owner_map(path, LITELLM_SECTIONS)


def ledger_events(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events, cost_entries.c.amount_pico, cost_entries.c.status.label("cost")).join(
                cost_entries, cost_entries.c.event_id == events.c.event_id
            )
        ).mappings()
        return {row["request_id"]: dict(row) for row in rows}


def check_imported(engine) -> None:
    found = ledger_events(engine)
    assert sorted(found) == ["chatcmpl-1", "chatcmpl-2", "chatcmpl-3", "chatcmpl-4"]
    first = found["chatcmpl-1"]
    assert (
        first["allocation_status"],
        first["application"],
        first["workload_class"],
        first["environment"],
    ) == ("allocated", "search-summaries", "batch", "production")
    assert json.loads(first["usage"])["cached_input_tokens"] == 200
    # 800 uncached at 0.15, 200 cached at 0.075, 500 out at 0.60 per million: $0.000435.
    assert first["amount_pico"] == 435_000_000
    assert first["source"] == "litellm" and first["endpoint"] == "/v1/chat/completions"
    assert "a prompt" not in json.dumps({k: str(v) for k, v in first.items()})
    second = found["chatcmpl-2"]
    assert (second["application"], second["workload_class"]) == (
        "contract-review",
        "user_facing",
    )  # team > tag
    third = found["chatcmpl-3"]
    assert third["allocation_status"] == "quarantined"
    assert "missing_owner" in third["allocation_reasons"]
    tags = json.loads(third["context"])["tags"]
    assert tags["litellm.team"] == "Mystery Team" and tags["litellm.end_user"] == "customer-9"
    assert third["model_served"] == "gpt-4o-mini" and third["model_requested"] == "mini"
    fourth = found["chatcmpl-4"]
    assert (fourth["outcome"], fourth["http_status"]) == ("client_error", 429)  # as the gateway


def test_postgres_import_is_idempotent(litellm_db, mapping, seeded, tmp_path):
    spool = tmp_path / "spool"
    report, ingested = import_spend_logs(postgres_rows(litellm_db), mapping, spool, seeded)
    assert (report.read, report.journaled, report.mapped) == (5, 4, 3)
    assert [p.message for p in report.bad] == [
        "prompt_tokens: expected a non-negative number, got -5"
    ]
    assert report.bad[0].source == "LiteLLM_SpendLogs request_id chatcmpl-5"
    assert (ingested.inserted, ingested.quarantined, ingested.duplicates) == (4, 1, 0)
    check_imported(seeded)

    again, replay = import_spend_logs(postgres_rows(litellm_db), mapping, spool, seeded)
    assert again.journaled == 4
    assert (replay.inserted, replay.duplicates) == (0, 4)
    assert len(ledger_events(seeded)) == 4


def write_export(path: Path) -> Path:
    """The table as `\\copy "LiteLLM_SpendLogs" TO 'f.csv' CSV HEADER` writes it."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in ROWS:
            writer.writerow(
                [
                    "" if v is None else json.dumps(v) if isinstance(v, dict | list) else v
                    for v in row
                ]
            )
    return path


def test_csv_import_matches_the_database_and_replays(mapping, seeded, tmp_path):
    path = write_export(tmp_path / "spend.csv")
    report, ingested = import_spend_logs(csv_rows(path), mapping, tmp_path / "spool", seeded)
    assert (report.journaled, ingested.inserted) == (4, 4)
    assert [str(p) for p in report.bad] == [
        f"{path}:6: prompt_tokens: expected a non-negative number, got -5"
    ]
    check_imported(seeded)
    _, replay = import_spend_logs(csv_rows(path), mapping, tmp_path / "spool", seeded)
    assert (replay.inserted, replay.duplicates) == (0, 4)


def test_postgres_and_csv_give_the_same_event_ids(litellm_db, mapping, tmp_path):
    from spendtrail.integrations.litellm import event_from_row

    from_db = {
        r.cells["request_id"]: event_from_row(r.cells, mapping).event_id
        for r in postgres_rows(litellm_db)
        if r.cells["request_id"] != "chatcmpl-5"
    }
    path = write_export(tmp_path / "spend.csv")
    from_csv = {
        r.cells["request_id"]: event_from_row(r.cells, mapping).event_id
        for r in csv_rows(path)
        if r.cells["request_id"] != "chatcmpl-5"
    }
    assert from_db == from_csv and len(from_db) == 4


def test_csv_without_the_required_columns_is_refused(tmp_path):
    path = tmp_path / "spend.csv"
    path.write_text("request_id,model\nr1,gpt-4o\n")
    with pytest.raises(SpendtrailError, match="missing columns: call_type, prompt_tokens"):
        list(csv_rows(path))


def test_mapping_problems_name_their_lines(tmp_path):
    path = tmp_path / "owners.yaml"
    path.write_text("keys:\n  k1: {application: 7}\nteams:\n  t1: {owner: x}\nservices: {}\n")
    with pytest.raises(OwnerMapError) as caught:
        load_owner_map(path, LITELLM_SECTIONS)
    text = str(caught.value)
    assert f"{path}:2: keys.k1.application: expected a string" in text
    assert f"{path}:4: teams.t1: unknown key 'owner'" in text
    assert f"{path}:5: the owner mapping: unknown key 'services'" in text


def test_the_command_imports_and_reports(litellm_db, ledger_url, seeded, tmp_path):
    owners = tmp_path / "owners.yaml"
    owners.write_text(MAPPING)
    env = {
        **os.environ,
        "SPENDTRAIL_DATABASE_URL": ledger_url,
        "SPENDTRAIL_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }
    command = [
        sys.executable,
        "-m",
        "spendtrail.cli.app",
        "import",
        "litellm",
        "--postgres",
        litellm_db,
        "--mapping",
        str(owners),
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1  # one bad row: the caller must know
    assert "journaled 4 (3 with a mapped key, team or tag), bad 1" in first.stdout
    assert "inserted 4" in first.stdout and "quarantined 1" in first.stdout
    assert "request_id chatcmpl-5: prompt_tokens" in first.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "inserted 0, duplicates skipped 4" in second.stdout


def test_row_details_hashed_key_cache_writes_and_bad_cells(tmp_path):
    from spendtrail.integrations.litellm import RowError, event_from_row

    path = tmp_path / "owners.yaml"
    path.write_text(f"keys:\n  {KEY_HASH}: {{application: eval-harness}}\nprovider: anthropic\n")
    owners = load_owner_map(path, LITELLM_SECTIONS)
    row = {
        "request_id": "r-9",
        "call_type": "anthropic_messages",
        "api_key": KEY_HASH,
        "prompt_tokens": "1300",
        "completion_tokens": "40",
        "startTime": "2026-10-05T12:00:00Z",
        "model": "claude-sonnet-4",
        "custom_llm_provider": "",
        "metadata": json.dumps(
            {"usage_object": {"cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}}
        ),
    }
    event = event_from_row(row, owners)
    assert (event.provider, event.endpoint, event.context.application) == (
        "anthropic",
        "/v1/messages",
        "eval-harness",
    )
    assert event.context.tags == {"litellm.key": KEY_HASH[:12]}  # never the whole hash
    assert (
        event.usage.input_tokens,
        event.usage.cached_input_tokens,
        event.usage.cache_write_tokens,
    ) == (1300, 1000, 200)
    with pytest.raises(RowError, match="startTime: expected a timestamp, got 'yesterday'"):
        event_from_row({**row, "startTime": "yesterday"}, owners)
    with pytest.raises(RowError, match="metadata: not valid JSON"):
        event_from_row({**row, "metadata": "{oops"}, owners)
