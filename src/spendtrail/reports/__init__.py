"""Reports (docs/reports.md, docs/focus.md): what the books say, per owner and period, read
from the daily rollups and cost entries. Every amount exact, per currency.

- ``chargeback.py``: the showback/chargeback statement for the company or one owner (its
  figures, and their exact CSV and JSON forms); it ties out to the ledger total, or a
  scope's to its own.
- ``statement_view.py``: the statement as people read it: registry names, amounts to the
  currency's minor unit that still add up, totals rows; Markdown.
- ``statement_file.py``: a statement as the bytes of one format; a closed month's as
  snapshotted at its close.
- ``gl_journal.py``: a month's charges as a GL journal CSV an ERP imports.
- ``rounding.py``: minor units and largest-remainder rounding of displayed amounts.
- ``render_html.py``: a statement as one self-contained HTML page with print CSS.
- ``render_pdf.py``: that page as PDF (WeasyPrint, the ``pdf`` extra).
- ``statement_run.py``: the month's statements written as files, company and every owner.
- ``costs.py``: cost by owner, model and day, within a user's scope and filters.
- ``unit_cost.py``: cost per unit per owner.
- ``retries.py``: retry inflation: attempts, requests, billable calls.
- ``focus.py``: the FOCUS export (1.3; 1.2, 1.4) and its metadata; ``focus_columns.py``: the
  columns per version, checked per row; ``focus_allocation.py``: the shared-cost splits it
  writes as split cost allocation; ``focus_sums.py``: its pass over the period's events,
  summed by row key (a large month by one worker process per core).
"""
