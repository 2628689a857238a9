"""Pricing: effective-dated, sourced price entries, the catalog that finds the one in effect
for an event, and the exact cost function. Schema and rules: docs/prices.md."""

from spendtrail.pricing.catalog import AddResult, Catalog, add_entries, load_entries
from spendtrail.pricing.check import StalePrice, UnpricedModel, stale_prices, unpriced_models
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
    "AddResult",
    "Catalog",
    "CostBreakdown",
    "PriceEntry",
    "PricingError",
    "SheetError",
    "StalePrice",
    "Tier",
    "UnpricedModel",
    "add_entries",
    "load_entries",
    "load_sheet",
    "price_usage",
    "stale_prices",
    "unpriced_models",
]
