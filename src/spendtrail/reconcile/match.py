"""The matcher: a bill's lines against the ledger's events for one period and provider.

Set-based, so it scales with the database rather than with Python memory: the SQL groups
and joins (bill lines by request id, events by ``provider_request_id``, each event with its
current cost entry) and Python walks the joined rows as they stream, keeping only totals
per owner and the differences.

- **request** method (the bill has provider request ids, e.g. CometAPI logs): the bill's
  lines are grouped by request id (a consume row, its refund, an error row) and each group
  is joined to the event carrying that id.
- **aggregate** method (OpenAI/Anthropic/FOCUS buckets): bill and ledger are summed per
  (day, model) and the sums compared; a bill without models is compared per day.
  Where the registry maps the billing provider's accounts (``registry.accounts``), each
  (day, model) is first divided by account: an owner's own, the gateway's, or unmapped;
  usage on an account no captured call matches is ``billed_outside_gateway``.

An ``interrupted`` event (the gateway stopped before the provider answered: owner and model
known, usage unknown) is matched to its bill line by request id when the gateway learnt it,
else, in the request method, to a bill line no event carries, of the same model, billed
within ``INTERRUPTED_WINDOW`` of its start. Matched, it is priced from the bill (its logged
amount is the billed one) and listed as kind ``interrupted``; unmatched, it stays unpriced.

Both sides are restricted to the period: bill lines by the UTC day their period starts,
events by their UTC day. Amounts are integer pico-units of the bill's currency.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import msgspec
import sqlalchemy as sa

from spendtrail.events import INTERRUPTED, Usage
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.retention import require_raw_rows
from spendtrail.ledger.schema import bill_lines, cost_entries, events
from spendtrail.periods import Period
from spendtrail.registry import Claim, Registry

DIFFERENCE_KINDS = (
    "in_ledger_not_billed", "billed_not_in_ledger", "duplicate_charge", "token_mismatch",
    "price_mismatch", "refund", "error_billed", "interrupted", "rejected_row",
    "billed_outside_gateway",
)
UNATTRIBUTED = "(unattributed)"
UNMAPPED = "(unmapped account)"
# The UsageEvent.source of calls served by a proxy that holds the provider key for several
# owners (the gateway, a LiteLLM proxy whose spend logs were imported): they are billed on
# the proxy's accounts, not on their owners' own.
PROXY_SOURCES = ("gateway", "litellm")
QUARANTINED = "(quarantined)"
UNTAGGED = "(untagged)"
NOT_SPEND = ("topup",)  # balance purchases are not spend
UNPRICED = ("unpriced", "incomplete")
# One CometAPI quota unit (1/500,000 USD): the log rounds each call to whole units and bills
# at least one, so a per-request amount within one unit of the ledger's price is the same.
REQUEST_RESOLUTION_PICO = 2_000_000
# How long after an interrupted call started its bill line may be stamped (the gateway's
# default --read-timeout), and how much earlier (clocks differ).
INTERRUPTED_WINDOW = timedelta(minutes=10)
CLOCK_SKEW = timedelta(minutes=1)

_usage = msgspec.json.Decoder(Usage)
_STREAM = {"yield_per": 10_000}  # server-side cursor on PostgreSQL: rows stream, not load


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str
    detail: str
    day: date | None = None
    provider_request_id: str | None = None
    event_id: str | None = None
    bill_line: int | None = None
    model: str | None = None
    key_name: str | None = None
    owner: str | None = None
    logged_pico: int | None = None
    billed_pico: int | None = None
    logged_tokens: str | None = None
    billed_tokens: str | None = None


@dataclass
class OwnerTotals:
    owner: str
    events: int = 0
    logged_pico: int = 0
    billed_pico: int = 0


@dataclass
class Matching:
    method: str  # request | aggregate
    currency: str
    logged_pico: int = 0
    consumed_pico: int = 0  # billed: charges (consume / usage rows)
    refunded_pico: int = 0  # billed: refunds (negative)
    error_pico: int = 0  # billed: error rows
    outside_pico: int = 0  # billed: on accounts no captured call matches (explained)
    events: int = 0
    unpriced_events: int = 0  # interrupted events count once matching leaves them unpriced
    interrupted_events: int = 0
    interrupted_matched: int = 0
    foreign_currency_events: int = 0  # priced in a currency other than the bill's
    foreign_currency_lines: int = 0
    bill_lines: int = 0  # spend lines (not top-ups) in the period
    priced_lines: int = 0  # of which carry an amount (usage reports carry none)
    matched: int = 0
    ledger_days: tuple[date, date] | None = None
    bill_days: tuple[date, date] | None = None
    owners: dict[str, OwnerTotals] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    @property
    def billed_pico(self) -> int:
        return self.consumed_pico + self.refunded_pico + self.error_pico

    def owner(self, name: str) -> OwnerTotals:
        found = self.owners.get(name)
        if found is None:
            found = self.owners[name] = OwnerTotals(name)
        return found


def match_bill(
    conn: sa.Connection,
    import_id: int,
    provider: str,
    period: Period,
    *,
    tolerance: Decimal,
    on_progress: Callable[[int], None] | None = None,
) -> Matching:
    """Match bill `import_id` against `provider`'s events in `period`. `tolerance` (a
    fraction) applies per (day, model) group in the aggregate method."""
    require_raw_rows(conn, period, "reconciliation")
    b = bill_lines.c
    in_bill = sa.and_(b.import_id == import_id, b.day >= period.start, b.day < period.end)
    currency = _bill_currency(conn, in_bill)
    has_ids = conn.execute(
        sa.select(sa.literal(1)).where(in_bill, b.provider_request_id.is_not(None)).limit(1)
    ).first()
    result = Matching("request" if has_ids else "aggregate", currency)
    _bill_totals(conn, in_bill, result)
    _ledger_totals(conn, provider, period, result)
    if has_ids:
        _match_requests(conn, import_id, in_bill, provider, period, result, on_progress)
    else:
        _match_aggregates(conn, in_bill, provider, period, tolerance, result)
    result.unpriced_events += result.interrupted_events - result.interrupted_matched
    return result


# -- the two sides' totals -------------------------------------------------------------------


def _bill_currency(conn: sa.Connection, in_bill) -> str:
    b = bill_lines.c
    top = conn.execute(
        sa.select(b.currency).where(in_bill, b.currency.is_not(None))
        .group_by(b.currency).order_by(sa.func.count().desc(), b.currency).limit(1)
    ).scalar()
    return top or "USD"


def _bill_totals(conn: sa.Connection, in_bill, result: Matching) -> None:
    b = bill_lines.c
    query = (
        sa.select(b.charge_kind, b.currency, sa.func.count(), sa.func.count(b.amount_pico),
                  sa.func.sum(b.amount_pico), sa.func.min(b.day), sa.func.max(b.day))
        .where(in_bill).group_by(b.charge_kind, b.currency)
    )
    for kind, currency, count, priced, total, first, last in conn.execute(query):
        amount = _int(total) or 0
        result.bill_days = _span(result.bill_days, first, last)
        if kind in NOT_SPEND:
            continue
        result.bill_lines += count
        result.priced_lines += priced
        if currency is not None and currency != result.currency:
            result.foreign_currency_lines += count
            continue
        if kind == "refund":
            result.refunded_pico += amount
        elif kind == "error":
            result.error_pico += amount
        else:
            result.consumed_pico += amount


def _owner_column():
    e = events.c
    return sa.case(
        (e.allocation_status == "quarantined", sa.literal(QUARANTINED)),
        else_=sa.func.coalesce(e.application, sa.literal(UNTAGGED)),
    ).label("owner")


def _current_cost():
    """Join condition: an event with its newest cost entry (repricing adds revisions)."""
    e, c = events.c, cost_entries.c
    return sa.and_(c.event_id == e.event_id, is_current())


def _in_period(provider: str, period: Period):
    e = events.c
    return sa.and_(e.provider == provider, e.day >= period.start, e.day < period.end)


def _ledger_totals(conn: sa.Connection, provider: str, period: Period, result: Matching) -> None:
    e, c = events.c, cost_entries.c
    owner = _owner_column()
    interrupted = (e.outcome == INTERRUPTED).label("interrupted")
    query = (
        sa.select(owner, c.currency, c.status, interrupted, sa.func.count(),
                  sa.func.sum(c.amount_pico), sa.func.min(e.day), sa.func.max(e.day))
        .select_from(events.join(cost_entries, _current_cost()))
        .where(_in_period(provider, period))
        .group_by(owner, c.currency, c.status, interrupted)
    )
    for name, currency, status, stopped, count, total, first, last in conn.execute(query):
        amount = _int(total) or 0
        result.ledger_days = _span(result.ledger_days, first, last)
        result.events += count
        if stopped:  # unpriced unless matching prices it from the bill
            result.interrupted_events += count
        elif status in UNPRICED:
            result.unpriced_events += count
        totals = result.owner(name)
        totals.events += count
        if currency is not None and currency != result.currency and amount:
            result.foreign_currency_events += count
            continue
        totals.logged_pico += amount
        result.logged_pico += amount


def _int(value) -> int | None:
    """SQL sums come back as Decimal on PostgreSQL (SUM of BIGINT is NUMERIC)."""
    return None if value is None else int(value)


def _span(span: tuple[date, date] | None, first: date, last: date) -> tuple[date, date]:
    return (first, last) if span is None else (min(span[0], first), max(span[1], last))


# -- request by request ----------------------------------------------------------------------


def _charges_sum(column):
    """The sum of `column` over a group's charges (its lines that are not refunds or errors)."""
    charge = bill_lines.c.charge_kind.not_in(("refund", "error"))
    return sa.func.sum(sa.case((charge, column), else_=0))


