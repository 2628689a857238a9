"""The CLI starts without its heavy dependencies, and explains every command.

What start-up imports is checked in a fresh interpreter; how long it takes is measured by
bench/cli_startup.py, never asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest
from typer.core import TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

from spendtrail.cli.app import COMMANDS, app
from spendtrail.ledger.url import redact_url
from spendtrail.settings import Settings

# Loaded by the commands that use them, never by start-up. (pydantic is not listed: Typer
# itself coerces parameter values with it.)
HEAVY = {
    "sqlalchemy",
    "alembic",
    "psycopg",
    "aiohttp",
    "openai",
    "pyarrow",
    "genai_prices",
    "pydantic_settings",
}

# Runs the CLI in this interpreter, then prints every module it imported after a marker.
RUNNER = """
import sys
from spendtrail.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("--modules--")
print("\\n".join(sorted(sys.modules)))
"""


def run_and_list_modules(tmp_path, *args: str) -> tuple[str, set[str]]:
    env = {**os.environ, "SPENDTRAIL_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("SPENDTRAIL_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    output, _, modules = done.stdout.partition("--modules--\n")
    return output, set(modules.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_help_lists_every_command_without_importing_them(tmp_path):
    output, modules = run_and_list_modules(tmp_path, "--help")
    for name, (_, _, help_line) in COMMANDS.items():
        assert f" {name} " in output and help_line in output, name
    assert top_level(modules) & HEAVY == set()
    assert not {m for m in modules if m.endswith("_cmd")}  # no command module imported


def test_ledger_path_loads_no_database_code(tmp_path):
    output, modules = run_and_list_modules(tmp_path, "ledger", "path")
    assert output.strip() == f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"
    assert top_level(modules) & HEAVY == set()
    assert "spendtrail.cli.ledger_cmd" in modules and "spendtrail.cli.gateway_cmd" not in modules


def test_version_is_the_installed_one(tmp_path):
    output, modules = run_and_list_modules(tmp_path, "--version")
    assert output.strip() == f"spendtrail {version('spendtrail')}"
    assert top_level(modules) & HEAVY == set()


def test_the_hook_loads_no_migrations_or_database_driver():
    # What the hook still loads through the gateway package (SQLAlchemy, aiohttp) goes once
    # the capture helpers live below both capture paths (STYLE.md section 3, item 7).
    code = "import sys, spendtrail.hook; print('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = top_level(set(done.stdout.split()))
    assert "spendtrail" in loaded
    assert not loaded & {"alembic", "psycopg", "pyarrow", "genai_prices", "pydantic_settings"}


def walk(command, path=()):
    yield path, command
    if isinstance(command, TyperGroup):
        for name in command.list_commands(None):
            # resolve_command loads a command the way running it does.
            _, sub, _ = command.resolve_command(None, [name])
            yield from walk(sub, (*path, name))


def test_every_command_and_group_has_help():
    commands = list(walk(get_command(app)))
    assert len(commands) > 60  # every group was loaded and walked
    missing = [" ".join(path) for path, command in commands if not (command.help or "").strip()]
    assert missing == []
    names = {path[0] for path, _ in commands if path}
    assert names == set(COMMANDS)


@pytest.mark.parametrize(
    "name", [n for n, (_, attr, _) in COMMANDS.items() if attr.endswith("app")]
)
def test_group_help_is_the_listed_line(name):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert COMMANDS[name][2] in result.output


def test_redacted_url_hides_the_password_only():
    assert redact_url("sqlite:////var/lib/spendtrail/ledger.db") == (
        "sqlite:////var/lib/spendtrail/ledger.db"
    )
    shown = redact_url("postgresql://ana:s3cret@db.internal:5432/books")
    assert "s3cret" not in shown and shown == "postgresql://ana:***@db.internal:5432/books"


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPENDTRAIL_HOME", str(tmp_path))
    monkeypatch.setenv("SPENDTRAIL_SPOOL_DIR", "")  # empty counts as unset
    monkeypatch.setenv("SPENDTRAIL_ACTOR", "dana")
    monkeypatch.delenv("SPENDTRAIL_DATABASE_URL", raising=False)
    s = Settings()
    assert (s.ledger_url, s.spool, s.who) == (
        f"sqlite:///{tmp_path / 'ledger.db'}",
        tmp_path / "spool",
        "dana",
    )
    monkeypatch.setenv("SPENDTRAIL_DATABASE_URL", "postgresql://u@h/db")
    assert Settings().ledger_url == "postgresql://u@h/db"
