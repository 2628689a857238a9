"""What the simulated provider charges, which keys it accepts and how it misbehaves."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from spendtrail.errors import SpendtrailError
from spendtrail.money import parse_decimal

Fault = Literal[
    "error_500", "error_502", "error_503", "error_429",
    "timeout", "cut_stream", "malformed_json", "oversized", "reset",
]
FAULTS: tuple[str, ...] = Fault.__args__  # type: ignore[attr-defined]
ERROR_FAULTS: tuple[str, ...] = tuple(f for f in FAULTS if f.startswith("error_"))


class SimulatorConfigError(SpendtrailError):
    """A simulator setting or price file that cannot be used."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What the simulated provider bills for one model, in USD.

    Token prices are per 1M tokens; ``cached_input`` defaults to ``input``. ``per_call`` makes
    the model per-call priced (per image for image models) and its token prices unused.
    """

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None
    per_call: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "per_call"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or value < 0):
                raise SimulatorConfigError(
                    f"{name}: expected a non-negative Decimal, got {value!r}"
                )

    @property
    def cached_rate(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input


# Illustrative prices for a test double, not a claim about any provider's current list price.
DEFAULT_PRICES: Mapping[str, ModelPrice] = MappingProxyType({
    "gpt-4o-mini": ModelPrice(
        input=Decimal("0.15"), output=Decimal("0.60"), cached_input=Decimal("0.075")),
    "gpt-4o": ModelPrice(
        input=Decimal("2.50"), output=Decimal("10"), cached_input=Decimal("1.25")),
    "gpt-4.1-mini": ModelPrice(
        input=Decimal("0.40"), output=Decimal("1.60"), cached_input=Decimal("0.10")),
    "o4-mini": ModelPrice(
        input=Decimal("1.10"), output=Decimal("4.40"), cached_input=Decimal("0.275")),
    "text-embedding-3-small": ModelPrice(input=Decimal("0.02")),
    "text-embedding-3-large": ModelPrice(input=Decimal("0.13")),
    "dall-e-2": ModelPrice(per_call=Decimal("0.02")),
    "dall-e-3": ModelPrice(per_call=Decimal("0.04")),
})


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Everything the simulator does is decided here; the same config and seed replay the same
    fault and latency sequence for the same sequence of requests."""

    prices: Mapping[str, ModelPrice] = field(default_factory=lambda: DEFAULT_PRICES)
    # API key -> token name. None: accept any non-empty key not starting with "invalid".
    keys: Mapping[str, str] | None = None
    latency_ms: float = 0.0  # before the response head (non-streaming: the whole response)
    jitter_ms: float = 0.0  # uniform extra latency in [0, jitter_ms)
    ttft_ms: float = 0.0  # streams: from the response head to the first chunk
    chunk_delay_ms: float = 0.0  # streams: between chunks
    fault_rates: Mapping[str, float] = field(default_factory=dict)  # Fault -> probability
    seed: int = 0
    timeout_hold_s: float = 30.0  # how long a "timeout" fault holds the request
    cut_after_chunks: int = 3  # a cut stream sends this many data chunks, then closes
    oversized_bytes: int = 8 * 1024 * 1024
    cache_min_tokens: int | None = None  # prompts this long report cached tokens; None: never
    reasoning_prefixes: tuple[str, ...] = ("o1", "o3", "o4")
    stream_chunk_tokens: int = 1
    usage_log: Path | None = None  # CometAPI-format CSV log
    group: str = "default"
    access_token: str | None = None  # enables /api/log/self* with this bearer token

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fault_rates) - set(FAULTS))
        if unknown:
            raise SimulatorConfigError(
                f"fault_rates: unknown fault {unknown[0]!r}; expected one of {', '.join(FAULTS)}"
            )
        if any(not 0 <= rate <= 1 for rate in self.fault_rates.values()):
            raise SimulatorConfigError("fault_rates: each rate must be between 0 and 1")
        if sum(self.fault_rates.values()) > 1 + 1e-9:
            raise SimulatorConfigError("fault_rates: the rates add up to more than 1")
        for name in ("latency_ms", "jitter_ms", "ttft_ms", "chunk_delay_ms", "timeout_hold_s"):
            if getattr(self, name) < 0:
                raise SimulatorConfigError(f"{name}: must not be negative")
        if self.cut_after_chunks < 0 or self.stream_chunk_tokens < 1 or self.oversized_bytes < 1:
            raise SimulatorConfigError(
                "cut_after_chunks must be >= 0, stream_chunk_tokens and oversized_bytes >= 1"
            )
        if self.access_token == "":
            raise SimulatorConfigError("access_token: must not be empty")
        if self.keys is not None and not all(self.keys):
            raise SimulatorConfigError("keys: an API key must not be empty")

    def token_name(self, key: str) -> str | None:
        """The name the log shows for a key, or None if the key is refused."""
        if self.keys is not None:
            return self.keys.get(key)
        if not key or key.startswith("invalid"):
            return None
        return default_token_name(key)


