"""The hook captures what the gateway captures beyond plain tokens (same parsers): cache
writes split by lifetime and the service tier, from complete and streamed responses."""

from __future__ import annotations

import openai
import pytest
from gateway_upstream import UpstreamDouble

import spendtrail
from spendtrail.events import Usage, decode_event
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
    lines = [
        line
        for path in sorted((tmp_path / "spool").glob("*.jsonl*"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]
    events = [decode_event(line) for line in lines]
    assert [e.service_tier for e in events] == ["flex", "priority", None]
    expected = Usage(
        input_tokens=3000,
        cached_input_tokens=1000,
        cache_write_tokens=1500,
        cache_write_1h_tokens=400,
        output_tokens=40,
        requests=1,
    )
    assert [e.usage for e in events] == [expected] * 3
