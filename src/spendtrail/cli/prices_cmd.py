"""`spendtrail prices`: import, add, list and check the dated, sourced price catalog."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from spendtrail.cli.common import actor, console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.periods import parse_period

# Named in the options' help, so needed when the commands are defined.
from spendtrail.pricing.check import DEFAULT_CADENCE_DAYS
from spendtrail.pricing.model import CHARACTER_METERS, KINDS, MATCH_KINDS, TOKEN_METERS

if TYPE_CHECKING:
    from spendtrail.pricing import PriceEntry

app = typer.Typer(no_args_is_help=True, help="The dated, sourced price catalog.")
import_app = typer.Typer(no_args_is_help=True, help="Import prices from a source.")
app.add_typer(import_app, name="import")


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except SpendtrailError as exc:
        fail(str(exc))


Reason = Annotated[str, typer.Option("--reason", help="Why: kept in the audit log.")]


@import_app.command("genai-prices")
def import_genai(
    provider: Annotated[list[str], typer.Option(
        "--provider", help="A genai-prices provider id (openai, anthropic, google, ...); repeat.")],
    reason: Reason = "",
) -> None:
    """Import list (reference) prices from the installed genai-prices package."""
    # Both load the whole genai-prices data set.
    from spendtrail.ledger.genai_prices import import_genai_prices
    from spendtrail.pricing import genai_import

    with _user_errors(), ledger().begin() as conn:
        report = import_genai_prices(
            conn, provider, actor=actor(), reason=reason or f"import {genai_import.ORIGIN}"
        )
    console.print(
        f"{genai_import.ORIGIN}: added {len(report.added)}, unchanged {len(report.unchanged)}, "
        f"windows closed {len(report.closed)}, re-checked {len(report.rechecked)}; "
        f"checked_at {report.checked_at} (the newest price change in the installed data); "
        f"{len(report.skipped)} notes on what was not imported exactly:", highlight=False,
    )
    for item in report.skipped:
        console.print(f"  {item}", highlight=False, soft_wrap=True)


@import_app.command("sheet")
def import_sheet(
    file: Annotated[Path, typer.Argument(help="A YAML price sheet (docs/prices.md).")],
    reason: Reason = "",
) -> None:
    """Import the account's own verified prices from a YAML price sheet, whole or not at all."""
    from spendtrail.ledger.prices import add_entries
    from spendtrail.pricing import load_sheet

    with _user_errors():
        entries = load_sheet(file)
        with ledger().begin() as conn:
            result = add_entries(conn, entries, actor=actor(),
                                 reason=reason or f"import sheet {file}")
    console.print(f"{file}: added {len(result.added)}, unchanged {len(result.unchanged)}, "
                  f"windows closed {len(result.closed)}, re-checked {len(result.rechecked)}",
                  highlight=False)


def _price(flag: str, meter: str) -> Any:
    unit = ("per 1M tokens" if meter in TOKEN_METERS else "per 1M characters"
            if meter in CHARACTER_METERS else f"per {meter.rstrip('s')}")
    return typer.Option(flag, help=f"{meter} price, {unit}.")


@app.command("add")
def add(
    provider: Annotated[str, typer.Option(help="Provider as events name it, e.g. cometapi.")],
    model: Annotated[str, typer.Option(help="Model name, glob or regex (see --match).")],
    source_url: Annotated[str, typer.Option(help="Where the price is published or agreed.")],
    checked_at: Annotated[str, typer.Option(help="Date the price was verified, YYYY-MM-DD.")],
    checked_by: Annotated[str, typer.Option(help="Who verified it.")],
    effective_from: Annotated[str, typer.Option(
        help="Date (00:00 UTC) or ISO timestamp with offset.")],
    match: Annotated[str, typer.Option(help=f"One of {', '.join(MATCH_KINDS)}.")] = "exact",
    input_: Annotated[str | None, _price("--input", "input_tokens")] = None,
    cached_input: Annotated[str | None, _price("--cached-input", "cached_input_tokens")] = None,
    cache_write: Annotated[str | None, _price("--cache-write", "cache_write_tokens")] = None,
    cache_write_1h: Annotated[str | None, _price(
        "--cache-write-1h", "cache_write_1h_tokens")] = None,
    output: Annotated[str | None, _price("--output", "output_tokens")] = None,
    reasoning: Annotated[str | None, _price("--reasoning", "reasoning_tokens")] = None,
    input_audio: Annotated[str | None, _price("--input-audio", "input_audio_tokens")] = None,
    output_audio: Annotated[str | None, _price("--output-audio", "output_audio_tokens")] = None,
    input_image: Annotated[str | None, _price("--input-image", "input_image_tokens")] = None,
    output_image: Annotated[str | None, _price("--output-image", "output_image_tokens")] = None,
    characters: Annotated[str | None, _price("--characters", "input_characters")] = None,
    per_request: Annotated[str | None, _price("--per-request", "requests")] = None,
    per_image: Annotated[str | None, _price("--per-image", "images")] = None,
    per_second: Annotated[str | None, _price("--per-second", "seconds")] = None,
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "USD",
    effective_to: Annotated[str | None, typer.Option(help="End of the window, exclusive.")] = None,
    kind: Annotated[str, typer.Option(help=f"One of {', '.join(KINDS)}.")] = "contracted",
    service_tier: Annotated[str | None, typer.Option(
        help="Price only calls billed at this tier (batch, flex, priority...); "
        "default: the standard tier.")] = None,
    reason: Reason = "",
) -> None:
    """Add one price entry (the account's own verified price, by default)."""
    from spendtrail.ledger.prices import add_entries
    from spendtrail.pricing import PriceEntry
    from spendtrail.pricing.model import check_regex_case, parse_day, parse_instant

    given = {
        "input_tokens": input_, "cached_input_tokens": cached_input,
        "cache_write_tokens": cache_write, "cache_write_1h_tokens": cache_write_1h,
        "output_tokens": output, "reasoning_tokens": reasoning,
        "input_audio_tokens": input_audio, "output_audio_tokens": output_audio,
        "input_image_tokens": input_image, "output_image_tokens": output_image,
        "input_characters": characters, "requests": per_request, "images": per_image,
        "seconds": per_second,
    }
    with _user_errors():
        if match == "regex":
            check_regex_case(model)
        entry = PriceEntry(
            provider=provider, model_match=model, match_kind=match, kind=kind,
            currency=currency, prices={m: v for m, v in given.items() if v is not None},
            service_tier=service_tier,
            effective_from=parse_instant(effective_from, "--effective-from"),
            effective_to=None if effective_to is None else parse_instant(effective_to,
                                                                         "--effective-to"),
            source_url=source_url, checked_at=parse_day(checked_at, "--checked-at"),
            checked_by=checked_by, origin=f"prices add by {actor()}",
        )
        with ledger().begin() as conn:
            result = add_entries(conn, [entry], actor=actor(), reason=reason)
    state = ("added" if result.added else "closed" if result.closed
             else "re-checked" if result.rechecked else "unchanged")
    console.print(f"{entry.id}: {state}", highlight=False)


