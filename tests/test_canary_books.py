"""No secret or prompt reaches the books: a canary provider key and a canary prompt go through
the in-process hook into the journal and the ledger; then every statement, export, review
note, handoff and audit view the CLI writes is searched for them, with the ledger's own files.
(The gateway's paths, its logs and responses: tests/test_gateway_secrets.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest
from factories import ROOT

import spendtrail
from spendtrail.journal.spool import Spool
from spendtrail.simulator import SimulatorConfig, serve_in_thread

PROVIDER_KEY = "sk-canaryHOOKkey0c4n4ry0c4n4ry0c4n4ry77"
PROMPT = "canary-prompt-9d2c: the vault code is 4417-qz8v-7731"
CANARIES = (PROVIDER_KEY.encode(), b"canary-prompt-9d2c", b"4417-qz8v-7731")


def cli(home: Path, *args: str) -> bytes:
    env = {**os.environ, "SPENDTRAIL_HOME": str(home), "SPENDTRAIL_ACTOR": "ana"}
    env.pop("SPENDTRAIL_DATABASE_URL", None)
    env.pop("SPENDTRAIL_SPOOL_DIR", None)
    done = subprocess.run([sys.executable, "-m", "spendtrail.cli.app", *args], env=env,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode in (0, 1), (args, done.stderr.decode())
    return done.stdout + done.stderr


def test_canary_key_and_prompt_never_reach_the_books(tmp_path):
    home = tmp_path / "home"
    out = [cli(home, "init"),
           cli(home, "registry", "load", str(ROOT / "examples" / "registry.yaml")),
           cli(home, "prices", "import", "sheet", str(ROOT / "examples" / "prices.yaml"))]
    with serve_in_thread(SimulatorConfig()) as url, Spool(home / "spool") as spool:
        client = spendtrail.instrument(
            openai.OpenAI(base_url=url, api_key=PROVIDER_KEY, max_retries=0, timeout=10),
            application="support-assistant", environment="production",
            workload_class="user_facing", provider="cometapi", spool=spool)
        ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
        client.chat.completions.create(**ask)
        assert list(client.chat.completions.create(**ask, stream=True))
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(**{**ask, "model": "no-such-model"})
    month = datetime.now(UTC).strftime("%Y-%m")
    out.append(cli(home, "ingest"))
    files = {"statement.md": "md", "statement.html": "html", "statement.json": "json",
             "statement.csv": "csv"}
    for name, fmt in files.items():
        out.append(cli(home, "report", "chargeback", "--period", month, "--format", fmt,
                       "--output", str(tmp_path / name)))
    out += [
        cli(home, "export", "focus", "--period", month, "--output", str(tmp_path / "focus.csv")),
        cli(home, "costs", "--period", month, "--format", "json"),
        cli(home, "sources", "defaults"),
        cli(home, "review", "sample", "--period", month),
        cli(home, "review", "export", "--format", "md", "--period", month, "--output",
            str(tmp_path / "reviews.md")),
        cli(home, "handoff", "new"),
        cli(home, "handoff", "show"),
        cli(home, "audit", "log"),
        cli(home, "ledger", "stats"),
    ]
    # The books hold the calls (so the search below looks at real content)...
    assert b"Support Assistant" in (tmp_path / "statement.md").read_bytes()
    assert b"gpt-4o-mini" in (tmp_path / "focus.csv").read_bytes()
    # ...and nothing of the key or the prompt, in any file or output.
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {p.name for p in written} >= {*files, "focus.csv", "reviews.md", "ledger.db"}
    found = [(canary, where) for canary in CANARIES
             for where, data in [*((p.name, p.read_bytes()) for p in written),
                                 *((f"output {i}", o) for i, o in enumerate(out))]
             if canary in data]
    assert found == []
