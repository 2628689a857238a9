"""The FOCUS 1.2 cost-and-usage columns spendtrail writes, and its x_ extension columns.

Levels and nullability are the spec's "Content Constraints" (FOCUS_Spec tag v1.2,
``specification/columns/*.md``); see docs/focus.md. The export checks every row against this
table before writing, because the public validators neither fail on error nor catch every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["string", "decimal", "datetime", "json", "integer"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    level: Literal["M", "C", "R", "x"]  # Mandatory, Conditional, Recommended, extension
    kind: Kind
    nullable: bool


def _c(name: str, level: str, kind: Kind = "string", nullable: bool = True) -> Column:
    return Column(name, level, kind, nullable)  # type: ignore[arg-type]


FOCUS_COLUMNS: tuple[Column, ...] = (
    _c("AvailabilityZone", "R"),
    _c("BilledCost", "M", "decimal", False),
    _c("BillingAccountId", "M", nullable=False),
    _c("BillingAccountName", "M"),
    _c("BillingAccountType", "C", nullable=False),
    _c("BillingCurrency", "M", nullable=False),
    _c("BillingPeriodEnd", "M", "datetime", False),
    _c("BillingPeriodStart", "M", "datetime", False),
    _c("CapacityReservationId", "C"),
    _c("CapacityReservationStatus", "C"),
    _c("ChargeCategory", "M", nullable=False),
    _c("ChargeClass", "M"),
    _c("ChargeDescription", "M"),
    _c("ChargeFrequency", "R", nullable=False),
    _c("ChargePeriodEnd", "M", "datetime", False),
    _c("ChargePeriodStart", "M", "datetime", False),
    _c("CommitmentDiscountCategory", "C"),
    _c("CommitmentDiscountId", "C"),
    _c("CommitmentDiscountName", "C"),
    _c("CommitmentDiscountQuantity", "C", "decimal"),
    _c("CommitmentDiscountStatus", "C"),
    _c("CommitmentDiscountType", "C"),
    _c("CommitmentDiscountUnit", "C"),
    _c("ConsumedQuantity", "C", "decimal"),
    _c("ConsumedUnit", "C"),
    _c("ContractedCost", "M", "decimal", False),
    _c("ContractedUnitPrice", "C", "decimal"),
    _c("EffectiveCost", "M", "decimal", False),
    _c("InvoiceId", "R"),
    _c("InvoiceIssuerName", "M", nullable=False),
    _c("ListCost", "M", "decimal", False),
    _c("ListUnitPrice", "C", "decimal"),
    _c("PricingCategory", "C"),
    _c("PricingCurrency", "C"),
    _c("PricingCurrencyContractedUnitPrice", "C", "decimal"),
    _c("PricingCurrencyEffectiveCost", "C", "decimal"),
    _c("PricingCurrencyListUnitPrice", "C", "decimal"),
    _c("PricingQuantity", "M", "decimal"),
    _c("PricingUnit", "M"),
    _c("ProviderName", "M", nullable=False),
    _c("PublisherName", "M", nullable=False),
    _c("RegionId", "C"),
    _c("RegionName", "C"),
    _c("ResourceId", "C"),
    _c("ResourceName", "C"),
    _c("ResourceType", "C"),
    _c("ServiceCategory", "M", nullable=False),
    _c("ServiceName", "M", nullable=False),
    _c("ServiceSubcategory", "R", nullable=False),
    _c("SkuId", "C"),
    _c("SkuMeter", "C"),
    _c("SkuPriceDetails", "C", "json"),
    _c("SkuPriceId", "C"),
    _c("SubAccountId", "C"),
    _c("SubAccountName", "C"),
    _c("SubAccountType", "C"),
    _c("Tags", "C", "json"),
)

# spendtrail's own columns: the x_ prefix keeps them apart from present and future FOCUS ones.
EXTENSION_COLUMNS: tuple[Column, ...] = (
    _c("x_Meter", "x", nullable=False),
    _c("x_PriceEntryId", "x", nullable=False),
    _c("x_PriceKind", "x", nullable=False),
    _c("x_PriceSourceUrl", "x", nullable=False),
    _c("x_ListPriceEntryId", "x", nullable=False),
    _c("x_AllocationStatus", "x", nullable=False),
    _c("x_EventCount", "x", "integer", False),
)

COLUMNS: tuple[Column, ...] = FOCUS_COLUMNS + EXTENSION_COLUMNS
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

# Usage rows must carry these despite the spec's "Allows nulls" (pricingquantity.md,
# skupriceid.md, consumedquantity.md: null only on Correction / unused-commitment rows).
USAGE_REQUIRED = ("PricingQuantity", "PricingUnit", "SkuPriceId", "ConsumedQuantity",
                  "ConsumedUnit")

ALLOWED: dict[str, frozenset[str]] = {
    "ChargeCategory": frozenset({"Usage", "Purchase", "Tax", "Credit", "Adjustment"}),
    "ChargeClass": frozenset({"Correction"}),
    "ChargeFrequency": frozenset({"One-Time", "Recurring", "Usage-Based"}),
    "PricingCategory": frozenset({"Standard", "Dynamic", "Committed", "Other"}),
    "ServiceCategory": frozenset({
        "AI and Machine Learning", "Analytics", "Business Applications", "Compute",
        "Databases", "Developer Tools", "Multicloud", "Identity", "Integration",
        "Internet of Things", "Management and Governance", "Media", "Migration", "Mobile",
        "Networking", "Security", "Storage", "Web", "Other",
    }),
}
