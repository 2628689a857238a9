"""Which upstream serves a call: the routes table, read from a reviewed YAML file
(docs/gateway.md#routes) or made from the single-upstream options, so there is one path.

A model is matched against the routes in file order, first match wins; a pattern is a
shell-style glob (``claude-*``). A call without a model, or with one no route matches, goes
to the ``default`` upstream; without a default it is refused. Upstream keys are read from
the environment variables the file names and are never part of a repr or message.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spendtrail.errors import SpendtrailError
from spendtrail.yamlfile import Reader, line

# How an upstream is spoken to: OpenAI-compatible (Bearer key) or Anthropic (x-api-key).
APIS = ("openai", "anthropic")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_MEMO_LIMIT = 4096  # models remembered with their upstream


class RoutesError(SpendtrailError):
    """A routes file that cannot be used."""


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str  # the base URL (no trailing /), where its /chat/completions or /messages lives
    key: str = field(repr=False)
    provider: str  # as in the events and the price catalog
    api: str = "openai"
    secret: bytes = field(init=False, repr=False)  # the key, masked out of its answers

    def __post_init__(self) -> None:
        object.__setattr__(self, "secret", self.key.encode())


@dataclass
class Routes:
    upstreams: tuple[Upstream, ...]
    rules: tuple[tuple[str, Upstream], ...]  # (model or pattern, upstream), in file order
    default: Upstream | None
    source: str = "the gateway's options"
    _memo: dict[str, Upstream | None] = field(default_factory=dict, repr=False)

    @classmethod
    def single(cls, url: str, key: str, provider: str, api: str = "openai") -> Routes:
        """The single-upstream options as a table: every call to the one upstream."""
        upstream = Upstream(provider, url.rstrip("/"), key, provider, api)
        return cls((upstream,), (), upstream)

    def pick(self, model: str | None) -> Upstream | None:
        """The upstream for a model; None when no route matches and there is no default."""
        if model is None:
            return self.default
        found = self._memo.get(model, False)
        if found is not False:
            return found
        found = next(
            (upstream for pattern, upstream in self.rules if fnmatch.fnmatchcase(model, pattern)),
            self.default,
        )
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[model] = found
        return found

    def describe(self) -> str:
        """The routes in a line, for the refusal of a model none of them serves."""
        rules = ", ".join(f"{pattern} -> {upstream.name}" for pattern, upstream in self.rules)
        return f"{self.source} ({rules or 'no routes'}; no default)"

    def keys(self) -> list[str]:
        return [upstream.key for upstream in self.upstreams]


def load_routes(path: Path, environ: Mapping[str, str] = os.environ) -> Routes:
    """The routes file, every problem with its line; keys from ``environ``."""
    reader = Reader(str(path), "the routes file", RoutesError)
    root = reader.compose(reader.read_file(path))
    top = reader.document_keys(root, ("upstreams", "routes", "default"), ("upstreams",))
    if top is None:
        raise reader.failure()
    upstreams: dict[str, Upstream] = {}
    listed = reader.mapping(top["upstreams"], "upstreams", None) or {}
    for name, node in listed.items():
        what = f"upstreams.{name}"
        fields = reader.mapping(
            node, what, ("url", "key_env", "provider", "api"), ("url", "key_env")
        )
        if fields is None or "url" not in fields or "key_env" not in fields:
            continue
        url = reader.string(fields["url"], f"{what}.url")
        if url is not None and not url.startswith(("http://", "https://")):
            reader.problem(
                fields["url"], f"{what}.url: expected an http:// or https:// URL, got '{url}'"
            )
        key_env = reader.string(fields["key_env"], f"{what}.key_env")
        key = environ.get(key_env, "") if key_env else ""
        if key_env and not key:
            reader.problem(
                fields["key_env"],
                f"{what}.key_env: {key_env} is not set in the gateway's environment",
            )
        provider = name.lower()
        if "provider" in fields:
            provider = (reader.string(fields["provider"], f"{what}.provider") or "").lower()
        if not _PROVIDER.fullmatch(provider):
            reader.problem(
                fields.get("provider", node),
                f"{what}.provider: expected a name of "
                f"lower-case letters, digits and _.- (as in the price catalog), got "
                f"'{provider}'",
            )
        api = "openai"
        if "api" in fields:
            api = reader.string(fields["api"], f"{what}.api") or "openai"
            if api not in APIS:
                reader.problem(
                    fields["api"], f"{what}.api: expected one of {', '.join(APIS)}, got '{api}'"
                )
        if url and key:
            upstreams[name] = Upstream(name, url.rstrip("/"), key, provider, api)
    if not listed and top["upstreams"] is not None and not reader.problems:
        reader.problem(top["upstreams"], "upstreams: name at least one upstream")

    def upstream_of(node, what: str) -> Upstream | None:
        name = reader.string(node, what)
        if name is not None and name not in listed:
            reader.problem(
                node,
                f"{what}: no upstream named '{name}'; the upstreams are "
                f"{', '.join(listed) or 'none'}",
            )
            return None
        return upstreams.get(name) if name else None

    rules: list[tuple[str, Upstream]] = []
    seen: dict[str, int] = {}
    for index, node in enumerate(
        reader.sequence(top["routes"], "routes", "routes") if "routes" in top else []
    ):
        what = f"routes[{index + 1}]"
        fields = reader.mapping(node, what, ("model", "upstream"), ("model", "upstream"))
        if not fields or "model" not in fields or "upstream" not in fields:
            continue
        pattern = reader.string(fields["model"], f"{what}.model")
        if pattern in seen:
            reader.problem(
                fields["model"],
                f"{what}.model: '{pattern}' is already routed on line {seen[pattern]}",
            )
            continue
        upstream = upstream_of(fields["upstream"], f"{what}.upstream")
        if pattern is not None:
            seen[pattern] = line(fields["model"])
            if upstream is not None:
                rules.append((pattern, upstream))
    default = upstream_of(top["default"], "default") if "default" in top else None
    if reader.problems:
        raise reader.failure()
    return Routes(tuple(upstreams.values()), tuple(rules), default, f"the routes in {path}")
