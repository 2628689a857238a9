"""Provider bill and usage exports, parsed into one normalized, streamed record (docs/bills.md).

This layer only parses: it yields ``BillLine`` for each good row and ``BillRowError`` for each
bad one, in file order, in memory that does not grow with the file. Storing the lines and
matching them against the ledger belong to the layers above (``reconcile``).

- ``model.py``: ``BillLine`` and ``BillRowError``; charges positive, refunds negative.
- ``formats.py``: the formats by name, one ``read_bill`` entry point, a cheap format guess.
- ``values.py``: one cell or JSON value parsed, the error naming its field.
- ``csvrows.py``: CSV rows keyed by header that know their line.
- ``pages.py``: JSON report pages streamed; numbers as ``Decimal``, never float.
- ``cometapi_log.py``, ``openai_costs.py``, ``openai_usage.py``, ``anthropic_cost.py``,
  ``anthropic_usage.py``, ``focus.py``: one provider format each.
- ``mapped_csv.py``: any CSV through a reviewed YAML column mapping.
"""

from spendtrail.bills.anthropic_cost import read_anthropic_cost
from spendtrail.bills.anthropic_usage import read_anthropic_usage
from spendtrail.bills.cometapi_log import QUOTA_PER_USD, read_cometapi_csv, read_cometapi_json
from spendtrail.bills.focus import read_focus_csv, read_focus_parquet
from spendtrail.bills.formats import FORMATS, BillFormat, choose_format, detect_format, read_bill
from spendtrail.bills.mapped_csv import ColumnMapping, MappingError, load_mapping, read_mapped_csv
from spendtrail.bills.model import (
    CHARGE_KINDS,
    BillFileError,
    BillLine,
    BillRowError,
    ChargeKind,
    Granularity,
)
from spendtrail.bills.openai_costs import read_openai_costs
from spendtrail.bills.openai_usage import read_openai_usage

__all__ = [
    "CHARGE_KINDS",
    "FORMATS",
    "QUOTA_PER_USD",
    "BillFileError",
    "BillFormat",
    "BillLine",
    "BillRowError",
    "ChargeKind",
    "ColumnMapping",
    "Granularity",
    "MappingError",
    "choose_format",
    "detect_format",
    "load_mapping",
    "read_anthropic_cost",
    "read_anthropic_usage",
    "read_bill",
    "read_cometapi_csv",
    "read_cometapi_json",
    "read_focus_csv",
    "read_focus_parquet",
    "read_mapped_csv",
    "read_openai_costs",
    "read_openai_usage",
]
