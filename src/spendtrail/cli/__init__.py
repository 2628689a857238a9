"""The ``spendtrail`` command: faces only (docs/architecture.md). A command parses its
arguments, calls one operation of a lower layer and renders the result; queries and rules
live below it.

- ``app.py``: the command and a table of its groups, each imported only when it runs.
- ``common.py``: what every command shares: settings, the ledger, one-line failures.
- ``render.py``: rows as a Rich table, CSV or JSON.
- ``*_cmd.py``: one command group each: ``ingest_cmd.py``, ``registry_cmd.py``,
  ``prices_cmd.py``, ``costs_cmd.py``, ``ledger_cmd.py``, ``reprice_cmd.py``,
  ``gateway_cmd.py``, ``simulator_cmd.py``, ``budgets_cmd.py``, ``budget_review_cmd.py``,
  ``bills_cmd.py``, ``reconcile_cmd.py``, ``allocation_cmd.py``, ``report_cmd.py``,
  ``export_cmd.py``, ``evidence_cmd.py``, ``integrations_cmd.py``, ``serve_cmd.py`` (the
  console API, docs/console.md), ``users_cmd.py`` (console users and API tokens).
"""
