"""What the request path reads, loaded from the ledger into memory: keys, the registry
history and the price catalog. A cheap change check every few seconds reloads them when
anything changed, so a revoked key or a new registry applies without a restart and no
request ever waits on the database."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa

from spendtrail.gateway.keys import KeyIndex, load_keys
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import audit_log, gateway_keys, price_entries, registry_versions
from spendtrail.pricing import Catalog
from spendtrail.registry import Registry, RegistryHistory


@dataclass(frozen=True)
class Snapshot:
    keys: KeyIndex
    registry: RegistryHistory
    catalog: Catalog
    marker: tuple
    checked_at: float  # time.monotonic() of the last successful check

    def registry_at(self, when: datetime) -> tuple[int, Registry] | None:
        return self.registry.at(when)


# Every change to keys, registry or prices writes an audit row; the counts also catch rows
# written without one.
_MARKER = sa.select(
    sa.select(sa.func.max(audit_log.c.id)).scalar_subquery(),
    sa.select(sa.func.count()).select_from(gateway_keys).scalar_subquery(),
    sa.select(sa.func.max(registry_versions.c.version)).scalar_subquery(),
    sa.select(sa.func.count()).select_from(price_entries).scalar_subquery(),
)


def load_snapshot(engine: sa.Engine) -> Snapshot:
    with engine.connect() as conn:
        marker = tuple(conn.execute(_MARKER).one())
        return Snapshot(
            keys=KeyIndex(load_keys(conn)),
            registry=load_history(conn),
            catalog=load_catalog(conn),
            marker=marker,
            checked_at=time.monotonic(),
        )


def refresh_snapshot(engine: sa.Engine, current: Snapshot) -> Snapshot:
    """The same snapshot, marked fresh, when nothing changed; else a new one."""
    with engine.connect() as conn:
        marker = tuple(conn.execute(_MARKER).one())
    if marker == current.marker:
        return replace(current, checked_at=time.monotonic())
    return load_snapshot(engine)
