"""Reports (docs/reports.md, docs/focus.md): what the books say, per owner and period, read
from the daily rollups and cost entries. Every amount exact, per currency.

- ``chargeback.py``: the showback/chargeback statement; it ties out to the ledger total.
- ``render_html.py``: a statement as one self-contained HTML page.
- ``costs.py``: cost by owner, model and day.
- ``unit_cost.py``: cost per unit per owner.
- ``retries.py``: retry inflation: attempts, requests, billable calls.
- ``focus.py``: the FOCUS export (1.3; 1.2, 1.4) and its metadata; ``focus_columns.py``: the
  columns per version, checked per row; ``focus_allocation.py``: the shared-cost splits it
  writes as split cost allocation.
"""
