"""The YAML price sheet: the account's own verified prices (schema: docs/prices.md).

``spendtrail.yamlfile`` reads the file's shapes, numbers from their text (never through
float) and every problem with its line; this module holds the sheet's own rules. All problems
are raised together as one ``SheetError``; a sheet is applied whole or not at all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from spendtrail.errors import SpendtrailError
from spendtrail.pricing.model import (
    MATCH_KINDS,
    PriceEntry,
    Tier,
    check_price,
    check_regex_case,
    parse_day,
    parse_instant,
)
from spendtrail.yamlfile import Reader, is_null, line

# Fields an entry may set, and which of them `defaults` may set for every entry.
ENTRY_FIELDS = (
    "id", "provider", "model", "match", "kind", "currency", "prices", "tiers",
    "effective_from", "effective_to", "service_tier", "source_url", "source_id", "checked_at",
    "checked_by",
)
DEFAULTABLE = (
    "provider", "match", "kind", "currency", "effective_from", "effective_to", "service_tier",
    "source_url", "checked_at", "checked_by",
)
PROVENANCE = ("source_url", "checked_at", "checked_by")
REQUIRED = ("provider", "model", "prices", "effective_from", *PROVENANCE)
TIER_FIELDS = ("above_input_tokens", "prices")
DEFAULT_KIND = "contracted"  # a sheet holds the account's own prices


class SheetError(SpendtrailError):
    """A price sheet that cannot be used; ``problems`` has every problem with its line."""


def load_sheet(path: Path) -> list[PriceEntry]:
    """Read and check a price sheet; raises SheetError listing every problem."""
    reader = Reader(str(path), "the price sheet", SheetError)
    text = reader.read_file(path)
    origin = f"sheet {path.name} sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return _Sheet(reader, origin).read(reader.compose(text))


class _Sheet:
    def __init__(self, reader: Reader, origin: str) -> None:
        self.reader = reader
        self.origin = origin

    def read(self, root: Node | None) -> list[PriceEntry]:
        reader = self.reader
        top = reader.document_keys(root, ("defaults", "prices"), ("prices",)) or {}
        defaults: dict[str, Node] = {}
        if "defaults" in top:
            defaults = reader.mapping(top["defaults"], "defaults", DEFAULTABLE) or {}
        items = reader.sequence(top["prices"], "prices") if "prices" in top else None
        entries: list[tuple[Node, PriceEntry]] = []
        for item in items or ():
            entry = self.entry(item, defaults)
            if entry is not None:
                entries.append((item, entry))
        self.check_overlaps(entries)
        if reader.problems:
            raise reader.failure()
        return [entry for _, entry in entries]

    def entry(self, node: Node, defaults: dict[str, Node]) -> PriceEntry | None:
        reader = self.reader
        count = len(reader.problems)
        own = reader.mapping(node, "price entry", ENTRY_FIELDS)
        if own is None:
            return None
        fields = {**defaults, **own}
        for name in REQUIRED:
            if name not in fields:
                why = " (every price carries its provenance)" if name in PROVENANCE else ""
                reader.problem(node, f"{name}: missing{why}")
        if len(reader.problems) > count:
            return None
        values: dict[str, Any] = {}
        for name, value in fields.items():
            try:
                values[name] = self.value(name, value)
            except SpendtrailError as exc:
                reader.problem(value, str(exc))
        if values.get("match") == "regex" and values.get("model") is not None:
            try:
                check_regex_case(values["model"])
            except SpendtrailError as exc:
                reader.problem(fields["model"], str(exc))
        if len(reader.problems) > count:
            return None
        try:
            return PriceEntry(
                id=values.get("id", ""),
                provider=values["provider"],
                model_match=values["model"],
                match_kind=values.get("match", "exact"),
                kind=values.get("kind", DEFAULT_KIND),
                currency=values.get("currency", "USD"),
                prices=values["prices"],
                tiers=values.get("tiers", ()),
                effective_from=values["effective_from"],
                effective_to=values.get("effective_to"),
                service_tier=values.get("service_tier"),
                source_url=values["source_url"],
                source_id=values.get("source_id"),
                checked_at=values["checked_at"],
                checked_by=values["checked_by"],
                origin=self.origin,
            )
        except SpendtrailError as exc:
            reader.problem(node, str(exc))
            return None

    def value(self, name: str, node: Node) -> Any:
        """One field's value (None after a recorded problem; a pricing rule may raise). Dates
        are read as `prices add` reads them (``pricing.model``), so the sheet and it agree."""
        if name == "prices":
            return self.prices(node, name)
        if name == "tiers":
            return self.tiers(node)
        if name == "effective_to" and is_null(node):
            return None
        text = self.reader.text(node, name)
        if text is None:
            return None
        if name in ("effective_from", "effective_to"):
            return parse_instant(text, name)
        if name == "checked_at":
            return parse_day(text, name)
        if name == "match" and text not in MATCH_KINDS:
            self.reader.problem(node, f"match: expected one of {', '.join(MATCH_KINDS)}, got "
                                f"{text!r}")
            return None
        return text

    def prices(self, node: Node, where: str) -> dict[str, Any] | None:
        meters = self.reader.mapping(node, where, None)
        if meters is None:
            return None
        if not meters:
            self.reader.problem(node, f"{where}: expected a mapping of meter: price")
        prices = {}
        for meter, value in meters.items():
            amount = self.reader.decimal(value, f"{where}.{meter}")
            if amount is None:
                continue
            try:
                prices[meter] = check_price(meter, amount, f"{where}.{meter}")
            except SpendtrailError as exc:
                self.reader.problem(value, str(exc))
        return prices if len(prices) == len(meters) else None

    def tiers(self, node: Node) -> tuple[Tier, ...] | None:
        items = self.reader.sequence(node, "tiers", of="{above_input_tokens, prices}")
        if items is None:
            return None
        tiers = []
        for i, item in enumerate(items):
            where = f"tiers[{i}]"
            fields = self.reader.mapping(item, where, TIER_FIELDS, TIER_FIELDS)
            if fields is None or len(fields) < len(TIER_FIELDS):
                continue
            threshold = self.reader.text(fields["above_input_tokens"],
                                         f"{where}.above_input_tokens")
            prices = self.prices(fields["prices"], f"{where}.prices")
            if threshold is not None and not threshold.replace("_", "").isdigit():
                self.reader.problem(fields["above_input_tokens"], f"{where}.above_input_tokens: "
                                    "expected a whole number of tokens")
            elif threshold is not None and prices is not None:
                tiers.append(Tier(int(threshold.replace("_", "")), prices))
        return tuple(tiers) if len(tiers) == len(items) else None

    def check_overlaps(self, entries: list[tuple[Node, PriceEntry]]) -> None:
        for i, (node, entry) in enumerate(entries):
            for other_node, other in entries[:i]:
                if entry.id == other.id or entry.overlaps(other):
                    self.reader.problem(node, f"overlaps the entry at line {line(other_node)} "
                                        "(same provider, model, match and kind, overlapping "
                                        "window)")
                    break
