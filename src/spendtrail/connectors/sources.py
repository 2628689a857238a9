"""The bill APIs by source: where each report lives, how it is authenticated and paged, and
which bill format its pages are read as. Each report yields its entries (a bucket, a log row)
with the UTC day each belongs to, over a range of whole days.

Shapes followed (docs/bills.md, "Fetching bills"):
- OpenAI ``GET /v1/organization/costs`` and ``/v1/organization/usage/completions``:
  ``start_time``/``end_time`` Unix seconds, ``bucket_width=1d``, ``limit``, ``page`` set from
  the previous answer's ``next_page`` while ``has_more``; ``Authorization: Bearer`` admin key.
- Anthropic ``GET /v1/organizations/cost_report`` and ``/v1/organizations/usage_report/messages``:
  ``starting_at``/``ending_at`` RFC 3339, ``bucket_width=1d``, ``limit``, ``page`` from
  ``next_page`` while ``has_more``; ``x-api-key`` admin key and ``anthropic-version``.
- CometAPI (new-api) ``GET /api/log/self``: ``p`` (from 1), ``page_size``, ``start_timestamp``
  and ``end_timestamp`` (Unix seconds, both inclusive); rows newest first under
  ``data.items`` with ``data.total``; ``Authorization: Bearer`` access token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from spendtrail.bills.anthropic_usage import anthropic_period
from spendtrail.bills.openai_costs import openai_period
from spendtrail.bills.values import RowProblem
from spendtrail.connectors.http import CallCounts, FetchError, Retrying, get_json

# (entry, its UTC day, or None when its time cannot be read: the reader then reports it)
Entries = Iterator[tuple[dict[str, Any], date | None]]


@dataclass(frozen=True, slots=True)
class Fetch:
    """What one report's paging needs besides the report: the account, the key, the days."""

    base_url: str
    key: str
    first: date
    end: date  # exclusive
    page_size: int | None
    retrying: Retrying
    counts: CallCounts

    def get(
        self,
        path: str,
        params: list[tuple[str, str]],
        headers: dict[str, str],
    ) -> dict[str, Any]:
        return get_json(
            self.base_url + path, params, headers, retrying=self.retrying, counts=self.counts
        )


@dataclass(frozen=True, slots=True)
class Report:
    format: str  # the bill format its pages are read as
    entries: Callable[[Fetch], Entries]


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # also the ledger provider its bills are for
    key_env: str  # the environment variable holding the key
    base_url: str
    reports: tuple[Report, ...]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _bucket_pages(
    path: str,
    headers: Callable[[str], dict[str, str]],
    params: list[tuple[str, str]],
    limit: int,
    period: Callable[[dict[str, Any]], tuple[datetime, datetime]],
    fetch: Fetch,
) -> Entries:
    """OpenAI's and Anthropic's paging: ``page`` = the last answer's ``next_page``."""
    query = [*params, ("bucket_width", "1d"), ("limit", str(fetch.page_size or limit))]
    cursor: str | None = None
    while True:
        page = fetch.get(path, query + ([("page", cursor)] if cursor else []), headers(fetch.key))
        buckets = page.get("data")
        if not isinstance(buckets, list):
            raise FetchError(f"{fetch.base_url}{path}: expected a page with a 'data' list")
        for bucket in buckets:
            if isinstance(bucket, dict) and bucket.get("results") == []:
                continue  # a day without usage: nothing to store (a bill with no line is refused)
            try:
                day = period(bucket)[0].astimezone(UTC).date() if isinstance(bucket, dict) else None
            except RowProblem:
                day = None
            yield bucket, day
        cursor = page.get("next_page")
        if not page.get("has_more"):
            return
        if not cursor:
            raise FetchError(f"{fetch.base_url}{path}: has_more is true but next_page is empty")


def _openai_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _openai(path: str, group_by: tuple[str, ...], limit: int) -> Callable[[Fetch], Entries]:
    def entries(fetch: Fetch) -> Entries:
        params = [
            ("start_time", str(int(_midnight(fetch.first).timestamp()))),
            ("end_time", str(int(_midnight(fetch.end).timestamp()))),
            *(("group_by", name) for name in group_by),
        ]
        return _bucket_pages(path, _openai_headers, params, limit, openai_period, fetch)

    return entries


def _anthropic_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def _anthropic(path: str, group_by: tuple[str, ...]) -> Callable[[Fetch], Entries]:
    def entries(fetch: Fetch) -> Entries:
        params = [
            ("starting_at", _midnight(fetch.first).isoformat().replace("+00:00", "Z")),
            ("ending_at", _midnight(fetch.end).isoformat().replace("+00:00", "Z")),
            *(("group_by[]", name) for name in group_by),
        ]
        return _bucket_pages(path, _anthropic_headers, params, 31, anthropic_period, fetch)

    return entries


def _cometapi_log(fetch: Fetch) -> Entries:
    """new-api's offset paging. Rows of closed days do not move, so the offsets are stable;
    a row seen twice (by id) is still given once."""
    path = "/api/log/self"
    size = fetch.page_size or 100
    bounds = [
        ("start_timestamp", str(int(_midnight(fetch.first).timestamp()))),
        ("end_timestamp", str(int(_midnight(fetch.end).timestamp()) - 1)),
    ]
    seen: set[Any] = set()
    number, read = 1, 0
    while True:
        page = fetch.get(
            path,
            [("p", str(number)), ("page_size", str(size)), *bounds],
            {"Authorization": f"Bearer {fetch.key}"},
        )
        data = page.get("data")
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise FetchError(f"{fetch.base_url}{path}: expected rows under data.items")
        for row in items:
            row_id = row.get("id") if isinstance(row, dict) else None
            if row_id is not None and row_id in seen:
                continue
            seen.add(row_id)
            created = row.get("created_at") if isinstance(row, dict) else None
            day = (
                datetime.fromtimestamp(created, UTC).date()
                if isinstance(created, int) and not isinstance(created, bool)
                else None
            )
            yield row, day
        read += len(items)
        total = data.get("total")
        if not items or (isinstance(total, int) and read >= total):
            return
        number += 1


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "cometapi",
            "COMETAPI_ACCESS_TOKEN",
            "https://api.cometapi.com",
            (Report("cometapi-json", _cometapi_log),),
        ),
        Source(
            "openai",
            "OPENAI_ADMIN_KEY",
            "https://api.openai.com",
            (
                Report(
                    "openai-costs",
                    _openai("/v1/organization/costs", ("project_id", "line_item"), 180),
                ),
                Report(
                    "openai-usage",
                    _openai(
                        "/v1/organization/usage/completions",
                        ("project_id", "api_key_id", "model"),
                        31,
                    ),
                ),
            ),
        ),
        Source(
            "anthropic",
            "ANTHROPIC_ADMIN_API_KEY",
            "https://api.anthropic.com",
            (
                Report(
                    "anthropic-cost",
                    _anthropic("/v1/organizations/cost_report", ("workspace_id", "description")),
                ),
                Report(
                    "anthropic-usage",
                    _anthropic(
                        "/v1/organizations/usage_report/messages",
                        ("api_key_id", "workspace_id", "model"),
                    ),
                ),
            ),
        ),
    )
}


def days(first: date, end: date) -> Iterator[date]:
    day = first
    while day < end:
        yield day
        day += timedelta(days=1)
