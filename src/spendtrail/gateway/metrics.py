"""Gateway counters in the Prometheus text format (version 0.0.4), kept in plain dicts:
the gateway is one event loop, so no locks are needed on the request path.

With ``--workers N`` each worker keeps its own counters and writes them, every second, to a
file of its own in a folder the workers share (``dump``); ``/metrics`` on any worker answers
with the sum over that folder (``merged``), so a scrape of the port sees the whole gateway
whichever worker it lands on. A worker that died keeps its file: the sums never go down.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from spendtrail.journal.spool import backlog
from spendtrail.money import from_pico, plain_decimal

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# The counters by shape, for summing the workers' dumps: labelled (a tuple of labels ->
# count), named (one label -> count), and plain totals.
_LABELLED = ("requests", "attempts")
_NAMED = ("rejected", "tokens", "cost_pico")
_TOTALS = ("retries", "unpriced", "quarantined", "journal_errors", "latency_sum")


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)  # (endpoint, status)
        self.attempts: dict[tuple[str, str], int] = defaultdict(int)  # (endpoint, outcome)
        self.retries = 0
        self.rejected: dict[str, int] = defaultdict(int)  # refusal code
        self.tokens: dict[str, int] = defaultdict(int)  # meter
        # currency -> pico-units: an int addition per call, converted only when rendered
        self.cost_pico: dict[str, int] = defaultdict(int)
        self.unpriced = 0
        self.quarantined = 0
        self.journal_errors = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def dump(self, folder: Path) -> None:
        """Write these counters to ``folder/<pid>.json`` (replaced whole: a reader never
        sees half a file)."""
        path = folder / f"{os.getpid()}.json"
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(self._state()))
        partial.replace(path)

    def merged(self, folder: Path) -> tuple[Metrics, int]:
        """These counters plus every other worker's last dump in `folder`, and how many
        workers that is."""
        total = Metrics()
        total._add(self._state())
        workers = 1
        for path in folder.glob("*.json"):
            if path.stem == str(os.getpid()):
                continue
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):  # gone, or being replaced: skipped this once
                continue
            total._add(state)
            workers += 1
        return total, workers

    def _state(self) -> dict[str, Any]:
        """The counters as JSON values (a labelled count as ``[*labels, count]``)."""
        state: dict[str, Any] = {key: [[*labels, count] for labels, count in
                                       getattr(self, key).items()] for key in _LABELLED}
        return state | {key: getattr(self, key) for key in (*_NAMED, *_TOTALS, "latency_counts")}

    def _add(self, state: dict[str, Any]) -> None:
        """Add a worker's ``_state`` to these counters."""
        for key in _LABELLED:
            mine = getattr(self, key)
            for *labels, count in state[key]:
                mine[tuple(labels)] += count
        for key in _NAMED:
            mine = getattr(self, key)
            for name, count in state[key].items():
                mine[name] += count
        for key in _TOTALS:
            setattr(self, key, getattr(self, key) + state[key])
        self.latency_counts = [a + b for a, b in zip(self.latency_counts,
                                                     state["latency_counts"], strict=True)]

    def observe_latency(self, seconds: float) -> None:
        self.latency_sum += seconds
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_counts[index] += 1
                return
        self.latency_counts[-1] += 1

    def render(self, *, spool: Path, snapshot_age: float, keys: int,
               workers: int = 1) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("spendtrail_gateway_requests_total", "counter",
               "Requests answered on /v1, by endpoint and HTTP status.")
        for (endpoint, status), count in sorted(self.requests.items()):
            out.append(f'spendtrail_gateway_requests_total{{endpoint="{_esc(endpoint)}",'
                       f'code="{status}"}} {count}')
        family("spendtrail_gateway_attempts_total", "counter",
               "Attempts forwarded to the provider (one event each), by outcome.")
        for (endpoint, outcome), count in sorted(self.attempts.items()):
            out.append(f'spendtrail_gateway_attempts_total{{endpoint="{_esc(endpoint)}",'
                       f'outcome="{outcome}"}} {count}')
        family("spendtrail_gateway_retries_total", "counter",
               "Attempts that were client retries (attempt > 1).")
        out.append(f"spendtrail_gateway_retries_total {self.retries}")
        family("spendtrail_gateway_rejected_total", "counter",
               "Requests refused before reaching the provider, by error code.")
        for code, count in sorted(self.rejected.items()):
            out.append(f'spendtrail_gateway_rejected_total{{code="{code}"}} {count}')
        family("spendtrail_gateway_tokens_total", "counter", "Metered usage, by meter.")
        for meter, count in sorted(self.tokens.items()):
            out.append(f'spendtrail_gateway_tokens_total{{meter="{meter}"}} {count}')
        family("spendtrail_gateway_cost_total", "counter",
               "Cost of priced calls at capture time, by currency.")
        for currency, pico in sorted(self.cost_pico.items()):
            amount = plain_decimal(from_pico(pico))
            out.append(f'spendtrail_gateway_cost_total{{currency="{currency}"}} {amount}')
        family("spendtrail_gateway_unpriced_total", "counter",
               "Metered calls with no price entry (or an incomplete one).")
        out.append(f"spendtrail_gateway_unpriced_total {self.unpriced}")
        family("spendtrail_gateway_quarantined_total", "counter",
               "Calls served but quarantined by the header policy.")
        out.append(f"spendtrail_gateway_quarantined_total {self.quarantined}")
        family("spendtrail_gateway_journal_errors_total", "counter",
               "Events that could not be written to the journal.")
        out.append(f"spendtrail_gateway_journal_errors_total {self.journal_errors}")
        family("spendtrail_gateway_upstream_latency_seconds", "histogram",
               "Time from forwarding a request to the provider's response headers.")
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), self.latency_counts, strict=True):
            cumulative += count
            out.append(f'spendtrail_gateway_upstream_latency_seconds_bucket{{le="{bound}"}} '
                       f"{cumulative}")
        out.append(f"spendtrail_gateway_upstream_latency_seconds_sum {self.latency_sum:.6f}")
        out.append(f"spendtrail_gateway_upstream_latency_seconds_count {cumulative}")
        files, size, oldest = backlog(spool)
        family("spendtrail_journal_pending_files", "gauge",
               "Spool files not yet ingested into the ledger.")
        out.append(f"spendtrail_journal_pending_files {files}")
        family("spendtrail_journal_pending_bytes", "gauge", "Bytes of spool not yet ingested.")
        out.append(f"spendtrail_journal_pending_bytes {size}")
        family("spendtrail_journal_lag_seconds", "gauge",
               "Age of the oldest spool file not yet ingested (0 when none).")
        out.append(f"spendtrail_journal_lag_seconds {oldest:.3f}")
        family("spendtrail_gateway_snapshot_age_seconds", "gauge",
               "Seconds since keys, registry and prices were last loaded from the ledger.")
        out.append(f"spendtrail_gateway_snapshot_age_seconds {snapshot_age:.3f}")
        family("spendtrail_gateway_keys", "gauge", "Gateway keys loaded (revoked included).")
        out.append(f"spendtrail_gateway_keys {keys}")
        family("spendtrail_gateway_workers", "gauge",
               "Worker processes whose counters are summed here (those that died included).")
        out.append(f"spendtrail_gateway_workers {workers}")
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
