"""Bill connectors (docs/bills.md, "Fetching bills"): the providers' bill and usage APIs paged
for the closed days not fetched yet, stored as bills through ``reconcile``'s import, so the
same data is never stored twice.

- ``http.py``: one JSON GET with bounded retries on 429 and 5xx, honouring ``Retry-After``.
- ``sources.py``: each source's reports: path, key header, paging, and the bill format read.
- ``fetch.py``: a fetch from the stored cursor: pages saved per day, imported, audited.
"""

from spendtrail.connectors.fetch import FetchResult, fetch_bills, source_named
from spendtrail.connectors.http import FetchError, Retrying
from spendtrail.connectors.sources import SOURCES

__all__ = ["SOURCES", "FetchError", "FetchResult", "Retrying", "fetch_bills", "source_named"]