def _match_requests(
    conn: sa.Connection, import_id: int, in_bill, provider: str, period: Period,
    result: Matching, on_progress: Callable[[int], None] | None,
) -> None:
    b, e, c = bill_lines.c, events.c, cost_entries.c
    spend = sa.and_(in_bill, b.charge_kind.not_in(NOT_SPEND),
                    sa.or_(b.currency.is_(None), b.currency == result.currency))
    groups = (
        sa.select(
            b.provider_request_id.label("rid"),
            _charges_sum(b.amount_pico).label("charged"),
            _charges_sum(sa.literal(1)).label("charges"),
            sa.func.sum(b.amount_pico).label("net"),
            _charges_sum(b.input_tokens).label("input_tokens"),
            _charges_sum(b.output_tokens).label("output_tokens"),
            sa.func.min(b.line).label("line"), sa.func.min(b.day).label("day"),
            sa.func.min(b.period_start).label("at"),
            sa.func.max(b.model).label("model"), sa.func.max(b.key_name).label("key_name"),
        )
        .where(spend, b.provider_request_id.is_not(None))
        .group_by(b.provider_request_id)
        .subquery("groups")
    )
    g = groups.c
    # The join is on the request id alone: with the period in the join condition, PostgreSQL
    # may intersect the whole period's day index once per bill line. The event's day is
    # checked in Python instead.
    joined = (
        sa.select(*g, e.event_id, e.day, _owner_column(), e.usage, c.amount_pico, c.status,
                  e.outcome)
        .select_from(
            groups.outerjoin(events, sa.and_(e.provider_request_id == g.rid,
                                             e.provider == provider))
            .outerjoin(cost_entries, _current_cost())
        )
    )
    seen = 0
    unmatched: list[_Unmatched] = []
    for row in conn.execute(joined, execution_options=_STREAM):
        _compare_request(row, period, result, unmatched)
        seen += 1
        if on_progress is not None and seen % 10_000 == 0:
            on_progress(10_000)
    if on_progress is not None:
        on_progress(seen % 10_000)
    by_time = _match_interrupted_by_time(conn, provider, period, result, unmatched)

    # Refund and error rows are listed one by one, as the bill shows them.
    listed = sa.select(
        b.line, b.day, b.charge_kind, b.provider_request_id, b.model, b.key_name, b.amount_pico
    ).where(spend, b.charge_kind.in_(("refund", "error")))
    for line, day, kind, rid, model, key, amount in conn.execute(listed.order_by(b.line)):
        what = "refund" if kind == "refund" else "error row"
        result.differences.append(Difference(
            "refund" if kind == "refund" else "error_billed",
            f"{what} in the bill for request {rid or '(none)'}", day=day,
            provider_request_id=rid, bill_line=line, model=model, key_name=key,
            billed_pico=amount or 0))

    # Bill lines without a request id cannot be matched: their amounts are unattributed, and
    # each charge among them is listed (refunds and errors are listed above).
    orphan = sa.select(b.line, b.day, b.charge_kind, b.model, b.key_name, b.amount_pico).where(
        spend, b.provider_request_id.is_(None), b.amount_pico != 0)
    for line, day, kind, model, key, amount in conn.execute(orphan.order_by(b.line)):
        result.owner(UNATTRIBUTED).billed_pico += amount
        if kind not in ("refund", "error"):
            result.differences.append(Difference(
                "billed_not_in_ledger", f"{kind} line without a request id",
                day=day, bill_line=line, model=model, key_name=key,
                billed_pico=amount))

    # Billed on any day of this bill counts as billed: a request the provider stamped on the
    # other side of a period boundary is not "unbilled" (its cost still shows in the variance).
    # Without a day condition the lookup is one probe of the (import, request id) index.
    billed = sa.select(sa.literal(1)).where(
        b.import_id == import_id, b.provider_request_id == e.provider_request_id,
        b.charge_kind.not_in(NOT_SPEND)).exists()
    unbilled = (
        sa.select(e.event_id, e.day, e.provider_request_id, e.model_served, e.model_requested,
                  _owner_column(), e.usage, c.amount_pico)
        .select_from(events.join(cost_entries, _current_cost()))
        .where(_in_period(provider, period), c.status != "no_usage", ~billed)
        .order_by(e.day, e.event_id)
    )
    for event_id, day, rid, served, requested, owner, usage, amount in (
        conn.execute(unbilled, execution_options=_STREAM)
    ):
        if event_id in by_time:
            continue
        result.differences.append(Difference(
            "in_ledger_not_billed",
            "no bill line for this request" if rid else "the event has no provider request id",
            day=day, provider_request_id=rid, event_id=event_id,
            model=served or requested, owner=owner, logged_pico=amount,
            logged_tokens=_tokens(_usage.decode(usage))))


