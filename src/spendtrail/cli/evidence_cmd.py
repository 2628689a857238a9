"""`spendtrail sources|review|followups|audit|handoff|smoke`: the evidence a finance partner
can challenge. Faces only: each command parses, calls spendtrail.evidence and renders."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from spendtrail.cli.common import actor, console, err_console, fail, ledger, settings
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.evidence.sources import CLAIM_KINDS

if TYPE_CHECKING:
    import sqlalchemy as sa

    from spendtrail.evidence import CheckResult, ReviewNote
    from spendtrail.evidence.handoff import Handoff
    from spendtrail.evidence.store import StoredReview

sources_app = typer.Typer(help="The source register: what the books rely on.",
                          no_args_is_help=True)
review_app = typer.Typer(help="Chargeback review notes.", no_args_is_help=True)
followups_app = typer.Typer(help="Open questions routed to a role.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only audit trail.", no_args_is_help=True)
handoff_app = typer.Typer(help="Cost handoff records.", no_args_is_help=True)

Reason = Annotated[str, typer.Option(help="Why it changes; kept in the audit log.")]
FormatOption = Annotated[Format, typer.Option("--format", help="table, csv or json.")]


class DocFormat(StrEnum):
    md = "md"
    json = "json"


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except SpendtrailError as exc:
        fail(str(exc))


def _day(text: str | None, name: str) -> date:
    if text is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{name} {text!r}: expected YYYY-MM-DD")


# -- sources -------------------------------------------------------------------------------


@sources_app.command("add")
def sources_add(
    source_id: Annotated[str, typer.Argument(metavar="ID", help="e.g. cometapi-pricing")],
    url: Annotated[str, typer.Argument(help="Where the source is read.")],
    purpose: Annotated[str, typer.Option(help="What it is checked for.")] = "",
    area: Annotated[str, typer.Option(help="pricing, support, allocation, unit economics, "
                                           "contract, API docs, ...")] = "",
    accessed: Annotated[str | None, typer.Option(help="Day read, YYYY-MM-DD (default today).")
                        ] = None,
    checked_by: Annotated[str | None, typer.Option(help="Who read it (default: you).")] = None,
    covers: Annotated[str, typer.Option(
        help=f"Claim kinds it may support: 'none', 'any' or a list of {', '.join(CLAIM_KINDS)}; "
             "none by default, so a source supports a price only when registered to.")
    ] = "none",
    review_every: Annotated[int | None, typer.Option(
        min=1, help="Review cadence in days; past it the source is stale.")] = 90,
    reason: Reason = "",
) -> None:
    """Add a source to the register, or record a re-check of one (audited)."""
    from spendtrail.evidence import Source
    from spendtrail.evidence.store import save_source

    kinds = None if covers == "any" else frozenset(
        () if covers == "none" else (k.strip() for k in covers.split(",") if k.strip()))
    with _errors(), ledger().begin() as conn:
        item = save_source(
            conn, Source(source_id, url, _day(accessed, "accessed"), purpose, kinds,
                         review_every),
            area=area, checked_by=checked_by or actor(), actor=actor(), reason=reason)
    console.print(f"source {escape(source_id)}: accessed {item.source.accessed}", highlight=False)


@sources_app.command("defaults")
def sources_defaults(
    accessed: Annotated[str | None, typer.Option(help="Day read, YYYY-MM-DD (default today).")
                        ] = None,
) -> None:
    """Register the public sources the chargeback review checks by default: the FinOps
    allocation and unit-economics pages, CometAPI's help center and pricing page."""
    from spendtrail.evidence.sample import default_sources
    from spendtrail.evidence.store import save_source

    areas = {"finops-allocation": "allocation", "finops-unit-economics": "unit economics",
             "cometapi-help-center": "support", "cometapi-pricing": "pricing"}
    with _errors(), ledger().begin() as conn:
        for source in default_sources(_day(accessed, "accessed")):
            save_source(conn, source, area=areas[source.id], checked_by=actor(), actor=actor(),
                        reason="default sources")
            console.print(f"source {source.id}: {source.url}", highlight=False)


