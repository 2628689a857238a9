"""Pricing (docs/prices.md): effective-dated, sourced price entries, the catalog that finds the
one in effect for an event, and the exact cost function. Pure: the ledger stores the entries
(``spendtrail.ledger.prices``).

- ``model.py``: a price entry: one provider, the models a match selects, one window.
- ``engine.py``: usage meters and a price entry to an exact cost; pure.
- ``catalog.py``: the catalog: the entry in effect for a provider, model and time.
- ``check.py``: prices nobody checked lately.
- ``sheet.py``: the account's YAML price sheet, every problem with its line.
- ``genai_import.py``: list prices from the genai-prices package.
"""

from spendtrail.pricing.catalog import Catalog
from spendtrail.pricing.check import StalePrice, stale_prices
from spendtrail.pricing.engine import INCOMPLETE, PRICED, CostBreakdown, price_usage
from spendtrail.pricing.model import (
    CHARACTER_METERS,
    KINDS,
    MATCH_KINDS,
    TOKEN_METERS,
    UNIT_METERS,
    PriceEntry,
    PricingError,
    Tier,
)
from spendtrail.pricing.sheet import SheetError, load_sheet

__all__ = [
    "CHARACTER_METERS",
    "INCOMPLETE",
    "KINDS",
    "MATCH_KINDS",
    "PRICED",
    "TOKEN_METERS",
    "UNIT_METERS",
    "Catalog",
    "CostBreakdown",
    "PriceEntry",
    "PricingError",
    "SheetError",
    "StalePrice",
    "Tier",
    "load_sheet",
    "price_usage",
    "stale_prices",
]
