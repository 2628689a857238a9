"""The alerts file (docs/alerts.md): where alerts go and the rules' thresholds, a reviewed
YAML file read through ``spendtrail.yamlfile`` so every problem names its line.

Secrets never sit in the file: a channel names the environment variable that holds its HMAC
key or SMTP password (``secret_env``, ``password_env``), and a webhook URL with a token in it
may come from one too (``url_env``). Channels are scoped: ``owner: {cost_center: CC-100}``
receives only alerts about that owner (and nothing company-wide); no owner, every alert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Literal

from yaml.nodes import MappingNode, Node

from spendtrail.alerts.model import KINDS, OWNER_FIELDS, Alert
from spendtrail.alerts.rules import Rules
from spendtrail.errors import SpendtrailError
from spendtrail.redact import mask_url
from spendtrail.yamlfile import Reader, is_string

DOCUMENT = "the alerts file"
ChannelType = Literal["slack", "webhook", "email"]
CHANNEL_TYPES = ("slack", "webhook", "email")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYS = {
    "slack": ("url", "url_env"),
    "webhook": ("url", "url_env", "secret_env"),
    "email": ("smtp_host", "smtp_port", "starttls", "username", "password_env", "from", "to"),
}
_COMMON = ("name", "type", "owner", "kinds")
_INTEGER_RULES = (
    "lookback_days",
    "forecast_min_days",
    "baseline_days",
    "anomaly_min_history_days",
    "price_cadence_days",
)


class AlertsConfigError(SpendtrailError):
    """An alerts file that cannot be used."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Bounded attempts per alert and channel, the wait doubling after each failure."""

    attempts: int = 4
    backoff_seconds: Decimal = Decimal(1)
    timeout_seconds: Decimal = Decimal(10)

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(self.backoff_seconds * 2 ** (attempt - 1))


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    type: ChannelType
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None  # webhook: the HMAC-SHA256 key's variable
    smtp_host: str | None = None
    smtp_port: int = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    owner: tuple[str, str] | None = None  # (owner field, id)
    kinds: tuple[str, ...] = KINDS

    def receives(self, alert: Alert) -> bool:
        if alert.kind not in self.kinds:
            return False
        if self.owner is None:
            return True
        name, value = self.owner
        return getattr(alert.owner, name) == value

    @property
    def target(self) -> str:
        """Where the channel sends, safe to show and store: tokens masked."""
        if self.type == "email":
            return f"smtp://{self.smtp_host}:{self.smtp_port} to {', '.join(self.recipients)}"
        if self.url_env:
            return f"${self.url_env}"
        return mask_url(self.url or "")


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    rules: Rules = Rules()
    retry: Retry = Retry()
    channels: tuple[Channel, ...] = field(default_factory=tuple)


def load_config(path: Path | str | None) -> AlertsConfig:
    """The alerts file at ``path``; the defaults and no channel when ``path`` is None."""
    if path is None:
        return AlertsConfig()
    reader = Reader(str(path), DOCUMENT, AlertsConfigError)
    return parse_config(reader.read_file(Path(path)), source=str(path))


def parse_config(text: str, *, source: str = "<alerts>") -> AlertsConfig:
    reader = Reader(source, DOCUMENT, AlertsConfigError)
    top = reader.document_keys(reader.compose(text), ("rules", "delivery", "channels"))
    if top is None:
        raise reader.failure()
    rules = _rules(reader, top["rules"]) if "rules" in top else Rules()
    retry = _retry(reader, top["delivery"]) if "delivery" in top else Retry()
    channels: list[Channel] = []
    seen: dict[str, int] = {}
    items = reader.sequence(top["channels"], "channels", "channels") if "channels" in top else []
    for index, node in enumerate(items or [], 1):
        channel = _channel(reader, node, _named(node, index))
        if channel is None:
            continue
        if channel.name in seen:
            reader.problem(
                node,
                f"channel '{channel.name}': the name is used by channel {seen[channel.name]} too",
            )
        seen.setdefault(channel.name, index)
        channels.append(channel)
    if reader.problems:
        raise reader.failure()
    return AlertsConfig(rules, retry, tuple(channels))


