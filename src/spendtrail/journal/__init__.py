from spendtrail.journal.reader import JournalLine, read_lines
from spendtrail.journal.spool import Spool

__all__ = ["JournalLine", "Spool", "read_lines"]
