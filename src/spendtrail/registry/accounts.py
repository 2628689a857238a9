"""Provider accounts and their owners: whose bill a provider's bucket line is.

A provider bills in buckets per account (OpenAI per project and API key, Anthropic per
workspace and API key), not per call. The registry's ``provider_accounts`` say whose each
account is: an application (or the shared pool), or the gateway (an account holding the key
of a capture path that serves several owners, whose lines are split over the owners of the
captured calls). A line is claimed by the most specific mapping: its API key, else its
project or workspace, else the provider's organization. Lines on an account no mapping
claims are *unmapped*; lines that name no account at all are the gateway's.

A provider the registry maps no account of is not judged at all (``resolve`` returns None),
so bills of providers nobody mapped are matched as they were before accounts existed.
"""

from __future__ import annotations

from dataclasses import dataclass

# Account kinds, most specific first. A project (OpenAI) and a workspace (Anthropic) are the
# same slot of a bill line (its ``project``), so the two are one kind of claim.
ACCOUNT_KINDS = ("api_key", "project", "workspace", "organization")
_SLOT = {"api_key": "api_key", "project": "project", "workspace": "project",
         "organization": "organization"}
# What a provider calls the bucket a bill line names in its ``project`` (for messages).
_PROJECT_WORD = {"anthropic": "workspace"}


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """One mapped account: ``application`` is its owner, or None for the gateway's."""

    provider: str
    kind: str  # one of ACCOUNT_KINDS
    account: str  # the provider's id: org-..., proj_..., wrkspc_..., key_...
    application: str | None = None
    gateway: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """Two mappings with the same key would claim the same bill lines."""
        return (self.provider, _SLOT[self.kind], self.account)

    @property
    def label(self) -> str:
        """``project proj_X``: how messages name the account."""
        return f"{self.kind.replace('_', ' ')} {self.account}"

    def describe(self) -> str:
        owner = "the gateway" if self.gateway else f"application {self.application}"
        return f"{self.label} → {owner}"


@dataclass(frozen=True, slots=True)
class Claim:
    """Whose a bill line is: ``account`` is the mapping that claims it, None when the line's
    account is unmapped (``label`` names it) or the line names no account (gateway's)."""

    account: ProviderAccount | None
    label: str | None = None

    @property
    def gateway(self) -> bool:
        return self.account.gateway if self.account is not None else self.label is None

    @property
    def owner(self) -> str | None:
        return None if self.account is None else self.account.application


def index_accounts(
    accounts: tuple[ProviderAccount, ...],
) -> dict[str, dict[tuple[str, str, str], ProviderAccount]]:
    """Mappings per provider, by key; the loader has made the keys unique."""
    found: dict[str, dict[tuple[str, str, str], ProviderAccount]] = {}
    for account in accounts:
        found.setdefault(account.provider, {})[account.key] = account
    return found


def resolve(
    by_provider: dict[str, dict[tuple[str, str, str], ProviderAccount]],
    provider: str,
    api_key: str | None,
    project: str | None,
) -> Claim | None:
    """The claim on a bill line of ``provider`` naming ``api_key`` and ``project``; None when
    the registry maps no account of that provider."""
    mapped = by_provider.get(provider)
    if not mapped:
        return None
    for slot, value in (("api_key", api_key), ("project", project)):
        if value is not None and (found := mapped.get((provider, slot, value))) is not None:
            return Claim(found)
    organization = next((a for a in mapped.values() if a.kind == "organization"), None)
    if organization is not None:
        return Claim(organization)
    if project is not None:
        return Claim(None, f"{_PROJECT_WORD.get(provider, 'project')} {project}")
    if api_key is not None:
        return Claim(None, f"api key {api_key}")
    return Claim(None)
