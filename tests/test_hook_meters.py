"""The hook captures what the gateway captures beyond plain tokens (same parsers): cache
writes split by lifetime and the service tier, from complete and streamed responses."""

from __future__ import annotations

import openai
import pytest
from factories import CLAUDE_METERS, journaled_events
from gateway_upstream import UpstreamDouble

import spendtrail
from spendtrail.journal.spool import Spool

KEY = "sk-hook-meters-0123456789abcdefWXYZ"
CLAUDE = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def upstream():
    double = UpstreamDouble(KEY)
    url = double.start()
    yield url
    double.stop()


def test_the_hook_records_cache_write_lifetimes_and_the_tier(upstream, tmp_path):
    with Spool(tmp_path / "spool") as spool:
        client = spendtrail.instrument(
            openai.OpenAI(base_url=upstream, api_key=KEY, max_retries=0),
            application="search-summaries",
            provider="cometapi",
            spool=spool,
        )
        client.chat.completions.create(**CLAUDE, service_tier="flex")
        list(client.chat.completions.create(**CLAUDE, service_tier="priority", stream=True))
        client.chat.completions.create(**CLAUDE)
    events = journaled_events(tmp_path / "spool")
    assert [e.service_tier for e in events] == ["flex", "priority", None]
    assert [e.usage for e in events] == [CLAUDE_METERS] * 3
