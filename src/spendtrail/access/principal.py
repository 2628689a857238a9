"""The user a request acts for, and the checks every operation makes before it reads or
writes: its role (``roles.allowed``) and its scope (``scope.AccessScope``)."""

from __future__ import annotations

from dataclasses import dataclass

from spendtrail.access.roles import AccessDenied, Permission, Role, allowed
from spendtrail.access.scope import AccessScope


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    name: str
    role: Role
    scope: AccessScope

    def require(self, permission: Permission) -> None:
        if not allowed(self.role, permission):
            raise AccessDenied(f"{self.name} ({self.role}) may not {permission.replace('_', ' ')}")

    def require_everyone(self, permission: Permission = Permission.read_books) -> None:
        """For records that hold every owner's figures (bills, reconciliations, the audit
        log): the role must allow them and the scope must be everyone's."""
        self.require(permission)
        if not self.scope.everyone:
            raise AccessDenied(
                f"{self.name} sees only its own owners' figures; this record holds every owner's"
            )

    def require_owner(self, attribute: str, value: str | None) -> None:
        if not self.scope.admits_owner(attribute, value):
            raise AccessDenied(
                f"{self.name} may not act on {attribute.replace('_', ' ')} {value!r}: "
                "not in its scope"
            )

    @property
    def actor(self) -> str:
        """The name the audit log records for what this user does."""
        return f"user:{self.name}"
