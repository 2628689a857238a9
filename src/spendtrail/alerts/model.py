"""An alert: a condition on the books worth telling someone, once per condition and period.

The dedup ``key`` names the condition and its period (``budget_threshold:search-monthly:
2026-11-01:80``): the ledger keeps it unique, so a condition found again is not alerted again.
``owner`` is whom the alert is about, as far as the registry knows (a budget on a cost
center knows its business unit too); a company-wide alert has no owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

# The kinds, in the order `alerts check` evaluates them (docs/alerts.md).
KINDS = (
    "budget_threshold",
    "budget_hard_limit",
    "budget_forecast",
    "spend_anomaly",
    "unallocated",
    "reconciliation_failed",
    "prices_stale",
)
OWNER_FIELDS = ("application", "cost_center", "business_unit", "budget_owner")


@dataclass(frozen=True, slots=True)
class Owner:
    application: str | None = None
    cost_center: str | None = None
    business_unit: str | None = None
    budget_owner: str | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in OWNER_FIELDS)

    def __str__(self) -> str:
        shown = [f"{name}={getattr(self, name)}" for name in OWNER_FIELDS if getattr(self, name)]
        return ", ".join(shown) or "company"


COMPANY = Owner()


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    key: str
    title: str
    message: str
    period: str | None = None
    owner: Owner = COMPANY
    details: dict[str, str] = field(default_factory=dict)  # the figures, as shown
    id: int | None = None  # set once recorded
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind {self.kind!r}: expected one of {', '.join(KINDS)}")


ALERT_FIELDS = tuple(f.name for f in fields(Alert))