@dataclass(slots=True)
class _Unmatched:
    """A charged bill group no event carries: a candidate for an interrupted event."""

    index: int  # of its billed_not_in_ledger difference
    at: datetime
    model: str | None
    net: int


def _compare_request(
    row: sa.Row, period: Period, result: Matching, unmatched: list[_Unmatched]
) -> None:
    """One request id's bill group against its event (if any). Runs per bill line at scale,
    so a Difference is only built when there is one."""
    (rid, charged, charges, net, input_tokens, output_tokens, line, day, at, model, key,
     event_id, event_day, owner, usage, amount, status, outcome) = row
    net, charges = _int(net) or 0, _int(charges) or 0
    if event_id is None or event_day not in period:
        result.owner(UNATTRIBUTED).billed_pico += net
        if charges:
            where = "no ledger event carries this request id" if event_id is None else (
                f"its ledger event is on {event_day}, outside the period")
            if event_id is None:
                unmatched.append(_Unmatched(len(result.differences), _utc(at), model, net))
            if charges > 1:
                where += f" (and it is charged {charges} times)"
            result.differences.append(Difference(
                "billed_not_in_ledger", where,
                day=day, provider_request_id=rid, bill_line=line, model=model,
                key_name=key, billed_pico=_int(charged),
                billed_tokens=_pair(input_tokens, output_tokens)))
        return
    result.matched += 1
    result.owner(owner).billed_pico += net
    if outcome == INTERRUPTED and charges:
        _price_interrupted(result, owner, _int(charged))
        result.differences.append(Difference(
            "interrupted", "the gateway stopped before the answer; priced from the bill",
            day=day, provider_request_id=rid, event_id=event_id, bill_line=line, model=model,
            key_name=key, owner=owner, logged_pico=_int(charged), billed_pico=_int(charged),
            billed_tokens=_pair(input_tokens, output_tokens)))
        return
    meters = _usage.decode(usage)
    if not charges:
        if (amount or 0) <= REQUEST_RESOLUTION_PICO:
            return
        kind, detail = "in_ledger_not_billed", "the bill has only refund or error rows for it"
    elif charges > 1:
        kind, detail = "duplicate_charge", f"the request id is charged {charges} times"
    elif (input_tokens or 0) != meters.input_tokens or (output_tokens or 0) != (
        meters.output_tokens
    ):
        kind, detail = "token_mismatch", "input/output tokens differ"
    elif amount is None:
        kind, detail = "price_mismatch", f"same tokens; the ledger has no price ({status})"
    elif abs(charged - amount) > REQUEST_RESOLUTION_PICO:
        kind, detail = "price_mismatch", "same tokens, different amount"
    else:
        return
    result.differences.append(Difference(
        kind, detail, day=day, provider_request_id=rid, event_id=event_id,
        bill_line=line, model=model, key_name=key, owner=owner, logged_pico=amount,
        billed_pico=_int(charged), logged_tokens=_tokens(meters),
        billed_tokens=_pair(input_tokens, output_tokens) if charges else None))


