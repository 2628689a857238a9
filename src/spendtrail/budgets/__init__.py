"""Budgets: limits on an owner's spend per accounting period, enforced on the request path.

See docs/budgets.md. The gateway loads a `BudgetGuard`, calls `admit` before forwarding a
call and `settle` after recording it.
"""

from spendtrail.budgets.counters import (
    Charge,
    CounterKey,
    Counters,
    MemoryCounters,
    RedisCounters,
    SqlCounters,
)
from spendtrail.budgets.enforce import NO_BUDGET, Admission, BudgetGuard, BudgetState
from spendtrail.budgets.model import (
    PERIOD_KINDS,
    SCOPES,
    Budget,
    BudgetError,
    BudgetPeriod,
    PeriodKind,
    Scope,
)
from spendtrail.budgets.spend import ledger_spend
from spendtrail.budgets.store import (
    check_scope,
    delete_budget,
    get_budget,
    list_alerts,
    list_budgets,
    save_budget,
)

__all__ = [
    "NO_BUDGET",
    "PERIOD_KINDS",
    "SCOPES",
    "Admission",
    "Budget",
    "BudgetError",
    "BudgetGuard",
    "BudgetPeriod",
    "BudgetState",
    "Charge",
    "CounterKey",
    "Counters",
    "MemoryCounters",
    "PeriodKind",
    "RedisCounters",
    "Scope",
    "SqlCounters",
    "check_scope",
    "delete_budget",
    "get_budget",
    "ledger_spend",
    "list_alerts",
    "list_budgets",
    "save_budget",
]
