"""Whose figures a user sees: everyone's, or only the owners named in its scope.

The rule is ``AccessScope.admits``: a record is visible when the scope is everyone's, or
when one of its owner attributes (application, budget owner, cost center, business unit)
is named in the scope. Quarantined usage belongs to nobody yet (its owner fields are claims
the registry did not confirm), so a scoped user sees none of it. ``spendtrail.ledger.scoping``
turns the same rule into SQL; tests/test_access_scope.py checks the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spendtrail.errors import SpendtrailError

# The owner attributes a scope can name, as records and tables spell them, and as people
# write them (``cost-center:CC-100``, the statements' spelling).
OWNER_ATTRIBUTES = ("application", "budget_owner", "cost_center", "business_unit")
SPELLINGS = {name.replace("_", "-"): name for name in OWNER_ATTRIBUTES}


@dataclass(frozen=True, slots=True)
class AccessScope:
    everyone: bool = False
    applications: frozenset[str] = frozenset()
    budget_owners: frozenset[str] = frozenset()
    cost_centers: frozenset[str] = frozenset()
    business_units: frozenset[str] = frozenset()

    def named(self, attribute: str) -> frozenset[str]:
        """The values of one owner attribute this scope names."""
        if attribute not in OWNER_ATTRIBUTES:
            raise SpendtrailError(
                f"{attribute!r} is not an owner attribute: {', '.join(OWNER_ATTRIBUTES)}"
            )
        return getattr(self, attribute + "s")

    @property
    def is_empty(self) -> bool:
        return not self.everyone and not any(self.named(a) for a in OWNER_ATTRIBUTES)

    def admits_owner(self, attribute: str, value: str | None) -> bool:
        """Whether the owner ``attribute == value`` (an application, a cost center...) is
        one of this scope's."""
        return self.everyone or (value is not None and value in self.named(attribute))

    def admits(self, record: Mapping[str, object], *, quarantined: bool = False) -> bool:
        """Whether a record with these owner attributes is visible in this scope."""
        if self.everyone:
            return True
        if quarantined:
            return False
        return any(record.get(a) in self.named(a) for a in OWNER_ATTRIBUTES)

    def items(self) -> list[str]:
        """The scope as people write it: ``["application:search", "cost-center:CC-1"]``,
        or ``["*"]`` for everyone."""
        if self.everyone:
            return ["*"]
        return [
            f"{a.replace('_', '-')}:{v}" for a in OWNER_ATTRIBUTES for v in sorted(self.named(a))
        ]


EVERYONE = AccessScope(everyone=True)


def parse_scope(items: Iterable[str]) -> AccessScope:
    """``*`` (everyone) or ``application:ID``, ``budget-owner:ID``, ``cost-center:ID``,
    ``business-unit:ID``, several allowed."""
    named: dict[str, set[str]] = {a: set() for a in OWNER_ATTRIBUTES}
    for item in items:
        if item == "*":
            return EVERYONE
        kind, sep, value = item.partition(":")
        if not sep or kind not in SPELLINGS or not value.strip():
            raise SpendtrailError(
                f"scope {item!r}: expected * or one of {', '.join(f'{k}:ID' for k in SPELLINGS)}"
            )
        named[SPELLINGS[kind]].add(value.strip())
    return AccessScope(**{a + "s": frozenset(v) for a, v in named.items()})