def _named(node: Node, index: int) -> str:
    """How messages name a channel: by its name when it has one."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if key.value == "name" and is_string(value) and value.value.strip():
                return f"channel '{value.value}'"
    return f"channel {index}"


def _whole(reader: Reader, node: Node, what: str, least: int = 1) -> int | None:
    value = reader.decimal(node, what, f"a whole number of at least {least}")
    if value is None:
        return None
    if value != value.to_integral_value() or value < least:
        reader.problem(node, f"{what}: expected a whole number of at least {least}, got {value}")
        return None
    return int(value)


def _positive(reader: Reader, node: Node, what: str) -> Decimal | None:
    value = reader.decimal(node, what, "a positive number")
    if value is not None and value <= 0:
        reader.problem(node, f"{what}: expected a positive number, got {value}")
        return None
    return value


def _rules(reader: Reader, node: Node) -> Rules:
    allowed = (*_INTEGER_RULES, "anomaly_factor", "anomaly_min_increase", "unallocated_threshold")
    keys = reader.mapping(node, "rules", allowed) or {}
    values: dict[str, object] = {}
    for name in _INTEGER_RULES:
        if name in keys:
            values[name] = _whole(reader, keys[name], f"rules.{name}")
    for name in ("anomaly_factor", "anomaly_min_increase"):
        if name in keys:
            values[name] = _positive(reader, keys[name], f"rules.{name}")
    if "unallocated_threshold" in keys:
        text = reader.text(keys["unallocated_threshold"], "rules.unallocated_threshold")
        values["unallocated_threshold"] = _percent(reader, keys["unallocated_threshold"], text)
    return Rules(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def _percent(reader: Reader, node: Node, text: str | None) -> Fraction | None:
    if text is None:
        return None
    try:
        value = Fraction(Decimal(text.removesuffix("%").strip())) / 100
    except (ArithmeticError, ValueError):
        value = Fraction(-1)
    if not 0 <= value <= 1:
        reader.problem(
            node,
            f"rules.unallocated_threshold: expected a percent from 0 to 100 such as 5%, got {text}",
        )
        return None
    return value


def _retry(reader: Reader, node: Node) -> Retry:
    keys = reader.mapping(node, "delivery", ("attempts", "backoff_seconds", "timeout_seconds"))
    keys = keys or {}
    values = {
        "attempts": _whole(reader, keys["attempts"], "delivery.attempts")
        if "attempts" in keys
        else None,
        **{
            name: _positive(reader, keys[name], f"delivery.{name}")
            for name in ("backoff_seconds", "timeout_seconds")
            if name in keys
        },
    }
    return Retry(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def _channel(reader: Reader, node: Node, what: str) -> Channel | None:
    before = len(reader.problems)
    keys = reader.mapping(node, what, None, ("name", "type"))
    if keys is None:
        return None
    kind = reader.string(keys["type"], f"{what}: type") if "type" in keys else None
    if kind is not None and kind not in CHANNEL_TYPES:
        reader.problem(
            keys["type"], f"{what}: type '{kind}': expected one of {', '.join(CHANNEL_TYPES)}"
        )
        return None
    if kind is None:
        return None
    keys = reader.mapping(node, what, (*_COMMON, *_KEYS[kind])) or {}
    name = reader.string(keys["name"], f"{what}: name") if "name" in keys else None
    if name is not None and not _NAME.match(name):
        reader.problem(
            keys["name"], f"{what}: name '{name}': expected 1-100 letters, digits, '.', '_' or '-'"
        )
    values: dict[str, object] = {"name": name, "type": kind}
    for env in ("url_env", "secret_env", "password_env"):
        if env in keys and (value := reader.string(keys[env], f"{what}: {env}")) is not None:
            if not _ENV.match(value):
                reader.problem(
                    keys[env],
                    f"{what}: {env}: expected the name of an environment variable, got '{value}'",
                )
            values[env] = value
    if kind in ("slack", "webhook"):
        if ("url" in keys) == ("url_env" in keys):
            reader.problem(node, f"{what}: give exactly one of 'url' and 'url_env'")
        elif "url" in keys and (url := reader.string(keys["url"], f"{what}: url")) is not None:
            if not re.match(r"^https?://[^/\s]+", url):
                reader.problem(
                    keys["url"],
                    f"{what}: url: expected an http:// or https:// URL, got '{mask_url(url)}'",
                )
            values["url"] = url
    else:
        _email(reader, keys, what, node, values)
    if "owner" in keys:
        values["owner"] = _owner(reader, keys["owner"], what)
    if "kinds" in keys:
        values["kinds"] = _kinds(reader, keys["kinds"], what)
    if len(reader.problems) > before:
        return None
    return Channel(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def _email(
    reader: Reader, keys: dict[str, Node], what: str, node: Node, values: dict[str, object]
) -> None:
    for name in ("smtp_host", "from", "to"):
        if name not in keys:
            reader.problem(node, f"{what}: missing required key '{name}'")
    if "smtp_host" in keys:
        values["smtp_host"] = reader.string(keys["smtp_host"], f"{what}: smtp_host")
    if "smtp_port" in keys:
        values["smtp_port"] = _whole(reader, keys["smtp_port"], f"{what}: smtp_port")
    if "starttls" in keys:
        values["starttls"] = reader.flag(keys["starttls"], f"{what}: starttls")
    if "username" in keys:
        values["username"] = reader.string(keys["username"], f"{what}: username")
    if "from" in keys:
        values["sender"] = _address(reader, keys["from"], f"{what}: from")
    if "to" in keys:
        items = reader.sequence(keys["to"], f"{what}: to", "e-mail addresses") or []
        found = [_address(reader, item, f"{what}: to") for item in items]
        if not items:
            reader.problem(keys["to"], f"{what}: to: expected at least one address")
        values["recipients"] = tuple(a for a in found if a)


def _address(reader: Reader, node: Node, what: str) -> str | None:
    value = reader.string(node, what)
    if value is not None and not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", value):
        reader.problem(node, f"{what}: expected an e-mail address, got '{value}'")
        return None
    return value


def _owner(reader: Reader, node: Node, what: str) -> tuple[str, str] | None:
    before = len(reader.problems)
    keys = reader.mapping(node, f"{what}: owner", OWNER_FIELDS)
    if not keys:
        if keys is not None and len(reader.problems) == before:
            reader.problem(node, f"{what}: owner: expected one of {', '.join(OWNER_FIELDS)}")
        return None
    if len(keys) > 1:
        reader.problem(node, f"{what}: owner: expected one owner, got {', '.join(keys)}")
        return None
    ((name, value_node),) = keys.items()
    value = reader.string(value_node, f"{what}: owner.{name}")
    return None if value is None else (name, value)


def _kinds(reader: Reader, node: Node, what: str) -> tuple[str, ...] | None:
    items = reader.sequence(node, f"{what}: kinds", "alert kinds")
    if items is None:
        return None
    kinds = []
    for item in items:
        kind = reader.string(item, f"{what}: kinds")
        if kind is not None and kind not in KINDS:
            reader.problem(
                item, f"{what}: kinds: unknown kind '{kind}'; expected any of {', '.join(KINDS)}"
            )
        elif kind is not None:
            kinds.append(kind)
    return tuple(kinds)
