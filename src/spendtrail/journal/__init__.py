"""The journal (docs/gateway.md#the-journal, docs/journal.md) between capture and the ledger:
append-only JSONL spool files by default, or a NATS JetStream stream. Capture only appends;
the ledger reads sealed files, or acknowledged stream messages.

- ``spool.py``: the writer: files sealed by size, age or close, never read while growing.
- ``reader.py``: event files read line by line, keeping each record's file and line.
- ``intents.py``: an attempt's intent, journaled before it goes upstream.
- ``jetstream.py``: the journal on NATS JetStream, for replicas without a disk of their own.
- ``backend.py``: the interface both journals have, and which one a URL chooses.
"""

from spendtrail.journal.reader import JournalLine, read_lines
from spendtrail.journal.spool import Spool

__all__ = ["JournalLine", "Spool", "read_lines"]
