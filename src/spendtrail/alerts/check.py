"""One alerts check, as `spendtrail alerts check`, the daily jobs and `reconcile --daily` run
it: find the conditions, record the new ones (the dedup key makes a repeated check a no-op),
then deliver what is pending."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from spendtrail.alerts.config import AlertsConfig
from spendtrail.alerts.deliver import Result, deliver_pending
from spendtrail.alerts.findings import find
from spendtrail.alerts.model import KINDS, Alert
from spendtrail.alerts.store import record_alerts


@dataclass(frozen=True, slots=True)
class CheckResult:
    found: int  # conditions holding, alerted now or before
    new: list[Alert]
    deliveries: list[Result]


def check_alerts(
    engine: sa.Engine,
    config: AlertsConfig,
    *,
    now: datetime | None = None,
    kinds: Sequence[str] = KINDS,
    deliver: bool = True,
    env: Mapping[str, str] = os.environ,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> CheckResult:
    """Record the alerts of ``kinds`` holding at ``now`` (default: the clock) that were not
    recorded before, then (unless ``deliver`` is false) deliver every pending alert."""
    found = find(engine, config.rules, now or clock(), kinds)
    with engine.begin() as conn:
        new = record_alerts(conn, found, clock())
    deliveries = (
        deliver_pending(engine, config, env=env, sleep=sleep, clock=clock) if (deliver) else []
    )
    return CheckResult(len(found), new, deliveries)
