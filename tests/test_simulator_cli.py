"""`simulate_provider`, the function behind `spendtrail simulate-provider`, run as a real
process (until SIGINT) and through a Typer app built here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import typer
from test_simulator import HELLO, read_log
from typer.testing import CliRunner

from spendtrail.cli.simulator_cmd import simulate_provider

SCRIPT = """
import typer
from spendtrail.cli.simulator_cmd import simulate_provider
app = typer.Typer()
app.command()(simulate_provider)
app()
"""


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate_provider)
    return app


def test_runs_until_interrupted_with_key_and_price_files(tmp_path: Path):
    keys = tmp_path / "keys.yaml"
    keys.write_text("search-team: sk-cli-test-key\n")
    prices = tmp_path / "prices.yaml"
    prices.write_text("house-model: {input: 2, output: 8}\n")
    log = tmp_path / "usage.csv"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "--port", "0", "--keys", str(keys), "--prices",
         str(prices), "--usage-log", str(log), "--group", "svip", "--seed", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("simulator listening on http://127.0.0.1:"), (
            first + process.stderr.read() if process.poll() is not None else first)
        url = first.split()[-1]
        with openai.OpenAI(base_url=url, api_key="sk-cli-test-key", max_retries=0) as client:
            result = client.chat.completions.create(
                model="house-model", messages=HELLO, max_tokens=100
            )
            assert result.usage.prompt_tokens == 9
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        with openai.OpenAI(base_url=url, api_key="sk-other", max_retries=0) as stranger:
            with pytest.raises(openai.AuthenticationError):
                stranger.models.list()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # never left running, whatever failed
            process.communicate()
            raise
    assert process.returncode == 0, err
    [row] = read_log(log)
    # (9 x 2 + 100 x 8) / 1M USD x 500,000 = 409
    assert (row["token_name"], row["group"], row["quota"]) == ("search-team", "svip", "409")
    assert "sk-cli-test-key" not in log.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--fault", "reset=often"], "expected KIND=RATE"),
    (["--fault", "gremlins=0.1"], "unknown fault 'gremlins'"),
    (["--error-rate", "0.8", "--cut-rate", "0.5"], "add up to more than 1"),
    (["--prices", "/nonexistent/prices.yaml"], "cannot read the price file"),
])
def test_bad_options_fail_with_one_clear_line(args, message):
    result = CliRunner().invoke(_app(), ["--port", "0", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_taken_port_is_reported(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(_app(), ["--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
