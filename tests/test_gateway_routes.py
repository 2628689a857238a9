"""Routes: one `spendtrail gateway --routes FILE` process in front of three provider doubles,
the real openai SDK as the client; and the routes file's problems, each with its line."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import openai
import pytest
from factories import ROOT, SHEET
from gateway_process import GatewayProcess
from gateway_upstream import UpstreamDouble
from typer.testing import CliRunner

from spendtrail.cli.app import app
from spendtrail.gateway import GatewayConfig, RoutesError, create_key, load_routes
from spendtrail.gateway.config import GatewayConfigError
from spendtrail.ledger.db import make_engine
from spendtrail.ledger.prices import add_entries
from spendtrail.ledger.registry_versions import save_version
from spendtrail.pricing import load_sheet
from spendtrail.registry import load_registry

KEYS = {
    "cometapi": "sk-cometROUTEkey0a1b2c3d4e5f6a7b8c9d0e1f2",
    "openai": "sk-openaiROUTEkey9f8e7d6c5b4a3f2e1d0c9b8",
    "deepseek": "sk-deepseekROUTEkey5a5b5c5d5e5f5a5b5c5d",
}
ENV = {f"{name.upper()}_TEST_KEY": key for name, key in KEYS.items()}

ROUTES = """\
upstreams:
  comet:
    url: {cometapi}
    key_env: COMETAPI_TEST_KEY
    provider: cometapi
  openai:
    url: {openai}
    key_env: OPENAI_TEST_KEY
  deepseek:
    url: {deepseek}
    key_env: DEEPSEEK_TEST_KEY
routes:
  - model: gpt-4o
    upstream: openai
  - model: "deepseek-*"
    upstream: deepseek
default: comet
"""


@pytest.fixture
def doubles():
    started = {name: UpstreamDouble(key) for name, key in KEYS.items()}
    urls = {name: double.start() for name, double in started.items()}
    yield started, urls
    for double in started.values():
        double.stop()


def seed(url: str, tmp: Path) -> str:
    sheet = tmp / "prices.yaml"
    sheet.write_text(SHEET)
    engine = make_engine(url)
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
    return key


def test_one_gateway_routes_each_model_to_its_upstream(ledger_url, doubles, tmp_path):
    started, urls = doubles
    key = seed(ledger_url, tmp_path)
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.format(**urls))
    with GatewayProcess(
        ledger_url, None, None, tmp_path / "home", "--routes", str(routes), env=ENV
    ) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
        for model in ("gpt-4o", "deepseek-chat", "gpt-4o-mini"):
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.model == model
        chunks = list(
            client.chat.completions.create(
                model="deepseek-reasoner", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert client.models.list().data  # no model: the default upstream
        with urllib.request.urlopen(gateway.base_url + "/healthz", timeout=10) as answer:
            health = json.loads(answer.read())
        assert health["providers"] == ["cometapi", "deepseek", "openai"]

        # A provider echoing its key gets it masked, as with one upstream.
        started["openai"].script("gpt-4o", ["echo_key"])
        with pytest.raises(openai.AuthenticationError) as echoed:
            client.chat.completions.create(model="gpt-4o", messages=[])
        assert KEYS["openai"] not in str(echoed.value.body)
        assert "<redacted>" in str(echoed.value.body)
        events = gateway.wait_for_events(6)
    by_model = {(e.model_requested, e.endpoint, e.http_status): e.provider for e in events}
    assert by_model == {
        ("gpt-4o", "/v1/chat/completions", 200): "openai",
        ("deepseek-chat", "/v1/chat/completions", 200): "deepseek",
        ("gpt-4o-mini", "/v1/chat/completions", 200): "cometapi",
        ("deepseek-reasoner", "/v1/chat/completions", 200): "deepseek",
        (None, "/v1/models", 200): "cometapi",
        ("gpt-4o", "/v1/chat/completions", 401): "openai",
    }
    assert len(events) == 6
    # Each double was called with its own key, for its own models only.
    for name, double in started.items():
        assert {r.headers["Authorization"] for r in double.received} == {f"Bearer {KEYS[name]}"}
    assert [r.json()["model"] for r in started["deepseek"].received] == [
        "deepseek-chat",
        "deepseek-reasoner",
    ]
    assert {r.path for r in started["cometapi"].received} == {"/v1/chat/completions", "/v1/models"}
    log = gateway.output()
    assert not any(secret in log for secret in KEYS.values())


def test_an_unknown_model_without_a_default_is_a_400_naming_the_routes(
    ledger_url, doubles, tmp_path
):
    _, urls = doubles
    key = seed(ledger_url, tmp_path)
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.format(**urls).replace("default: comet\n", ""))
    with GatewayProcess(
        ledger_url, None, None, tmp_path / "home", "--routes", str(routes), env=ENV
    ) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="mistral-large", messages=[])
        error = refused.value.body
        assert error["code"] == "spendtrail_no_route"
        assert error["param"] == "model"
        assert error["message"] == (
            f"no upstream for this call: the model 'mistral-large' matches none of the routes "
            f"in {routes} (gpt-4o -> openai, deepseek-* -> deepseek; no default)"
        )
        assert refused.value.status_code == 400
        assert gateway.events() == []


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


def test_routes_file_problems_name_their_lines(tmp_path):
    path = write(
        tmp_path,
        """\
