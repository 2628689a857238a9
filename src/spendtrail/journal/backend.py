"""Which journal capture writes to: the local spool (the default) or, with
``SPENDTRAIL_JOURNAL_URL=nats://...``, a NATS JetStream stream (docs/journal.md). Both have
the same methods, so the gateway does not tell them apart."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from spendtrail.events.model import UsageEvent


class Journal(Protocol):
    def append(self, event: UsageEvent) -> None:
        """Record an event; raises OSError when it cannot."""

    def append_intent(self, event: UsageEvent) -> None:
        """Record an attempt's intent before it goes upstream; raises OSError when it cannot."""

    def seal_if_idle(self) -> None: ...

    def close(self) -> None: ...


def open_journal(url: str | None, spool_dir: Path, *, max_age: float, fsync: bool) -> Journal:
    if url:
        from spendtrail.journal.jetstream import JetStreamJournal, parse_journal_url

        return JetStreamJournal(parse_journal_url(url))
    from spendtrail.journal.spool import Spool

    return Spool(spool_dir, max_age=max_age, fsync=fsync)