@app.command("list")
def list_(
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Only entries whose match selects it.")] = None,
    at: Annotated[str | None, typer.Option(help="Only entries in effect then.")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """List price entries with their window, kind and provenance."""
    from spendtrail.ledger.prices import load_catalog
    from spendtrail.pricing.model import parse_instant

    with _user_errors():
        moment = None if at is None else parse_instant(at, "--at")
        with ledger().connect() as conn:
            entries = load_catalog(conn).select(provider=provider, model=model, at=moment)
    if fmt is Format.json:
        render([e.record() for e in entries], fmt)
        return
    rows = [_row(e) for e in entries]
    if fmt is Format.table:  # ids are long; csv and json carry them
        rows = [{k: v for k, v in row.items() if k != "id"} for row in rows]
    render(rows, fmt, title=f"{len(entries)} price entries")


def _row(entry: PriceEntry) -> dict[str, Any]:
    from spendtrail.pricing.model import instant_str

    record = entry.record()
    tiers = "; ".join(
        f">{t['above_input_tokens']}: " + " ".join(f"{m}={p}" for m, p in t["prices"].items())
        for t in record["tiers"]
    )
    return {
        "provider": entry.provider,
        "model": entry.model_match if entry.match_kind == "exact"
        else f"{entry.model_match} ({entry.match_kind})",
        "kind": entry.kind,
        "from": instant_str(entry.effective_from),
        "to": "" if entry.effective_to is None else instant_str(entry.effective_to),
        "tier": entry.service_tier or "",
        "currency": entry.currency,
        "prices": " ".join(f"{m}={p}" for m, p in record["prices"].items()),
        "tiers": tiers,
        "source_url": entry.source_url,
        "checked_at": entry.checked_at.isoformat(),
        "checked_by": entry.checked_by,
        "id": entry.id,
    }


@app.command("check")
def check(
    cadence_days: Annotated[int, typer.Option(min=1, help="Review cadence in days.")] = (
        DEFAULT_CADENCE_DAYS
    ),
    as_of: Annotated[str | None, typer.Option(help="Check as of this date; default today.")] = None,
    period: Annotated[str | None, typer.Option(
        help="Unpriced models only in YYYY-MM, YYYY-MM-DD or A..B; default all.")] = None,
) -> None:
    """Flag prices not checked within the cadence and models used without a price (exit 1)."""
    from spendtrail.ledger.prices import load_catalog, unpriced_models
    from spendtrail.pricing import stale_prices
    from spendtrail.pricing.model import parse_day

    with _user_errors():
        day = datetime.now(UTC).date() if as_of is None else parse_day(as_of, "--as-of")
        chosen = None if period is None else parse_period(period)
        with ledger().connect() as conn:
            catalog = load_catalog(conn)
            stale = stale_prices(catalog, day, cadence_days)
            unpriced = unpriced_models(conn, chosen)
    if stale:
        render([{"age_days": s.age_days, "checked_at": s.entry.checked_at.isoformat(),
                 "checked_by": s.entry.checked_by, "provider": s.entry.provider,
                 "model": s.entry.model_match, "kind": s.entry.kind,
                 "source_url": s.entry.source_url, "id": s.entry.id} for s in stale],
               Format.table, title=f"{len(stale)} prices not checked in the {cadence_days} days "
                                   f"before {day} (re-check at the source)")
    if unpriced:
        render([{"provider": u.provider, "model": u.model or "(no model)",
                 "unpriced_events": u.unpriced_events, "first_day": u.first_day.isoformat(),
                 "last_day": u.last_day.isoformat()} for u in unpriced],
               Format.table, title=f"{len(unpriced)} models with unpriced or incomplete events "
                                   "(add prices, then reprice)")
    if stale or unpriced:
        raise typer.Exit(1)
    console.print(f"{len(catalog.entries)} price entries: none older than {cadence_days} days "
                  f"on {day}; no unpriced models", highlight=False)
