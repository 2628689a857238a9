"""Delivering alerts to their channels: the payloads, one attempt per channel type, and the
retries (docs/alerts.md, "Delivery").

- ``slack``: a POST of Slack's incoming-webhook JSON (``text`` plus ``blocks``).
- ``webhook``: a POST of the alert as JSON, signed when the channel names a secret:
  ``X-Spendtrail-Timestamp: <unix seconds>`` and ``X-Spendtrail-Signature: sha256=<hex>``,
  the HMAC-SHA256 of ``<timestamp>.<body>`` under the secret's UTF-8 bytes.
- ``email``: one message over SMTP (optionally STARTTLS and login).

Each (alert, channel) is tried until delivered, a refusal no retry mends (an HTTP 4xx other
than 408/425/429, an SMTP 5xx, a missing secret), or ``retry.attempts`` attempts in all,
waiting ``backoff * 2^(n-1)`` seconds after failed attempt n. Every attempt is a row in
``alert_deliveries``; a later check resumes a pair cut short (its count carries on). What
is stored or shown names the channel's target with tokens masked, never a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import sqlalchemy as sa

from spendtrail.alerts.config import AlertsConfig, Channel
from spendtrail.alerts.model import Alert
from spendtrail.alerts.store import latest_attempts, list_alerts, record_attempt
from spendtrail.redact import PLACEHOLDER, mask_url, redact

SIGNATURE_HEADER = "X-Spendtrail-Signature"
TIMESTAMP_HEADER = "X-Spendtrail-Timestamp"
_RETRY_HTTP = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: delivered or not, what the other side said, and whether trying again
    could change it."""

    delivered: bool
    response: str
    retry: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """Where one (alert, channel) stands after a delivery run."""

    alert_id: int
    channel: str
    status: str  # delivered | failed | retrying (attempts left for a later run)
    attempts: int
    response: str


def json_payload(alert: Alert) -> dict:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "key": alert.key,
        "created_at": None if alert.created_at is None else alert.created_at.isoformat(),
        "period": alert.period,
        "owner": {k: v for k, v in asdict(alert.owner).items() if v},
        "title": alert.title,
        "message": alert.message,
        "details": alert.details,
    }


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict:
    """Slack's incoming-webhook shape: ``text`` for notifications, ``blocks`` to read."""
    fields = [
        {"type": "mrkdwn", "text": f"*{_mrkdwn(name)}*\n{_mrkdwn(value)}"}
        for name, value in list(alert.details.items())[:10]
        if value
    ]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(alert.message)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _mrkdwn(f"spendtrail alert {alert.id} · {alert.kind} · {alert.owner}"),
                }
            ],
        }
    )
    return {"text": _mrkdwn(f"{alert.title}: {alert.message}"), "blocks": blocks}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def email_message(alert: Alert, channel: Channel, now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[spendtrail] {alert.title}"
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.recipients)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain="spendtrail")
    details = "\n".join(f"{name}: {value}" for name, value in alert.details.items())
    message.set_content(
        f"{alert.message}\n\n{details}\n\nowner: {alert.owner}\n"
        f"spendtrail alert {alert.id} ({alert.kind}, {alert.key})\n"
    )
    return message


