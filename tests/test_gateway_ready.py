"""`/healthz` (alive) and `/readyz` (ready for calls) on the real `spendtrail gateway` process.

An orchestrator restarts a process whose liveness probe fails and routes calls only to one
whose readiness probe passes: /healthz answers 200 as long as the process serves HTTP;
/readyz answers 503 until keys, registry and prices are loaded and while the journal cannot
take a write.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request

import openai
import pytest
import sqlalchemy as sa
from factories import ROOT, SHEET
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble

from spendtrail.gateway import create_key
from spendtrail.ledger.db import make_engine, migrate
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.registry_versions import save_version
from spendtrail.pricing import load_sheet
from spendtrail.registry import load_registry

UPSTREAM_KEY = "sk-upstream-ReadyReadyReadyReadyReady"


class StartingGateway(GatewayProcess):
    """Returns from start() as soon as the process answers HTTP at all, ready or not."""

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited: {self.output()}")
            if self.port is not None and get(self.base_url + "/healthz")[0] == 200:
                return
            if self.port is None and b"spendtrail gateway on" in self.log.read_bytes():
                self.port = int(self.output().split("http://127.0.0.1:")[1].split("/")[0])
            time.sleep(0.05)
        raise AssertionError(f"the gateway did not start: {self.output()}")


def get(url: str) -> tuple[int | None, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None, {}


def wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


@pytest.fixture
def upstream():
    double = UpstreamDouble(UPSTREAM_KEY)
    double.url = double.start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def ledger(tmp_path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    sheet = tmp_path / "prices.yaml"
    sheet.write_text(SHEET)
    with engine.begin() as conn:
        save_version(
            conn,
            load_registry(ROOT / "examples" / "registry.yaml"),
            source_path="examples/registry.yaml",
            actor="test",
        )
        add_entries(conn, load_sheet(sheet), actor="test")
        _, key = create_key(
            conn, application="support-assistant", environment="production", actor="test"
        )
    engine.dispose()
    return url, key


def test_not_ready_until_keys_registry_and_prices_are_loaded(tmp_path, upstream, ledger):
    url, key = ledger
    engine = make_engine(url)
    # The ledger's keys table cannot be read: the gateway starts, but cannot load its keys.
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE gateway_keys RENAME TO gateway_keys_away"))
    with StartingGateway(url, upstream.url, UPSTREAM_KEY, tmp_path / "gw") as gw:
        status, body = wait_for(
            lambda: (
                (r := get(gw.base_url + "/readyz"))[1].get("problems")
                and "cannot load" in r[1]["problems"][0]
                and r
            )
        )
        assert status == 503 and body["status"] == "not_ready"
        assert get(gw.base_url + "/healthz") == (
            200,
            {
                "status": "starting",
                "providers": ["cometapi"],
                "journal_errors": 0,
                "pid": gw.process.pid,
            },  # one worker: the process itself
        )
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.status_code == 503
        assert refused.value.body["code"] == "gateway_not_ready"
        assert upstream.received == [] and gw.events() == []  # refused before the provider

        with engine.begin() as conn:  # the ledger answers again: ready within a refresh
            conn.execute(sa.text("ALTER TABLE gateway_keys_away RENAME TO gateway_keys"))
        status, body = wait_for(lambda: (r := get(gw.base_url + "/readyz"))[0] == 200 and r)
        assert body == {
            "status": "ready",
            "problems": [],
            "ledger": "reachable",
            "journal_errors": 0,
            "pid": gw.process.pid,
        }
        assert get(gw.base_url + "/healthz")[1]["status"] == "ok"
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        assert len(gw.wait_for_events(1)) == 1
    engine.dispose()


def test_not_ready_while_the_journal_cannot_take_a_write(tmp_path, upstream, ledger):
    url, _ = ledger
    with StartingGateway(url, upstream.url, UPSTREAM_KEY, tmp_path / "gw") as gw:
        assert wait_for(lambda: get(gw.base_url + "/readyz")[0] == 200)
        # The spool directory is gone and a file sits at its path (a lost volume mount, say):
        # no event could be journaled. Permission bits would not stop root, so a file it is.
        shutil.rmtree(gw.spool, ignore_errors=True)
        gw.spool.write_text("")
        status, body = get(gw.base_url + "/readyz")
        assert status == 503 and body["status"] == "not_ready"
        assert body["problems"] == [f"the journal {gw.spool} is not writable: File exists"]
        assert get(gw.base_url + "/healthz")[0] == 200  # alive: no reason to restart it
        gw.spool.unlink()
        status, body = get(gw.base_url + "/readyz")
        assert (status, body["problems"]) == (200, [])
        assert [p.name for p in gw.spool.iterdir()] == []  # the probe leaves nothing behind
