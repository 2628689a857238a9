"""The journal on NATS JetStream (docs/journal.md): events and intents as stream messages, so a
gateway replica keeps nothing on its own disk.

``SPENDTRAIL_JOURNAL_URL=nats://host:port[/STREAM][?consumer=..&max_age=..&intent_horizon=..]``
names the server and the stream. ``JetStreamJournal`` is the writer, with the spool's methods
(the gateway does not tell them apart); each append returns once the server has stored the
message, with the event id (an intent: the id plus ``:intent``) as ``Nats-Msg-Id``, so a
publish retried after a lost acknowledgement is stored once. ``JetStreamReader`` is one member
of the ingesters' durable pull consumer: several share it, each message goes to one of them,
and it is acknowledged only after its ledger commit (unacknowledged, it is delivered again).

The nats client is asyncio-only and its callers are not: each object runs the client on an
event loop of its own thread and waits for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import UsageEvent, encode_event
from spendtrail.journal.intents import encode_intent
from spendtrail.journal.reader import JournalLine

SOURCE_PREFIX = "nats:"  # a ledger reject's or held intent's source: nats:<stream>
DUPLICATE_WINDOW = 120.0  # seconds JetStream remembers a message id
_ACK_TIMEOUT = 2.0  # one publish attempt; it is repeated until `publish_timeout`


class JournalUnavailable(OSError):
    """The journal did not store a record in time (the gateway counts it as a journal error,
    as it does a full disk)."""


@dataclass(frozen=True)
class JetStreamTarget:
    servers: str
    stream: str = "SPENDTRAIL"
    consumer: str = "ingest"
    max_age: float = 7 * 86400.0  # seconds the stream keeps a message, ingested or not
    intent_horizon: float = 3600.0  # longer than any call lasts: see docs/journal.md
    publish_timeout: float = 30.0  # how long an append waits for the server, retrying
    ack_wait: float = 30.0  # a batch not acknowledged this long goes to another ingester

    @property
    def subject(self) -> str:
        return f"spendtrail.journal.{self.stream}"

    @property
    def source(self) -> str:
        return SOURCE_PREFIX + self.stream

    @property
    def display(self) -> str:
        """The URL without credentials, for messages."""
        host = urlsplit(self.servers).hostname or ""
        port = urlsplit(self.servers).port
        return f"nats://{host}{f':{port}' if port else ''}/{self.stream}"


_NUMBERS = ("max_age", "intent_horizon", "publish_timeout", "ack_wait")


def parse_journal_url(url: str) -> JetStreamTarget:
    """A ``nats://`` journal URL; raises SpendtrailError naming the part that is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls"):
        raise SpendtrailError(
            f"SPENDTRAIL_JOURNAL_URL: expected nats://host:port/STREAM, got scheme '{parts.scheme}'"
        )
    if not parts.hostname:
        raise SpendtrailError("SPENDTRAIL_JOURNAL_URL: no host")
    stream = parts.path.strip("/") or JetStreamTarget.stream
    if not stream.replace("-", "").replace("_", "").isalnum():
        raise SpendtrailError(
            f"SPENDTRAIL_JOURNAL_URL: stream name '{stream}': letters, digits, - and _ only"
        )
    options: dict[str, Any] = {}
    for name, values in parse_qs(parts.query).items():
        if name == "consumer":
            options[name] = values[-1]
        elif name in _NUMBERS:
            try:
                options[name] = float(values[-1])
            except ValueError:
                raise SpendtrailError(
                    f"SPENDTRAIL_JOURNAL_URL: {name}: expected seconds, got '{values[-1]}'"
                ) from None
            if options[name] <= 0:
                raise SpendtrailError(f"SPENDTRAIL_JOURNAL_URL: {name} must be positive")
        else:
            raise SpendtrailError(
                f"SPENDTRAIL_JOURNAL_URL: unknown option '{name}' "
                f"(expected consumer, {', '.join(_NUMBERS)})"
            )
    servers = f"{parts.scheme}://{parts.netloc}"
    return JetStreamTarget(servers, stream, **options)