def send(
    channel: Channel, alert: Alert, *, env: Mapping[str, str], timeout: float, now: datetime
) -> Outcome:
    """One attempt to deliver one alert to one channel."""
    if channel.type == "email":
        return _mail(channel, alert, env, timeout, now)
    url = channel.url or env.get(channel.url_env or "", "")
    if not url:
        return Outcome(False, f"the environment variable {channel.url_env} is not set")
    body = json.dumps(
        slack_payload(alert) if channel.type == "slack" else json_payload(alert)
    ).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "spendtrail-alerts"}
    secrets = [url]
    if channel.secret_env:
        secret = env.get(channel.secret_env)
        if not secret:
            return Outcome(False, f"the environment variable {channel.secret_env} is not set")
        secrets.append(secret)
        stamp = str(int(now.timestamp()))
        headers |= {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body)}
    outcome = _post(url, body, headers, timeout)
    return Outcome(outcome.delivered, _clean(outcome.response, secrets), outcome.retry)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Outcome(True, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        retry = exc.code in _RETRY_HTTP or exc.code >= 500
        return Outcome(False, f"HTTP {exc.code} {exc.reason}", retry)
    except (urllib.error.URLError, OSError) as exc:
        return Outcome(False, f"no answer: {getattr(exc, 'reason', exc)}", retry=True)


def _mail(
    channel: Channel, alert: Alert, env: Mapping[str, str], timeout: float, now: datetime
) -> Outcome:
    password = env.get(channel.password_env) if channel.password_env else None
    if channel.password_env and not password:
        return Outcome(False, f"the environment variable {channel.password_env} is not set")
    message = email_message(alert, channel, now)
    assert channel.smtp_host is not None and channel.sender is not None
    try:
        with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout) as smtp:
            smtp.ehlo()
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if channel.username:
                smtp.login(channel.username, password or "")
            steps = [lambda: smtp.mail(channel.sender)]
            steps += [lambda to=to: smtp.rcpt(to) for to in channel.recipients]
            for step in steps:
                code, reply = step()
                if code not in (250, 251):
                    return _smtp_refusal(code, reply, [password])
            code, reply = smtp.data(message.as_bytes())
            return Outcome(
                True, _clean(f"SMTP {code} {reply.decode(errors='replace')}", [password])
            )
    except smtplib.SMTPResponseException as exc:
        return _smtp_refusal(exc.smtp_code, exc.smtp_error, [password])
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, _clean(f"SMTP: {exc}", [password]), retry=True)


def _smtp_refusal(code: int, reply: bytes | str, secrets: list[str | None]) -> Outcome:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return Outcome(False, _clean(f"SMTP {code} {text}", secrets), retry=code < 500)


def _clean(text: str, secrets: list[str | None]) -> str:
    """A response safe to store: a URL we sent to shown masked, secrets and any credential
    shape replaced."""
    for secret in secrets:
        if secret and secret.startswith(("http://", "https://")):
            text = text.replace(secret, mask_url(secret))
        elif secret:
            text = text.replace(secret, PLACEHOLDER)
    return redact(text)


def deliver_pending(
    engine: sa.Engine,
    config: AlertsConfig,
    *,
    env: Mapping[str, str] = os.environ,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Result]:
    """Deliver every alert of the last ``rules.lookback_days`` to each configured channel
    that receives it and has not delivered it or given up, oldest alert first."""
    if not config.channels:
        return []
    retry = config.retry
    since = clock() - timedelta(days=config.rules.lookback_days)
    with engine.connect() as conn:
        pending = list(reversed(list_alerts(conn, since=since)))
        latest = latest_attempts(conn, [alert.id for alert in pending if alert.id])
    results = []
    for alert in pending:
        assert alert.id is not None
        for channel in config.channels:
            last = latest.get((alert.id, channel.name))
            if not channel.receives(alert) or (last and last.status != "retrying"):
                continue
            attempt = last.attempt if last else 0
            if attempt >= retry.attempts:  # fewer attempts configured since: given up
                continue
            while True:
                attempt += 1
                at = clock()
                outcome = send(
                    channel, alert, env=env, timeout=float(retry.timeout_seconds), now=at
                )
                more = not outcome.delivered and outcome.retry and attempt < retry.attempts
                status = "delivered" if outcome.delivered else "retrying" if more else "failed"
                with engine.begin() as conn:
                    record_attempt(
                        conn,
                        alert.id,
                        channel.name,
                        channel.target,
                        attempt=attempt,
                        at=at,
                        status=status,
                        response=outcome.response,
                    )
                if not more:
                    break
                sleep(retry.wait(attempt))
            results.append(Result(alert.id, channel.name, status, attempt, outcome.response))
    return results