@sources_app.command("list")
def sources_list(fmt: FormatOption = Format.table) -> None:
    """Every registered source with when it was read and by whom."""
    from spendtrail.evidence.store import load_sources

    with ledger().connect() as conn:
        rows = [item.record() for item in load_sources(conn)]
    render(rows, fmt, title="Sources")


@sources_app.command("check")
def sources_check(
    as_of: Annotated[str | None, typer.Option(help="Day to check against (default today).")
                     ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Sources past their review cadence and citations of sources not in the register; exits
    1 when there are any."""
    from spendtrail.evidence.store import check_sources

    with ledger().connect() as conn:
        problems = check_sources(conn, _day(as_of, "as-of"))
    if not problems:
        console.print("sources: every source is current and every citation is registered")
        return
    render([asdict(problem) for problem in problems], fmt, title="Source problems")
    raise typer.Exit(1)


# -- review notes --------------------------------------------------------------------------


@review_app.command("new")
def review_new(
    owner: Annotated[str, typer.Option(help="An application, business unit or the shared pool.")],
    period: Annotated[str, typer.Option(help="Usage period, YYYY-MM.")],
    reviewer_role: Annotated[str, typer.Option(help="A role, not a name.")] = "FinOps reviewer",
    notes: Annotated[str, typer.Option(help="Sanitized summary to add.")] = "",
    shared_decision: Annotated[str | None, typer.Option(
        help="For shared usage: central, split:<rule name> or held.")] = None,
    reason: Reason = "",
) -> None:
    """Draft a note for an owner and period from the ledger; `review check` records a result."""
    from spendtrail.evidence.draft import draft_note
    from spendtrail.evidence.store import save_review

    with _errors(), ledger().begin() as conn:
        note = draft_note(conn, owner, period, reviewer_role=reviewer_role, notes=notes,
                          shared_decision=shared_decision)
        save_review(conn, note, actor=actor(), reason=reason)
    console.print(f"drafted {note.review_id}; next: spendtrail review check {note.review_id}",
                  highlight=False)


@review_app.command("check")
def review_check(
    review_id: Annotated[str, typer.Argument(metavar="ID")],
    result: Annotated[str | None, typer.Option(
        help="Record a stricter result than the check's: needs_follow_up or fail.")] = None,
) -> None:
    """Check a note against the checklist, linter and register and store the result; exits 1
    when it fails."""
    from spendtrail.evidence.store import check_review

    with _errors(), ledger().begin() as conn:
        stored = check_review(conn, review_id, actor=actor(), result=result)
    note = stored.note
    owner = f" -> {note.follow_up_owner}" if note.follow_up_owner else ""
    console.print(f"{note.review_id}: {note.review_result}{owner}", highlight=False)
    for r in stored.check.reasons if stored.check else ():
        console.print(f"  {r.code}: {escape(r.message)}", highlight=False)
    if note.review_result == "fail":
        raise typer.Exit(1)


@review_app.command("show")
def review_show(review_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """One note as Markdown, with its recorded result and reasons."""
    from spendtrail.evidence import render_markdown
    from spendtrail.evidence.store import get_review

    with _errors(), ledger().connect() as conn:
        reviews = [_review(conn, get_review(conn, review_id))]
    console.print(render_markdown(reviews, title=f"Review {review_id}"), markup=False,
                  highlight=False)


@review_app.command("export")
def review_export(
    fmt: Annotated[DocFormat, typer.Option("--format")] = DocFormat.md,
    period: Annotated[str | None, typer.Option(help="Only this usage period.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Every stored note (or a period's) as Markdown or JSON, redacted."""
    from spendtrail.evidence import export_json, render_markdown
    from spendtrail.evidence.store import list_reviews

    with ledger().connect() as conn:
        reviews = [_review(conn, stored) for stored in list_reviews(conn, period)]
    text = export_json(reviews) if fmt is DocFormat.json else render_markdown(reviews)
    _emit(text, output)


@review_app.command("sample")
def review_sample(
    period: Annotated[str, typer.Option(help="Usage period, YYYY-MM.")],
    owner: Annotated[str | None, typer.Option(
        help="The passing row's owner (default: the registry's first application).")] = None,
    reviewer_role: Annotated[str, typer.Option(help="A role, not a name.")] = "FinOps reviewer",
) -> None:
    """Store and check the two-row sample review note: one row that passes, one that fails
    with its reason."""
    from spendtrail.evidence.sample import sample_notes
    from spendtrail.evidence.store import store_checked
    from spendtrail.ledger.registry_versions import load_history

    with _errors(), ledger().begin() as conn:
        if owner is None:
            latest = load_history(conn).latest()
            if latest is None or not latest[1].applications:
                fail("no registry application to own the passing row; pass --owner")
            owner = sorted(latest[1].applications)[0]
        stored = store_checked(conn, sample_notes(period, team_owner=owner,
                                                  reviewer_role=reviewer_role),
                               actor=actor(), reason=f"two-row sample for {period}")
    for item in stored:
        reasons = ", ".join(item.check.codes) if item.check else ""
        console.print(f"{item.note.review_id}: {item.note.review_result}"
                      f"{' (' + reasons + ')' if reasons else ''}", highlight=False)


def _review(conn: sa.Connection, stored: StoredReview) -> tuple[ReviewNote, CheckResult]:
    """The note with its stored check, or, for a draft, a check run now but not recorded."""
    from spendtrail.evidence import check_note
    from spendtrail.evidence.store import known_sources

    return stored.note, stored.check or check_note(stored.note, known_sources(conn))


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}", highlight=False)


# -- follow-ups ----------------------------------------------------------------------------


@followups_app.command("list")
def followups_list(
    include_resolved: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    role: Annotated[str | None, typer.Option(help="Only those routed to this role.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Open follow-ups, oldest first, with their age in days."""
    from spendtrail.evidence.followups import list_follow_ups

    now = datetime.now(UTC)
    with ledger().connect() as conn:
        items = list_follow_ups(conn, include_resolved=include_resolved, role=role)
    rows = [{"id": f.id, "origin": f.origin, "about": f.origin_id, "routed_to": f.routed_to,
             "age_days": f.age_days(now), "question": f.question,
             "resolved": f.resolution or ""} for f in items]
    render(rows, fmt, title="Follow-ups")


@followups_app.command("resolve")
def followups_resolve(
    follow_up_id: Annotated[int, typer.Argument(metavar="ID")],
    note: Annotated[str, typer.Option(help="What answered the question.")],
) -> None:
    """Close a follow-up with a note (audited)."""
    from spendtrail.evidence.followups import resolve_follow_up

    with _errors(), ledger().begin() as conn:
        item = resolve_follow_up(conn, follow_up_id, note=note, actor=actor())
    console.print(f"resolved follow-up {item.id} ({item.origin} {escape(item.origin_id)})",
                  highlight=False)


# -- audit ---------------------------------------------------------------------------------


@audit_app.command("log")
def audit_log(
    object_type: Annotated[list[str] | None, typer.Option(
        help="registry, price, budget, gateway_key, source, review, follow_up, ...")
    ] = None,
    object_id: Annotated[str | None, typer.Option(help="One object's history.")] = None,
    who: Annotated[str | None, typer.Option("--actor", help="Changes by this actor.")] = None,
    since: Annotated[str | None, typer.Option(
        help="From this day (YYYY-MM-DD) or instant (ISO 8601).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="The newest N only.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Who changed what, when, from what, to what, and why; oldest first."""
    from spendtrail.evidence.audit_view import audit_entries

    with ledger().connect() as conn:
        entries = audit_entries(conn, object_types=tuple(object_type or ()), object_id=object_id,
                                actor=who, since=_since(since), limit=limit)
    rows = [entry.row() for entry in entries]
    if fmt is Format.table:  # a terminal shows the gist; csv and json keep every value
        rows = [{k: _gist(v) for k, v in row.items()} for row in rows]
    render(rows, fmt, title="Audit log")


def _gist(value: object, width: int = 100) -> object:
    if isinstance(value, str) and len(value) > width:
        return value[: width - 1] + "…"
    return value


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = (datetime.combine(date.fromisoformat(text), time()) if len(text) == 10
                  else datetime.fromisoformat(text))
    except ValueError:
        fail(f"since {text!r}: expected YYYY-MM-DD or an ISO 8601 instant")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- handoffs ------------------------------------------------------------------------------


@handoff_app.command("new")
def handoff_new(
    fmt: Annotated[DocFormat, typer.Option("--format")] = DocFormat.md,
) -> None:
    """Fill the cost handoff template from the latest smoke test, reconciliation and reviews,
    lint it and store it."""
    from spendtrail.evidence.handoff import new_handoff

    with _errors(), ledger().begin() as conn:
        handoff = new_handoff(conn, actor=actor())
    _print_handoff(handoff, fmt)


@handoff_app.command("show")
def handoff_show(
    handoff_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="Default: latest.")
                          ] = None,
    fmt: Annotated[DocFormat, typer.Option("--format")] = DocFormat.md,
) -> None:
    """A stored handoff record."""
    from spendtrail.evidence.handoff import get_handoff

    with _errors(), ledger().connect() as conn:
        handoff = get_handoff(conn, handoff_id)
    _print_handoff(handoff, fmt)


def _print_handoff(handoff: Handoff, fmt: DocFormat) -> None:
    from spendtrail.evidence.handoff import render_handoff

    if fmt is DocFormat.json:
        typer.echo(json.dumps(handoff.record(), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_handoff(handoff), nl=False)


# -- smoke ---------------------------------------------------------------------------------


def smoke(
    upstream: Annotated[str, typer.Option(help="The provider's OpenAI-compatible base URL, "
                                               "e.g. https://api.cometapi.com/v1.")],
    application: Annotated[str, typer.Option(help="The application the smoke key is for.")],
    environment: Annotated[str, typer.Option(help="Its environment tag.")] = "staging",
    workload: Annotated[str, typer.Option(help="Its workload tag.")] = "eval",
    model: Annotated[str, typer.Option(help="A priced model the provider serves.")
                     ] = "gpt-4o-mini",
    provider: Annotated[str, typer.Option(
        help="Provider name in the price catalog; picks the key variable too.")] = "cometapi",
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Smoke-test the request path: one tagged request must leave a priced, allocated event;
    one with an invalid credential must fail once, clearly, and leave none. The provider key
    comes from SPENDTRAIL_UPSTREAM_KEY (or COMETAPI_KEY). Exits 1 on failure."""
    from spendtrail.gateway import upstream_key
    from spendtrail.smoke import SmokeOptions, run_smoke  # gateway, aiohttp, openai

    with _errors():
        key = upstream_key(provider, os.environ)
        options = SmokeOptions(upstream_url=upstream, upstream_key=key, application=application,
                               environment=environment, workload=workload, operator=actor(),
                               provider=provider, model=model)
        with tempfile.TemporaryDirectory(prefix="spendtrail-smoke-") as work:
            run = run_smoke(ledger(), settings().ledger_url, options, Path(work))
    record = run.record()
    if fmt is Format.json:
        typer.echo(json.dumps(record, indent=2, default=str))
    else:
        del record["details"]
        render([{"field": k, "value": v} for k, v in record.items()], Format.table,
               title=f"Smoke test {run.run_id}")
        for problem in run.details["problems"]:
            err_console.print(f"[red]{escape(problem)}[/red]", highlight=False)
    if not run.passed:
        raise typer.Exit(1)