class _Client:
    """A nats connection on an event loop of its own thread, and its stream."""

    def __init__(self, target: JetStreamTarget) -> None:
        try:
            import nats  # optional: pip install 'spendtrail[nats]'
        except ImportError:
            raise SpendtrailError(
                "a nats:// journal needs the nats-py package: pip install 'spendtrail[nats]'"
            ) from None
        self.target = target
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, daemon=True, name="spendtrail-nats"
        )
        self._thread.start()
        try:
            self.nc = self.run(
                nats.connect(
                    target.servers,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    error_cb=_quiet,
                    disconnected_cb=_quiet_cb,
                    reconnected_cb=_quiet_cb,
                ),
                timeout=10,
            )
            self.js = self.nc.jetstream()
            self.run(self._ensure_stream(), timeout=10)
        except Exception as exc:
            self._stop_loop()
            reason = (
                "no JetStream server answered within 10 s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__} {exc}".rstrip()
            )
            raise SpendtrailError(
                f"cannot open the journal at {target.display}: {reason}"
            ) from None

    def run(self, coroutine: Coroutine, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _ensure_stream(self) -> None:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        try:
            await self.js.stream_info(self.target.stream)
        except NotFoundError:
            await self.js.add_stream(
                StreamConfig(
                    name=self.target.stream,
                    subjects=[self.target.subject],
                    storage=StorageType.FILE,
                    max_age=self.target.max_age,
                    duplicate_window=DUPLICATE_WINDOW,
                )
            )

    def close(self) -> None:
        async def close() -> None:
            # Every publish was acknowledged and every ack flushed before returning, so
            # nothing is left to send: close rather than drain (which waits on a pull
            # subscription's timeout).
            await self.nc.close()

        try:
            self.run(close(), timeout=10)
        except Exception:  # closing: the server may be gone
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_the_rest() -> None:  # the client's own tasks, so none is left behind
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_the_rest(), timeout=10)
        except Exception:  # stopping regardless
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _quiet(error: Exception) -> None:
    """Reconnection is automatic; a failed publish or fetch reports what matters."""


async def _quiet_cb() -> None:
    pass


class JetStreamJournal:
    """The gateway's journal on JetStream: ``append`` returns once the record is stored."""

    def __init__(self, target: JetStreamTarget) -> None:
        self.target = target
        self._client = _Client(target)

    def append(self, event: UsageEvent) -> None:
        self._publish(encode_event(event), event.event_id)

    def append_intent(self, event: UsageEvent) -> None:
        # A stream's second intent (with the provider's request id) is a message of its own.
        suffix = ":intent:2" if event.provider_request_id else ":intent"
        self._publish(encode_intent(event), event.event_id + suffix)

    def _publish(self, data: bytes, message_id: str) -> None:
        """Publish until the server acknowledges, for at most ``publish_timeout`` (it may be
        restarting); the same message id each time, so a repeat is not stored twice."""
        deadline = time.monotonic() + self.target.publish_timeout
        headers = {"Nats-Msg-Id": message_id}
        while True:
            try:
                self._client.run(
                    self._client.js.publish(
                        self.target.subject, data, timeout=_ACK_TIMEOUT, headers=headers
                    ),
                    timeout=_ACK_TIMEOUT + 1,
                )
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise JournalUnavailable(
                        f"{self.target.display} did not store {message_id}: "
                        f"{type(exc).__name__} {exc}".rstrip()
                    ) from None
                time.sleep(0.1)

    def seal_if_idle(self) -> None:
        """Nothing to seal: a message is readable once stored."""

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> JetStreamJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the stream and the consumer stand: every message up to ``acknowledged`` (a
    stream sequence) is acknowledged, so committed to the ledger; ``last`` is the stream's
    newest."""

    last: int
    acknowledged: int


class JetStreamReader:
    """One member of the ingesters' durable pull consumer."""

    def __init__(self, target: JetStreamTarget) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self.target = target
        self._client = _Client(target)
        config = ConsumerConfig(
            durable_name=target.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=target.ack_wait,
            max_deliver=-1,
        )
        try:
            self._subscription = self._client.run(
                self._client.js.pull_subscribe(
                    target.subject, durable=target.consumer, stream=target.stream, config=config
                ),
                timeout=10,
            )
        except Exception as exc:
            self._client.close()
            raise SpendtrailError(
                f"cannot join the consumer {target.consumer} of "
                f"{target.display}: {type(exc).__name__} {exc}"
            ) from None

    def fetch(self, batch: int, wait: float) -> list:
        """Up to `batch` messages, waiting at most `wait` seconds for the first; [] if none
        came. Raises on a lost connection (the caller retries later)."""
        from nats.errors import TimeoutError as NoMessages

        try:
            return self._client.run(
                self._subscription.fetch(batch, timeout=wait), timeout=wait + 10
            )
        except NoMessages:
            return []

    def lines(self, messages: list) -> list[JournalLine]:
        """The messages as journal lines: the stream sequence is the line number."""
        source = self.target.source
        return [JournalLine(source, m.metadata.sequence.stream, m.data, True) for m in messages]

    def ack(self, messages: list) -> None:
        """Acknowledge messages whose records are committed (an ack lost on the way only
        makes them come again, and ingest skips what it holds)."""

        async def ack_all() -> None:
            for message in messages:
                await message.ack()
            await self._client.nc.flush(timeout=5)

        if messages:
            self._client.run(ack_all(), timeout=15)

    def release(self, messages: list) -> None:
        """Give messages back unacknowledged (the ledger is down): delivered again soon."""

        async def nak_all() -> None:
            for message in messages:
                await message.nak(delay=1.0)

        if messages:
            self._client.run(nak_all(), timeout=15)

    def progress(self) -> Progress:
        async def read() -> Progress:
            stream = await self._client.js.stream_info(self.target.stream)
            consumer = await self._client.js.consumer_info(self.target.stream, self.target.consumer)
            return Progress(stream.state.last_seq, consumer.ack_floor.stream_seq)

        return self._client.run(read(), timeout=10)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> JetStreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
