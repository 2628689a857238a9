"""The roles and what each may do: one table, read by every face through ``allowed``."""

from __future__ import annotations

from enum import StrEnum

from spendtrail.errors import SpendtrailError


class Role(StrEnum):
    admin = "admin"  # everything, including loading the registry, prices and rules
    finance = "finance"  # all owners; reconciles, runs statements, assigns exceptions
    owner = "owner"  # only the owners named in its scope; issues their gateway keys
    viewer = "viewer"  # reads, within its scope (all owners unless scoped)


class Permission(StrEnum):
    read = "read"
    read_books = "read_books"  # company-wide records: bills, reconciliations, evidence, audit
    manage_exceptions = "manage_exceptions"
    manage_keys = "manage_keys"  # within the user's scope
    set_budgets = "set_budgets"  # within the user's scope
    reconcile = "reconcile"  # upload a bill, run a reconciliation
    run_statements = "run_statements"
    write_reviews = "write_reviews"
    load_reference = "load_reference"  # registry, price sheet, shared-cost rules
    manage_users = "manage_users"


_ALL = frozenset(Role)
GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.read: _ALL,
    Permission.read_books: frozenset({Role.admin, Role.finance, Role.viewer}),
    Permission.manage_exceptions: frozenset({Role.admin, Role.finance}),
    Permission.manage_keys: frozenset({Role.admin, Role.finance, Role.owner}),
    Permission.set_budgets: frozenset({Role.admin, Role.finance, Role.owner}),
    Permission.reconcile: frozenset({Role.admin, Role.finance}),
    Permission.run_statements: frozenset({Role.admin, Role.finance}),
    Permission.write_reviews: frozenset({Role.admin, Role.finance}),
    Permission.load_reference: frozenset({Role.admin}),
    Permission.manage_users: frozenset({Role.admin}),
}


class AccessDenied(SpendtrailError):
    """The user's role or scope does not allow this; faces answer 403."""


def allowed(role: Role, permission: Permission) -> bool:
    return role in GRANTS[permission]


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise SpendtrailError(f"role {text!r}: expected one of {', '.join(Role)}") from None