def default_token_name(key: str) -> str:
    """A name that identifies a key without writing it: its last 4 characters when that is at
    most a fifth of the key, as dashboards show keys, else a short digest."""
    if len(key) >= 20:
        return f"key-{key[-4:]}"
    return f"key-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def spread_error_rate(rate: float) -> dict[str, float]:
    """One overall error rate split evenly over the 500/502/503/429 faults."""
    return {fault: rate / len(ERROR_FAULTS) for fault in ERROR_FAULTS} if rate else {}


class _DecimalLoader(yaml.SafeLoader):
    """YAML numbers as Decimal from their text, so a price never passes through float."""


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    return parse_decimal(loader.construct_scalar(node), field=f"line {node.start_mark.line + 1}")


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)
_DecimalLoader.add_constructor("tag:yaml.org,2002:int", _decimal)

_PRICE_FIELDS = ("input", "output", "cached_input", "per_call")


def load_prices(path: Path) -> dict[str, ModelPrice]:
    """Read a price file: ``MODEL: {input, output, cached_input, per_call}`` (see
    docs/simulator.md); raises SimulatorConfigError naming the file and model."""
    try:
        data: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=_DecimalLoader)
    except OSError as exc:
        raise SimulatorConfigError(f"{path}: cannot read the price file: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError, SpendtrailError) as exc:
        raise SimulatorConfigError(f"{path}: not a valid price file: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise SimulatorConfigError(f"{path}: expected a mapping of model name -> prices")
    prices: dict[str, ModelPrice] = {}
    for model, entry in data.items():
        where = f"{path}: model {model!r}"
        if not isinstance(entry, dict) or not entry:
            raise SimulatorConfigError(f"{where}: expected a mapping with {_PRICE_FIELDS}")
        extra = sorted(set(entry) - set(_PRICE_FIELDS))
        if extra:
            raise SimulatorConfigError(
                f"{where}: unknown field {extra[0]!r}; expected {', '.join(_PRICE_FIELDS)}"
            )
        values = {}
        for name, value in entry.items():
            if not isinstance(value, Decimal):
                raise SimulatorConfigError(f"{where}: {name}: expected a number, got {value!r}")
            values[name] = value
        try:
            prices[str(model)] = ModelPrice(**values)
        except SimulatorConfigError as exc:
            raise SimulatorConfigError(f"{where}: {exc}") from None
    return prices


def load_keys(path: Path) -> dict[str, str]:
    """Read a keys file: ``TOKEN_NAME: API_KEY`` lines (YAML), returned as key -> name."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SimulatorConfigError(f"{path}: cannot read the keys file: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SimulatorConfigError(f"{path}: not a valid keys file: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise SimulatorConfigError(f"{path}: expected a mapping of token name -> API key")
    keys: dict[str, str] = {}
    for name, key in data.items():
        if not isinstance(key, str) or not key:
            raise SimulatorConfigError(f"{path}: token {name!r}: expected a non-empty key string")
        if key in keys:
            raise SimulatorConfigError(f"{path}: token {name!r}: key already used by another token")
        keys[key] = str(name)
    return keys