upstreams:
  comet:
    url: https://api.cometapi.com/v1
    key_env: COMETAPI_TEST_KEY
  anthropic:
    url: api.anthropic.com
    key_env: MISSING_TEST_KEY
    api: claude
routes:
  - model: "claude-*"
    upstream: antropic
  - model: "claude-*"
    upstream: comet
  - model: gpt-4o
default: openai
""",
    )
    with pytest.raises(RoutesError) as failed:
        load_routes(path, ENV)
    assert str(failed.value).splitlines() == [
        f"{path}: 7 problems in the routes file",
        f"{path}:6: upstreams.anthropic.url: expected an http:// or https:// URL, got "
        "'api.anthropic.com'",
        f"{path}:7: upstreams.anthropic.key_env: MISSING_TEST_KEY is not set in the gateway's "
        "environment",
        f"{path}:8: upstreams.anthropic.api: expected one of openai, anthropic, got 'claude'",
        f"{path}:11: routes[1].upstream: no upstream named 'antropic'; the upstreams are "
        "comet, anthropic",
        f"{path}:12: routes[2].model: 'claude-*' is already routed on line 10",
        f"{path}:14: routes[3]: missing required key 'upstream'",
        f"{path}:15: default: no upstream named 'openai'; the upstreams are comet, anthropic",
    ]


def test_routes_pick_in_file_order_and_keep_keys_out_of_reprs(tmp_path):
    path = write(
        tmp_path,
        """\
upstreams:
  comet: {url: "https://api.cometapi.com/v1/", key_env: COMETAPI_TEST_KEY}
  openai: {url: "https://api.openai.com/v1", key_env: OPENAI_TEST_KEY}
routes:
  - {model: gpt-4o-mini, upstream: comet}
  - {model: "gpt-*", upstream: openai}
""",
    )
    routes = load_routes(path, ENV)
    assert routes.pick("gpt-4o-mini").name == "comet"
    assert routes.pick("gpt-4.1").provider == "openai"
    assert routes.pick("claude-sonnet-4") is None and routes.pick(None) is None
    assert routes.pick("gpt-4o-mini").url == "https://api.cometapi.com/v1"
    assert not any(key in repr(routes) for key in KEYS.values())


def test_gateway_config_takes_routes_or_one_upstream_not_both(tmp_path):
    routes = load_routes(
        write(tmp_path, "upstreams:\n  a: {url: 'http://x/v1', key_env: OPENAI_TEST_KEY}\n"), ENV
    )
    with pytest.raises(GatewayConfigError):
        GatewayConfig(
            routes=routes,
            upstream_url="http://y/v1",
            upstream_key="k",
            provider="p",
            ledger_url="sqlite://",
            spool_dir=tmp_path,
        )
    single = GatewayConfig(
        upstream_url="http://y/v1",
        upstream_key="k",
        provider="p",
        ledger_url="sqlite://",
        spool_dir=tmp_path,
    )
    assert single.routes.pick("anything").provider == "p"


def test_the_gateway_command_reports_a_bad_routes_file_with_its_line(tmp_path, monkeypatch):
    path = write(tmp_path, "upstreams:\n  comet: {url: 'https://x/v1', key_env: NOPE_KEY}\n")
    monkeypatch.delenv("NOPE_KEY", raising=False)
    result = CliRunner().invoke(app, ["gateway", "--routes", str(path), "--port", "0"])
    assert result.exit_code == 2
    assert f"{path}:2: upstreams.comet.key_env: NOPE_KEY is not set" in result.stderr
    result = CliRunner().invoke(app, ["gateway", "--routes", str(path), "--profile", "openai"])
    assert result.exit_code == 2
    assert "--routes names every upstream" in result.stderr
