"""What the console (the HTTP API, and the web pages built on it) reads and does, for one
user: each function takes the ledger's engine and a ``Principal``, checks the user's role
and scope first (``spendtrail.access``), calls the capability's own functions and returns
the typed values of ``types.py``. No face queries the ledger itself (docs/console.md).

- ``types.py`` — the pydantic values read and written (the API's schema comes from them).
- ``errors.py`` — ``NotFound``: a record missing or outside the user's scope.
- ``spend.py`` — the overview, spend grouped and filtered, the events under a figure.
- ``budgets.py`` — budget state, burn-down and alerts; setting a budget.
- ``alerts.py`` — the alerts a user may see, with their delivery state.
- ``exceptions.py`` — the exception queue; assigning and resolving a group.
- ``reconciliation.py`` — bills and reconciliation runs with their differences; upload, run.
- ``statements.py`` — the statements a user may read, rendered; the month's run.
- ``prices.py`` — the catalog with provenance and stale flags, unpriced models.
- ``evidence.py`` — review notes, follow-ups, handoffs, the audit log; writing a note.
- ``owners.py`` — the registry's applications with their owners; those a user may name.
- ``keys.py`` — gateway keys of the user's applications: list, issue (shown once), revoke.
- ``reference.py`` — loading the registry, a price sheet and the shared-cost rules.
- ``uploads.py`` — where uploaded files are kept.
- ``users.py`` — the current user; the user list.
"""
