"""Budgets (docs/budgets.md): limits on an owner's spend per accounting period, enforced on
the request path. The gateway loads a ``BudgetGuard``, calls ``admit`` before forwarding a
call and ``settle`` after recording it. The budget review is evidence about budgets
(``evidence/budget_review.py``); this package imports neither evidence nor allocation.

- ``model.py``: a budget and its periods (UTC calendar units).
- ``store.py``: budget definitions in the ledger, every change audited.
- ``spend.py``: spend so far, from the daily rollups.
- ``counters.py``: settled spend per budget and period, in memory, SQL or Redis; only grows.
- ``enforce.py``: admit and settle; ledger spend plus what gateways settled since, once.
"""

from spendtrail.budgets.counters import (
    Charge,
    CounterKey,
    Counters,
    Held,
    Hold,
    MemoryCounters,
    RedisCounters,
    SqlCounters,
)
from spendtrail.budgets.enforce import (
    NO_BUDGET,
    NO_ESTIMATE,
    Admission,
    BudgetGuard,
    BudgetState,
    Estimate,
)
from spendtrail.budgets.model import (
    PERIOD_KINDS,
    SCOPES,
    Budget,
    BudgetError,
    BudgetPeriod,
    PeriodKind,
    Scope,
)
from spendtrail.budgets.spend import daily_spend, ledger_spend
from spendtrail.budgets.store import (
    check_scope,
    delete_budget,
    get_budget,
    list_alerts,
    list_budgets,
    put_budget,
    save_budget,
)

__all__ = [
    "NO_BUDGET",
    "NO_ESTIMATE",
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
    "Estimate",
    "Held",
    "Hold",
    "MemoryCounters",
    "PeriodKind",
    "RedisCounters",
    "Scope",
    "SqlCounters",
    "check_scope",
    "daily_spend",
    "delete_budget",
    "get_budget",
    "ledger_spend",
    "list_alerts",
    "list_budgets",
    "put_budget",
    "save_budget",
]
