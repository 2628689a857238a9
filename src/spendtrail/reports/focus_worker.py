"""The second process of a large FOCUS export (``focus._event_sums``): reads a pickled
(database URL, period) on stdin, writes the pickled (sums, summary) of that part of the
period on stdout, or an error's message. The URL travels on stdin so no password shows in
the process list."""

from __future__ import annotations

import pickle
import sys

from spendtrail.errors import SpendtrailError
from spendtrail.reports.focus import worker_sums


def main() -> None:
    url, period = pickle.load(sys.stdin.buffer)
    try:
        result: object = worker_sums(url, period)
    except SpendtrailError as exc:
        result = exc.args[0] if exc.args else str(exc)
    pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main()
