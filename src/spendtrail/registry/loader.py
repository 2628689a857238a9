"""Reading the registry YAML file (schema: docs/registry.md).

``spendtrail.yamlfile`` reads the file's shapes, each problem with its line; this module holds
the registry's own rules: its fields, ids and references. All problems are raised together as
one ``RegistryError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from yaml.nodes import Node

from spendtrail.registry.accounts import ACCOUNT_KINDS, ProviderAccount
from spendtrail.registry.errors import RegistryError
from spendtrail.registry.model import SECTIONS, Application, Registry
from spendtrail.yamlfile import Reader, line, named

DOCUMENT = "the registry"
MAX_ID_LENGTH = 200  # the ledger's owner columns are VARCHAR(200)


@dataclass(frozen=True)
class _Field:
    kind: Literal["id", "text", "ids", "flag"]
    required: bool = True
    refers_to: str | None = None  # the section whose ids the value must name


_ID = _Field("id")
_TEXT = _Field("text")
_OPTIONAL_TEXT = _Field("text", required=False)
_APPLICATION_FIELDS = {
    "id": _ID,
    "name": _TEXT,
    "description": _OPTIONAL_TEXT,
    "business_unit": _Field("id", refers_to="business_units"),
    "cost_center": _Field("id", refers_to="cost_centers"),
    "budget_owner": _Field("id", refers_to="budget_owners"),
    "environments": _Field("ids", refers_to="environments"),
    "workload_classes": _Field("ids", refers_to="workload_classes"),
    "default_environment": _Field("id", required=False),
    "default_workload_class": _Field("id", required=False),
}
FIELDS: dict[str, dict[str, _Field]] = {
    "business_units": {"id": _ID, "name": _TEXT},
    "cost_centers": {
        "id": _ID,
        "name": _TEXT,
        "business_unit": _Field("id", refers_to="business_units"),
    },
    "budget_owners": {"id": _ID, "name": _TEXT, "role": _TEXT, "email": _OPTIONAL_TEXT},
    "environments": {"id": _ID, "description": _OPTIONAL_TEXT,
                     "strict": _Field("flag", required=False)},
    "workload_classes": {"id": _ID, "description": _OPTIONAL_TEXT},
    "applications": _APPLICATION_FIELDS,
    "shared_pool": _APPLICATION_FIELDS,
}
TOP_LEVEL_KEYS = ("effective_from", *SECTIONS, "shared_pool", "provider_accounts")
OPTIONAL_KEYS = ("effective_from", "provider_accounts")
_ACCOUNT_KEYS = ("provider", *ACCOUNT_KINDS, "application", "gateway")
_SINGULAR = {
    "business_units": "business unit",
    "cost_centers": "cost center",
    "budget_owners": "budget owner",
    "environments": "environment",
    "workload_classes": "workload class",
    "applications": "application",
    "shared_pool": "shared pool",
}
# Which list an application's default must be a member of.
_DEFAULTS = {
    "default_environment": "environments",
    "default_workload_class": "workload_classes",
}


@dataclass
class _Entry:
    """One parsed entry: its values, and the node of each value for line numbers."""

    section: str
    node: Node
    label: str
    values: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    items: dict[str, list[tuple[str, Node]]] = field(default_factory=dict)  # "ids" fields


def load_registry(path: str | Path) -> Registry:
    """Read and validate a registry file; raises ``RegistryError`` listing every problem."""
    path = Path(path)
    text = Reader(str(path), DOCUMENT, RegistryError).read_file(path)
    return parse_registry(text, source=str(path))


def parse_registry(text: str, *, source: str = "<registry>") -> Registry:
    reader = Reader(source, DOCUMENT, RegistryError)
    return _Parser(reader).registry(reader.compose(text))


class _Parser:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def registry(self, root: Node | None) -> Registry:
        reader = self.reader
        top = reader.document_keys(
            root, TOP_LEVEL_KEYS, [key for key in TOP_LEVEL_KEYS if key not in OPTIONAL_KEYS]
        )
        if top is None:
            raise reader.failure()

        effective_from = None
        if "effective_from" in top:
            effective_from = reader.instant(top["effective_from"], "effective_from")
        sections: dict[str, list[_Entry]] = {}
        for section in SECTIONS:
            entries = self.section(section, top[section]) if section in top else None
            if entries is not None:  # a missing or malformed list is reported once, not per use
                sections[section] = entries
        pool = None
        if "shared_pool" in top:
            pool = self.entry("shared_pool", top["shared_pool"], "shared pool")
        self.cross_check(sections, pool)
        accounts = ()
        if "provider_accounts" in top:
            owners = [*sections.get("applications", ()), *([pool] if pool else [])]
            accounts = self.accounts(top["provider_accounts"], owners)
        if reader.problems:
            raise reader.failure()
        assert pool is not None  # a missing shared_pool is a problem, raised above
        return Registry(
            **{
                name: {entry.values["id"]: _build(SECTIONS[name], entry) for entry in entries}
                for name, entries in sections.items()
            },
            shared_pool=_build(Application, pool),
            effective_from=effective_from,
            provider_accounts=accounts,
        )

    # --- shapes -----------------------------------------------------------------------------

    def section(self, section: str, node: Node) -> list[_Entry] | None:
        items = self.reader.sequence(node, section, of="entries")
        if items is None:
            return None
        entries = []
        for index, item in enumerate(items):
            entry = self.entry(section, item, f"{section}[{index}]")
            if entry is not None:
                entries.append(entry)
        return entries

    def entry(self, section: str, node: Node, position: str) -> _Entry | None:
        fields = FIELDS[section]
        label = named(node, position, _SINGULAR[section])
        values = self.reader.mapping(
            node, label, fields, [name for name, spec in fields.items() if spec.required]
        )
        if values is None:
            return None
        entry = _Entry(section, node, label)
        for name, value_node in values.items():
            spec = fields[name]
            what = f"{label}: {name}"
            if spec.kind == "ids":
                items = self.id_list(value_node, what)
                if items is not None:
                    entry.items[name] = items
                    entry.values[name] = tuple(value for value, _ in items)
            elif spec.kind == "flag":
                flag = self.reader.flag(value_node, what)
                if flag is not None:
                    entry.values[name] = flag
            else:
                value = self.string(value_node, what, identifier=spec.kind == "id")
                if value is not None:
                    entry.values[name] = value
            entry.nodes[name] = value_node
        return entry

    def id_list(self, node: Node, what: str) -> list[tuple[str, Node]] | None:
        nodes = self.reader.sequence(node, what)
        if nodes is None:
            return None
        if not nodes:
            self.reader.problem(node, f"{what}: must list at least one value")
        items = []
        for item in nodes:
            value = self.string(item, what, identifier=True)
            if value is not None:
                items.append((value, item))
        return items

    def string(self, node: Node, what: str, *, identifier: bool) -> str | None:
        value = self.reader.string(node, what)
        if value is None or not identifier:
            return value
        if value != value.strip():
            self.reader.problem(node, f"{what}: '{value}' must not start or end with spaces")
            return None
        if len(value) > MAX_ID_LENGTH:
            self.reader.problem(node, f"{what}: longer than {MAX_ID_LENGTH} characters")
            return None
        return value

    def accounts(self, node: Node, owners: list[_Entry]) -> tuple[ProviderAccount, ...]:
        """Each entry names a provider, exactly one account (its kind is the key) and exactly
        one owner: an application (or the shared pool) id, or ``gateway: true``. An account
        mapped twice, or a second organization of one provider, is a problem: bills do not
        say which organization a line is from, so two could not be told apart."""
        reader = self.reader
        items = reader.sequence(node, "provider_accounts", of="entries")
        known = {entry.values["id"] for entry in owners if "id" in entry.values}
        found: list[ProviderAccount] = []
        first: dict[tuple[str, str, str], int] = {}
        organizations: dict[str, int] = {}
        for index, item in enumerate(items or ()):
            label = f"provider_accounts[{index}]"
            values = reader.mapping(item, label, _ACCOUNT_KEYS, ["provider"])
            if values is None:
                continue
            kinds = [kind for kind in ACCOUNT_KINDS if kind in values]
            owner_keys = [key for key in ("application", "gateway") if key in values]
            if len(kinds) != 1:
                reader.problem(item, f"{label}: name exactly one account: one of "
                               f"{', '.join(ACCOUNT_KINDS)}"
                               + (f" (got {', '.join(kinds)})" if kinds else ""))
            if len(owner_keys) != 1:
                reader.problem(item, f"{label}: name exactly one owner: application (an "
                               "application or the shared pool id) or gateway: true")
            provider = self.string(values["provider"], f"{label}: provider", identifier=True)
            if len(kinds) != 1 or len(owner_keys) != 1 or provider is None:
                continue
            kind = kinds[0]
            account = self.string(values[kind], f"{label}: {kind}", identifier=True)
            application, gateway = None, False
            if "gateway" in values:
                flag = reader.flag(values["gateway"], f"{label}: gateway")
                gateway = bool(flag)
                if flag is False:
                    reader.problem(values["gateway"], f"{label}: gateway: only true means "
                                   "something; name the owner with application instead")
            else:
                application = self.string(
                    values["application"], f"{label}: application", identifier=True)
                if application is not None and known and application not in known:
                    reader.problem(values["application"], f"{label}: unknown application "
                                   f"'{application}'; known: {', '.join(sorted(known))}")
                    application = None
            if account is None or not (gateway or application):
                continue
            mapped = ProviderAccount(provider, kind, account, application, gateway)
            where = line(item)
            if mapped.key in first:
                reader.problem(item, f"{label}: {provider} {mapped.label} is mapped twice "
                               f"(first on line {first[mapped.key]})")
                continue
            if kind == "organization" and provider in organizations:
                reader.problem(item, f"{label}: a second {provider} organization (the first "
                               f"on line {organizations[provider]}); bills do not say which "
                               "organization a line is from, so map projects, workspaces or "
                               "keys instead")
                continue
            first[mapped.key] = where
            if kind == "organization":
                organizations[provider] = where
            found.append(mapped)
        return tuple(found)

    # --- references -------------------------------------------------------------------------

    def cross_check(self, sections: dict[str, list[_Entry]], pool: _Entry | None) -> None:
        index: dict[str, dict[str, _Entry]] = {}
        for section, entries in sections.items():
            index[section] = {}
            for entry in entries:
                key = entry.values.get("id")
                if key is None:
                    continue
                first = index[section].get(key)
                if first is not None:
                    self.reader.problem(
                        entry.nodes["id"],
                        f"duplicate {_SINGULAR[section]} id '{key}' "
                        f"(first defined on line {line(first.nodes['id'])})",
                    )
                else:
                    index[section][key] = entry
        entries = [entry for section_entries in sections.values() for entry in section_entries]
        owners = [*sections.get("applications", ())]
        if pool is not None:
            entries.append(pool)
            owners.append(pool)
            clash = index.get("applications", {}).get(pool.values.get("id", ""))
            if clash is not None:
                self.reader.problem(
                    pool.nodes["id"],
                    f"shared pool id '{pool.values['id']}' is also an application id "
                    f"(line {line(clash.nodes['id'])}); usage naming it would be ambiguous",
                )
        for entry in entries:
            self.check_references(entry, index)
        for entry in owners:
            self.check_owner(entry, index)

    def check_references(self, entry: _Entry, index: dict[str, dict[str, _Entry]]) -> None:
        for name, spec in FIELDS[entry.section].items():
            if spec.refers_to is None or spec.refers_to not in index:
                continue
            known = index[spec.refers_to]
            pairs = entry.items.get(name) or (
                [(entry.values[name], entry.nodes[name])] if name in entry.values else []
            )
            seen: set[str] = set()
            for value, node in pairs:
                if value in seen:
                    self.reader.problem(node, f"{entry.label}: {name} lists '{value}' twice")
                seen.add(value)
                if value not in known:
                    self.reader.problem(
                        node,
                        f"{entry.label}: unknown {_SINGULAR[spec.refers_to]} '{value}'; "
                        f"known: {_known(known)}",
                    )

    def check_owner(self, entry: _Entry, index: dict[str, dict[str, _Entry]]) -> None:
        """An application (or the pool) must be consistent with itself: its cost center
        belongs to its business unit, and its defaults are among its allowed values."""
        cost_center = index.get("cost_centers", {}).get(entry.values.get("cost_center", ""))
        unit = entry.values.get("business_unit")
        if cost_center is not None and unit is not None:
            owner_unit = cost_center.values.get("business_unit")
            if owner_unit is not None and owner_unit != unit:
                self.reader.problem(
                    entry.nodes["cost_center"],
                    f"{entry.label}: cost center '{cost_center.values['id']}' belongs to "
                    f"business unit '{owner_unit}', not to its business unit '{unit}'",
                )
        for name, allowed_name in _DEFAULTS.items():
            value = entry.values.get(name)
            allowed = entry.values.get(allowed_name)
            if value is not None and allowed is not None and value not in allowed:
                self.reader.problem(
                    entry.nodes[name],
                    f"{entry.label}: {name} '{value}' is not one of its {allowed_name} "
                    f"({', '.join(allowed)})",
                )


def _build(entry_type: type, entry: _Entry) -> Any:
    values = {
        name: tuple(sorted(value)) if isinstance(value, tuple) else value
        for name, value in entry.values.items()
    }
    return entry_type(**values)


def _known(known: dict[str, _Entry], limit: int = 12) -> str:
    names = sorted(known)
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
