"""Alerts (docs/alerts.md): conditions on the books found once per period, recorded with a
dedup key, and delivered to webhooks (Slack-compatible or signed JSON) and e-mail, per scope.
Everything here reads what the capabilities below record; it decides nothing about them.

- ``model.py``: an alert, its kinds and the owner it is about.
- ``rules.py``: the arithmetic rules, pure: the linear forecast, the anomaly baseline.
- ``findings.py``: one check per kind, reading budgets, coverage, reconciliations, prices.
- ``store.py``: alerts (unique on their dedup key) and delivery attempts in the ledger.
- ``config.py``: the reviewed alerts file: channels, scopes, thresholds, retries.
- ``deliver.py``: payloads, signatures, one attempt per channel type, bounded retries.
- ``check.py``: find, record, deliver: what the CLI and the daily jobs call.
"""

from spendtrail.alerts.check import CheckResult, check_alerts
from spendtrail.alerts.config import (
    AlertsConfig,
    AlertsConfigError,
    Channel,
    Retry,
    load_config,
    parse_config,
)
from spendtrail.alerts.deliver import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Result,
    deliver_pending,
    json_payload,
    sign,
    slack_payload,
)
from spendtrail.alerts.model import COMPANY, KINDS, Alert, Owner
from spendtrail.alerts.rules import Rules
from spendtrail.alerts.store import Delivery, list_alerts, list_deliveries

__all__ = [
    "COMPANY",
    "KINDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Alert",
    "AlertsConfig",
    "AlertsConfigError",
    "Channel",
    "CheckResult",
    "Delivery",
    "Owner",
    "Result",
    "Retry",
    "Rules",
    "check_alerts",
    "deliver_pending",
    "json_payload",
    "list_alerts",
    "list_deliveries",
    "load_config",
    "parse_config",
    "sign",
    "slack_payload",
]
