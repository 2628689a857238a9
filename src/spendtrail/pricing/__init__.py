"""Pricing: effective-dated, sourced price entries, the catalog that finds the one in effect
for an event, and the exact cost function; pure (stored by ``spendtrail.ledger.prices``).
Schema and rules: docs/prices.md."""

from spendtrail.pricing.catalog import Catalog
from spendtrail.pricing.check import StalePrice, stale_prices
from spendtrail.pricing.engine import INCOMPLETE, PRICED, CostBreakdown, price_usage
from spendtrail.pricing.model import (
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