def _price_interrupted(result: Matching, owner: str, charged: int) -> None:
    """An interrupted event's logged amount is what the bill charged for it."""
    result.interrupted_matched += 1
    result.owner(owner).logged_pico += charged
    result.logged_pico += charged


def _match_interrupted_by_time(
    conn: sa.Connection, provider: str, period: Period, result: Matching,
    unmatched: list[_Unmatched],
) -> set[str]:
    """Interrupted events the gateway never learnt a request id for, each matched to the
    earliest bill group of its model that no event carries, stamped within the window of its
    start; returns the ids of the events matched. Calls of one model by several owners in
    the same minutes can swap owners: the difference says it was matched by time."""
    e = events.c
    if not unmatched or result.interrupted_events == result.interrupted_matched:
        return set()
    stopped = conn.execute(
        sa.select(e.event_id, e.started_at, e.model_requested, _owner_column())
        .where(_in_period(provider, period), e.outcome == INTERRUPTED,
               e.provider_request_id.is_(None))
        .order_by(e.started_at, e.event_id)
    ).all()
    free: dict[str | None, list[_Unmatched]] = defaultdict(list)  # per model, by time
    for group in sorted(unmatched, key=lambda u: u.at):
        free[group.model].append(group)
    matched: set[str] = set()
    for event_id, started_at, model, owner in stopped:
        started_at = _utc(started_at)
        candidates = free.get(model, [])
        at = bisect_left(candidates, started_at - CLOCK_SKEW, key=lambda u: u.at)
        if at == len(candidates) or candidates[at].at > started_at + INTERRUPTED_WINDOW:
            continue
        group = candidates.pop(at)
        matched.add(event_id)
        billed = result.differences[group.index]
        result.owner(UNATTRIBUTED).billed_pico -= group.net
        result.owner(owner).billed_pico += group.net
        result.matched += 1
        _price_interrupted(result, owner, billed.billed_pico or 0)
        result.differences[group.index] = Difference(
            "interrupted", "the gateway stopped before the answer and never learnt the "
            "request id; matched by model and time, priced from the bill",
            day=billed.day, provider_request_id=billed.provider_request_id,
            event_id=event_id, bill_line=billed.bill_line, model=billed.model,
            key_name=billed.key_name, owner=owner, logged_pico=billed.billed_pico,
            billed_pico=billed.billed_pico, billed_tokens=billed.billed_tokens)
    rest = result.owners.get(UNATTRIBUTED)
    if rest is not None and not (rest.events or rest.logged_pico or rest.billed_pico):
        del result.owners[UNATTRIBUTED]  # all it held were interrupted calls
    return matched


