"""`spendtrail users add|list|disable` and `spendtrail tokens create|list|revoke`: who may use
the console and its API. Faces only: parse, call spendtrail.ledger.users, render."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from spendtrail.cli.common import actor, console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from spendtrail.ledger.users import User

T = TypeVar("T")

users_app = typer.Typer(no_args_is_help=True)
tokens_app = typer.Typer(no_args_is_help=True)
PASSWORD_ENV = "SPENDTRAIL_NEW_PASSWORD"


def _changing(change: Callable[[sa.Connection], T]) -> T:
    """Run one change in a ledger transaction; a refusal is one red line and exit 2."""
    try:
        with ledger().begin() as conn:
            return change(conn)
    except SpendtrailError as exc:
        fail(str(exc))


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[str, typer.Option(help="admin, finance, owner or viewer.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="An owner it sees: application:ID, budget-owner:ID, cost-center:ID or "
            "business-unit:ID (repeatable; required for owner, optional for viewer)."
        ),
    ] = None,
    password: Annotated[
        bool,
        typer.Option(
            "--password/--no-password",
            help=f"Set a password for console login (asked for, or read from {PASSWORD_ENV}); "
            "without one the user works through API tokens only.",
        ),
    ] = True,
) -> None:
    """Add a console user."""
    from spendtrail.access.roles import parse_role
    from spendtrail.ledger.users import add_user, fitting_scope

    secret = None
    if password:
        secret = os.environ.get(PASSWORD_ENV) or typer.prompt(
            "password", hide_input=True, confirmation_prompt=True
        )

    def make(conn: sa.Connection) -> User:
        chosen = parse_role(role)
        return add_user(
            conn,
            name=name,
            role=chosen,
            scope=fitting_scope(chosen, scope or []),
            password=secret,
            actor=actor(),
        )

    user = _changing(make)
    console.print(
        f"added {user.role} {user.name} (sees {', '.join(user.scope.items())})", highlight=False
    )


@users_app.command("list")
def list_command(fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Every console user with role, scope and state."""
    from spendtrail.ledger.users import list_users

    with ledger().connect() as conn:
        found = list_users(conn)
    render(
        [
            {
                "name": u.name,
                "role": str(u.role),
                "scope": " ".join(u.scope.items()),
                "password": u.has_password,
                "created_at": u.created_at.isoformat(timespec="seconds"),
                "disabled": u.disabled_at is not None,
            }
            for u in found
        ],
        fmt,
        title="users",
    )


@users_app.command("disable")
def disable(
    name: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why; kept in the audit log.")] = "",
) -> None:
    """Disable a user: its sessions end and its tokens stop working at once."""
    from spendtrail.ledger.users import disable_user

    _changing(lambda conn: disable_user(conn, name, actor=actor(), reason=reason))
    console.print(f"disabled {name}", highlight=False)


@tokens_app.command("create")
def create(
    user: Annotated[str, typer.Option(help="The user the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. 'nightly export'.")],
) -> None:
    """Create an API token for a user; it is printed once and kept only as a hash."""
    from spendtrail.ledger.users import create_token

    token, secret = _changing(lambda conn: create_token(conn, user, name=name, actor=actor()))
    console.print(
        f"token {token.id} for {token.user} (shown once; send it as 'Authorization: Bearer ...'):",
        highlight=False,
    )
    console.out(secret, highlight=False)


@tokens_app.command("list")
def list_tokens_command(fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Every API token: its user, name and prefix, never the secret."""
    from spendtrail.ledger.users import list_tokens

    with ledger().connect() as conn:
        found = list_tokens(conn)
    render(
        [
            {
                "id": t.id,
                "user": t.user,
                "name": t.name,
                "prefix": t.token_prefix,
                "created_at": t.created_at.isoformat(timespec="seconds"),
                "revoked": t.revoked_at is not None,
            }
            for t in found
        ],
        fmt,
        title="API tokens",
    )


@tokens_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (tok_...).")],
    reason: Annotated[str, typer.Option(help="Why; kept in the audit log.")] = "",
) -> None:
    """Revoke an API token at once."""
    from spendtrail.ledger.users import revoke_token

    _changing(lambda conn: revoke_token(conn, token_id, actor=actor(), reason=reason))
    console.print(f"revoked {token_id}", highlight=False)
