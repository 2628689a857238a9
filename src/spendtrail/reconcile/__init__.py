"""Reconciliation (docs/reconcile.md): provider bills stored in the ledger and matched against
its events, with an immutable, reviewed record of each run. Bills are parsed by ``bills``.

- ``store.py``: a bill file's lines and bad rows in the ledger, imported once.
- ``match.py``: bill lines against events, set-based in SQL, classified differences.
- ``record.py``: one run judged against a tolerance, written once with its reviewer.
- ``render.py``: a record as rows, JSON and the Markdown summary.
- ``daily.py``: each closed day's one-day bill reconciled once, as it arrives.
"""

from spendtrail.reconcile.daily import DAILY_FORMATS, reconcile_daily
from spendtrail.reconcile.match import DIFFERENCE_KINDS, UNATTRIBUTED, Difference, OwnerTotals
from spendtrail.reconcile.record import (
    RESULTS,
    ReconcileError,
    Reconciliation,
    list_reconciliations,
    load_reconciliation,
    parse_tolerance,
    reconcile,
)
from spendtrail.reconcile.store import (
    BillImport,
    BillStateError,
    DuplicateBillError,
    EmptyBillError,
    ImportResult,
    get_import,
    import_bill,
    import_errors,
    list_imports,
    void_bill,
)

__all__ = [
    "DAILY_FORMATS",
    "DIFFERENCE_KINDS",
    "RESULTS",
    "UNATTRIBUTED",
    "BillImport",
    "BillStateError",
    "Difference",
    "DuplicateBillError",
    "EmptyBillError",
    "ImportResult",
    "OwnerTotals",
    "ReconcileError",
    "Reconciliation",
    "get_import",
    "import_bill",
    "import_errors",
    "list_imports",
    "list_reconciliations",
    "load_reconciliation",
    "parse_tolerance",
    "reconcile",
    "reconcile_daily",
    "void_bill",
]