def _utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive (UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _tokens(usage: Usage) -> str:
    return _pair(usage.input_tokens, usage.output_tokens)


def _pair(input_tokens, output_tokens) -> str:
    return f"{_int(input_tokens) or 0}/{_int(output_tokens) or 0}"


# -- aggregates per (day, model) -------------------------------------------------------------


@dataclass
class _Group:
    amount: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    line: int | None = None
    key_name: str | None = None

    def add(self, amount, input_tokens, output_tokens, line, key_name) -> None:
        """Sums, keeping None where the bill has no figure (cost-only or usage-only)."""
        self.amount = _add(self.amount, amount)
        self.input_tokens = _add(self.input_tokens, input_tokens)
        self.output_tokens = _add(self.output_tokens, output_tokens)
        self.line = line if self.line is None else min(self.line, line)
        self.key_name = max(filter(None, (self.key_name, key_name)), default=None)


def _add(total: int | None, value) -> int | None:
    value = _int(value)
    return total if value is None else (total or 0) + value


@dataclass
class _Outside:
    """An account's lines no captured call matches, summed over the period: its own line."""

    owner: str | None  # the application it is mapped to; None: unmapped
    label: str  # project proj_X, workspace ws_Z, api key key_K
    bill: _Group = field(default_factory=_Group)
    days: set[date] = field(default_factory=set)
    models: set[str] = field(default_factory=set)


def _match_aggregates(
    conn: sa.Connection, in_bill, provider: str, period: Period, tolerance: Decimal,
    result: Matching,
) -> None:
    """Per (day, model): lines on an account the registry maps to an owner are compared with
    that owner's calls not served by a proxy (``PROXY_SOURCES``): the SDK hook's, the
    OpenTelemetry spans', which is how an owner's own key is used; with none, they are
    billed outside the gateway. Lines on an unmapped account are outside the gateway,
    unmapped. The rest (the gateway's accounts, lines naming no account, every line of a
    provider whose accounts are not mapped) is compared with the remaining events and split
    over their owners by logged cost."""
    b, e, c = bill_lines.c, events.c, cost_entries.c
    by_model = conn.execute(
        sa.select(sa.literal(1)).where(in_bill, b.model.is_not(None)).limit(1)).first()
    bill_model = b.model if by_model else sa.literal("")
    spend = sa.and_(in_bill, b.charge_kind.not_in(NOT_SPEND),
                    sa.or_(b.currency.is_(None), b.currency == result.currency))
    claims = _Claims(conn)
    shared: dict[tuple, _Group] = {}  # (day, model) -> the gateway's lines
    owned: dict[tuple, dict[str, _Group]] = defaultdict(dict)  # -> owner -> its accounts' lines
    accounts: dict[tuple, set[str]] = defaultdict(set)  # (day, model, owner) -> account labels
    unmapped: dict[tuple, dict[str, _Group]] = defaultdict(dict)  # -> label -> lines
    query = (
        sa.select(b.day, bill_model.label("model"), b.provider, b.key_name, b.project,
                  sa.func.sum(b.amount_pico), sa.func.sum(b.input_tokens),
                  sa.func.sum(b.output_tokens), sa.func.min(b.line))
        .where(spend).group_by(b.day, bill_model, b.provider, b.key_name, b.project)
    )
    for day, model, biller, key, project, amount, input_tokens, output_tokens, line in (
        conn.execute(query)
    ):
        figures = (amount, input_tokens, output_tokens, line, key or project)
        claim = claims.at(day, biller, key, project)
        if claim is None or claim.gateway:
            shared.setdefault((day, model), _Group()).add(*figures)
        elif claim.owner is not None:
            owned[(day, model)].setdefault(claim.owner, _Group()).add(*figures)
            accounts[(day, model, claim.owner)].add(claim.account.label)
        else:
            unmapped[(day, model)].setdefault(claim.label, _Group()).add(*figures)

    # Ledger side per (day, model, owner, served by a proxy or not); tokens need each
    # event's usage, so events stream.
    model = sa.func.coalesce(e.model_served, e.model_requested, sa.literal(""))
    logged: dict[tuple, dict[tuple[str, bool], _Group]] = defaultdict(dict)
    query = (
        sa.select(e.day, model if by_model else sa.literal(""), _owner_column(),
                  e.source.in_(PROXY_SOURCES), e.usage, c.amount_pico, c.currency)
        .select_from(events.join(cost_entries, _current_cost()))
        .where(_in_period(provider, period), c.status != "no_usage")
    )
    for day, event_model, owner, via_proxy, usage, amount, currency in (
        conn.execute(query, execution_options=_STREAM)
    ):
        group = logged[(day, event_model)].setdefault((owner, bool(via_proxy)),
                                                      _Group(0, 0, 0))
        meters = _usage.decode(usage)
        group.input_tokens += meters.input_tokens
        group.output_tokens += meters.output_tokens
        if currency == result.currency and amount:
            group.amount += amount

    outside: dict[tuple[str | None, str], _Outside] = {}
    keys = shared.keys() | owned.keys() | unmapped.keys() | logged.keys()
    for key in sorted(keys, key=lambda k: (k[0], k[1] or "")):
        day, model_name = key
        common = {"day": day, "model": model_name or None}
        rest = dict(logged.get(key, {}))
        for owner, bill in sorted(owned.get(key, {}).items()):
            mine = rest.pop((owner, False), None)
            if mine is None:
                for label in sorted(accounts[(*key, owner)]):
                    _outside(outside, owner, label, bill, day, model_name)
                result.owner(owner).billed_pico += bill.amount or 0
                continue
            result.matched += 1
            result.owner(owner).billed_pico += bill.amount or 0
            _compare_group(result, bill, mine, tolerance, owner=owner, **common)
        for label, bill in sorted(unmapped.get(key, {}).items()):
            _outside(outside, None, label, bill, day, model_name)
            result.owner(UNMAPPED).billed_pico += bill.amount or 0
        bill = shared.get(key)
        if bill is None:
            if rest:
                ledger = _total(rest)
                result.differences.append(Difference(
                    "in_ledger_not_billed", "the bill has nothing on this day for this model",
                    logged_pico=ledger.amount, logged_tokens=_pair(ledger.input_tokens,
                                                                   ledger.output_tokens),
                    **common))
            continue
        if not rest:
            result.owner(UNATTRIBUTED).billed_pico += bill.amount or 0
            result.differences.append(Difference(
                "billed_not_in_ledger", "no ledger events on this day for this model",
                bill_line=bill.line, key_name=bill.key_name, billed_pico=bill.amount,
                billed_tokens=_bucket_tokens(bill), **common))
            continue
        result.matched += 1
        weights: dict[str, int] = defaultdict(int)
        for (owner, _), group in rest.items():
            weights[owner] += group.amount
        _attribute(result, bill.amount or 0, {o: w for o, w in weights.items() if w})
        _compare_group(result, bill, _total(rest), tolerance, **common)
    for found in sorted(outside.values(), key=lambda o: (o.owner is None, o.owner or "",
                                                         o.label)):
        result.outside_pico += found.bill.amount or 0
        result.differences.append(_outside_difference(found))


def _compare_group(result: Matching, bill: _Group, ledger: _Group, tolerance: Decimal,
                   **common) -> None:
    found = {"bill_line": bill.line, "key_name": bill.key_name, "logged_pico": ledger.amount,
             "billed_pico": bill.amount, "billed_tokens": _bucket_tokens(bill),
             "logged_tokens": _pair(ledger.input_tokens, ledger.output_tokens), **common}
    if bill.input_tokens is not None and found["billed_tokens"] != found["logged_tokens"]:
        result.differences.append(Difference("token_mismatch", "token sums differ", **found))
    elif bill.amount is not None and (
        abs(bill.amount - ledger.amount) > tolerance * abs(bill.amount)
    ):
        result.differences.append(Difference(
            "price_mismatch", "amounts differ beyond the tolerance", **found))


def _total(owners: dict[tuple[str, bool], _Group]) -> _Group:
    return _Group(sum(g.amount for g in owners.values()),
                  sum(g.input_tokens for g in owners.values()),
                  sum(g.output_tokens for g in owners.values()))


def _outside(outside: dict, owner: str | None, label: str, bill: _Group, day: date,
             model: str) -> None:
    found = outside.get((owner, label))
    if found is None:
        found = outside[(owner, label)] = _Outside(owner, label)
    found.bill.add(bill.amount, bill.input_tokens, bill.output_tokens, bill.line, None)
    found.days.add(day)
    if model:
        found.models.add(model)


def _outside_difference(found: _Outside) -> Difference:
    first, last = min(found.days), max(found.days)
    span = f"{first}" if first == last else f"{len(found.days)} days, {first}..{last}"
    what = (f"outside the gateway: {found.label} → application {found.owner}"
            if found.owner is not None else f"unmapped account {found.label}")
    return Difference(
        "billed_outside_gateway", f"{what} ({span}; no captured call matches it)",
        day=first, bill_line=found.bill.line,
        model=next(iter(found.models)) if len(found.models) == 1 else None,
        key_name=found.label.rsplit(" ", 1)[-1], owner=found.owner,
        billed_pico=found.bill.amount, billed_tokens=_bucket_tokens(found.bill))


class _Claims:
    """Whose each bill line is, by the registry version in effect at the start of its day.
    Accounts are the billing provider's, as the line names it (not the ledger provider a
    run compares with, which ``--provider`` may set to anything)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.history = load_history(conn)
        self.by_day: dict[date, Registry | None] = {}

    def at(self, day: date, provider: str, api_key: str | None,
           project: str | None) -> Claim | None:
        if day not in self.by_day:
            found = self.history.at(datetime.combine(day, datetime.min.time(), UTC))
            self.by_day[day] = None if found is None else found[1]
        registry = self.by_day[day]
        return None if registry is None else registry.claim(provider, api_key, project)


def _bucket_tokens(group: _Group) -> str | None:
    return None if group.input_tokens is None else _pair(group.input_tokens, group.output_tokens)


def _attribute(result: Matching, amount: int, owners: dict[str, int]) -> None:
    """Split a group's billed amount over its owners in proportion to their logged cost, to
    the pico-unit; the remainder goes to the largest shares first, so the parts sum exactly."""
    weight = sum(owners.values())
    if not weight:
        result.owner(UNATTRIBUTED).billed_pico += amount
        return
    shares = {owner: amount * part // weight for owner, part in owners.items()}
    rest = amount - sum(shares.values())
    for owner in sorted(owners, key=lambda o: (-owners[o], o))[:rest]:
        shares[owner] += 1
    for owner, share in shares.items():
        result.owner(owner).billed_pico += share
