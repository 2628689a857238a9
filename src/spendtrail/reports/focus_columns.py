"""The FOCUS cost-and-usage columns spendtrail writes per FOCUS version (1.2, 1.3, 1.4), and
its x_ extension columns.

Levels and nullability are the spec's "Content Constraints" (FOCUS_Spec tag v1.2,
``specification/columns/*.md``; from 1.3 ``specification/datasets/cost_and_usage/columns``);
see docs/focus.md for what differs between versions. The export checks every row against the
version's table before writing, because the public validators neither fail on error nor catch
every row. The four ``PricingCurrency*`` columns are left out of every version: the spec
requires them only when pricing and billing currencies differ (never here: a price entry's
currency is the billed one), and when present they must not be null.
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


FOCUS_VERSIONS = ("1.2", "1.3", "1.4")
DEFAULT_VERSION = "1.3"

FOCUS_1_2: tuple[Column, ...] = (
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

# Added in 1.3: the provider split (ServiceProviderName replaces ProviderName; ProviderName and
# PublisherName stay, deprecated), split cost allocation, and the contract applied.
ADDED_1_3: tuple[Column, ...] = (
    _c("AllocatedMethodDetails", "R", "json"),
    _c("AllocatedMethodId", "R"),
    _c("AllocatedResourceId", "R"),
    _c("AllocatedResourceName", "R"),
    _c("AllocatedTags", "R", "json"),
    _c("ContractApplied", "C", "json"),
    _c("HostProviderName", "M"),
    _c("ServiceProviderName", "M", nullable=False),
)
# 1.4 removes the deprecated ProviderName and PublisherName and adds InvoiceDetailId.
REMOVED_1_4 = frozenset({"ProviderName", "PublisherName"})
ADDED_1_4: tuple[Column, ...] = (_c("InvoiceDetailId", "M"),)


def _sorted(columns: tuple[Column, ...]) -> tuple[Column, ...]:
    return tuple(sorted(columns, key=lambda c: c.name))


FOCUS_1_3 = _sorted(FOCUS_1_2 + ADDED_1_3)
FOCUS_1_4 = _sorted(tuple(c for c in FOCUS_1_3 if c.name not in REMOVED_1_4) + ADDED_1_4)

# spendtrail's own columns: the x_ prefix keeps them apart from present and future FOCUS ones.
EXTENSION_COLUMNS: tuple[Column, ...] = (
    _c("x_Meter", "x", nullable=False),
    _c("x_PriceEntryId", "x", nullable=False),
    _c("x_PriceKind", "x", nullable=False),
    _c("x_PriceSourceUrl", "x", nullable=False),
    _c("x_ListPriceEntryId", "x", nullable=False),
    _c("x_AllocationStatus", "x", nullable=False),
    _c("x_ClaimedOwner", "x", "json"),
    _c("x_EventCount", "x", "integer", False),
)

COLUMNS: dict[str, tuple[Column, ...]] = {
    version: focus + EXTENSION_COLUMNS
    for version, focus in (("1.2", FOCUS_1_2), ("1.3", FOCUS_1_3), ("1.4", FOCUS_1_4))
}
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    version: tuple(c.name for c in columns) for version, columns in COLUMNS.items()
}
ALL_COLUMN_NAMES = frozenset(name for names in COLUMN_NAMES.values() for name in names)

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
