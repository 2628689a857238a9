"""Statements finance can forward: amounts rounded so every table still adds up, registry
names instead of ids, scoped statements that show no one else, PRELIMINARY until the period
is closed, no paths or URLs, unpriced owners kept, budgets at their worst period, the stored
shared-cost rules by default, and a PDF. On SQLite and PostgreSQL where a ledger is used."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from factories import ROOT
from test_allocation_helpers import MINI
from typer.testing import CliRunner

from spendtrail.allocation.rule_store import save_rules_version
from spendtrail.allocation.rules import load_rules
from spendtrail.budgets import Budget, save_budget
from spendtrail.cli.report_cmd import app
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.periods import parse_period
from spendtrail.reports.chargeback import build_statement, parse_scope, to_csv, to_json
from spendtrail.reports.render_html import to_html
from spendtrail.reports.render_pdf import to_pdf
from spendtrail.reports.rounding import minor_unit, spread, to_units
from spendtrail.reports.statement_file import scopes_of
from spendtrail.reports.statement_run import statement_scopes
from spendtrail.reports.statement_view import build_view, to_markdown

pytest_plugins = ("test_allocation_helpers",)  # the `books` fixture

RULES = ROOT / "examples" / "shared-cost-rules.yaml"
OCTOBER = parse_period("2026-10")
REGISTRY_IDS = (
    "CC-100",
    "CC-110",
    "CC-200",
    "CC-300",
    "ana.ruiz",
    "ben.okafor",
    "chen.wei",
    "dana.kim",
)


def statement(engine, owner=None, rules=None):
    with engine.connect() as conn:
        return build_statement(
            conn,
            OCTOBER,
            rules=rules,
            owner=parse_scope(owner),
            generated_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
        )


def rules():
    return load_rules(RULES)


# --- Rounding ----------------------------------------------------------------------------


def test_spread_keeps_the_displayed_total_over_random_amounts():
    rng = random.Random(11)
    for _ in range(2000):
        decimals = rng.randint(0, 6)
        unit = 10 ** (12 - decimals)
        picos = [
            rng.choice((rng.randint(0, 10**13), rng.randint(0, 3 * unit), rng.randint(-unit, unit)))
            for _ in range(rng.randint(1, 12))
        ]
        shown = spread(picos, decimals)
        assert sum(shown) == to_units(sum(picos), decimals)
        # Each line is its amount rounded down or up, never further.
        pairs = zip(shown, picos, strict=True)
        assert all(abs(units * unit - pico) < unit for units, pico in pairs)
        target = to_units(sum(picos), decimals) + rng.randint(-3, 3)
        assert sum(spread(picos, decimals, target)) == target


def test_spread_gives_the_missing_unit_to_the_largest_remainder():
    # 0.334 + 0.333 + 0.333 = 1.00: rounding each alone would show 0.99.
    third = 333 * 10**9
    assert spread([third + 10**9, third, third], 2) == [34, 33, 33]
    assert spread([third, third + 10**9, third], 2) == [33, 34, 33]
    assert minor_unit("USD") == 2 and minor_unit("JPY") == 0 and minor_unit("KWD") == 3


def test_spread_to_a_far_target_goes_round_in_whole_rounds():
    # A closed month's lines against its frozen total, at 12 decimals: 10^10 units to place
    # (a loop of one unit at a time ran for minutes).
    rounds = 10**10 // 3
    assert spread([5, 3, 1], 12, 9 + 10**10) == [5 + rounds + 1, 3 + rounds, 1 + rounds]
    assert spread([5, 3, 1], 12, 9 - 4) == [4, 2, -1]  # taken back from the last line first


def md_tables(text: str) -> dict[str, tuple[list[str], list[list[str]], list[str] | None]]:
    """Each Markdown table under its heading: header, lines, totals row (bold cells)."""
    tables = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        rows = [
            [cell.strip() for cell in line.strip("|").split(" | ")]
            for line in body.splitlines()
            if line.startswith("| ")
        ]
        if not rows:
            continue
        totals = rows[-1] if rows[-1][0].startswith("**") else None
        lines = rows[1:-1] if totals else rows[1:]
        tables[title] = (rows[0], lines, [c.strip("*") for c in totals] if totals else None)
    return tables


def number(cell: str) -> Decimal | None:
    cell = cell.strip("*").replace(",", "")
    return Decimal(cell) if re.fullmatch(r"-?\d+(\.\d+)?", cell) else None


def assert_tables_add_up(text: str, currency: str = "USD") -> set[Decimal]:
    """Every table's numeric lines sum to its totals row; returns the statement totals shown
    (the owners table's Total, the breakdowns' Amount), which must all be one figure."""
    totals = set()
    for title, (header, lines, total) in md_tables(text).items():
        if title.startswith("Tie-out"):
            (*parts,) = (number(row[1]) for row in lines)
            assert sum(parts) == number(total[1]), title
            continue
        if total is None:
            continue
        for i, name in enumerate(header):
            if not total[i] or number(total[i]) is None:
                continue
            values = [number(row[i]) for row in lines if row[i] not in ("", "unpriced")]
            assert sum(values) == number(total[i]), (title, name)
        if title.startswith(("Charges by application", "By ")):
            column = f"Total {currency}" if title.startswith("Charges") else f"Amount {currency}"
            totals.add(number(total[header.index(column)]))
    return totals


def random_books(engine, seed: int) -> None:
    """Random token counts for several owners, models, environments and workloads, with
    shared-pool and quarantined usage."""
    rng = random.Random(seed)
    owners = [
        ("search-summaries", "production", "batch"),
        ("search-summaries", "staging", "eval"),
        ("contract-review", "production", "user_facing"),
        ("support-assistant", "production", "user_facing"),
        ("sales-email-drafts", "production", "internal_automation"),
        ("platform-shared", "production", "batch"),
        ("ghost-app", "production", "batch"),
    ]
    items = []
    for _ in range(40):
        app_, env, workload = rng.choice(owners)
        day = date(2026, 10, rng.randint(1, 31))
        items.append(
            new_event(
                started_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
                provider="cometapi",
                model_requested=rng.choice(("gpt-4o-mini", "gpt-4o")),
                context=AllocationContext(
                    application=app_, environment=env, workload_class=workload
                ),
                usage=Usage(
                    input_tokens=rng.randint(1, 40_000), output_tokens=rng.randint(0, 9_000)
                ),
            )
        )
    Ingester(engine).ingest_events(items)


@pytest.mark.parametrize("seed", [1, 2])
def test_displayed_lines_add_up_to_displayed_totals(seeded, seed):
    random_books(seeded, seed)
    company = statement(seeded, rules=rules())
    scoped = statement(seeded, owner="business-unit:consumer", rules=rules())
    for result in (company, scoped):
        for decimals in (0, 2, 3, 6):
            totals = assert_tables_add_up(to_markdown(result, decimals))
            # The statement's total is one figure in every table: its exact total rounded.
            exact = sum(o.total().get("USD", 0) for o in result.owners)
            assert totals == {Decimal(to_units(exact, decimals)).scaleb(-decimals)}
    # The default is the currency's minor unit: cents for USD.
    text = to_markdown(company)
    header, lines, totals = md_tables(text)["Charges by application"]
    assert re.fullmatch(r"\d+\.\d\d", totals[header.index("Total USD")])
    assert all(re.fullmatch(r"\d+\.\d\d", row[header.index("Direct USD")]) for row in lines)
    # Amounts are right-aligned in Markdown and HTML.
    assert "|---:|---:|---:|---:|---:|---:|" in text
    assert "<td class=num>" in to_html(company)


def test_exact_amounts_stay_in_csv_and_json(books):
    result = statement(books, rules=rules())
    document = json.loads(to_json(result))
    shares = {(r["recipient"], r["rule_id"]): r["amount"] for r in document["shared"]["rows"]}
    assert shares["search-summaries", "platform-proportional-q4"] == "0.000144642857"
    assert "0.000144642857" in to_csv(result)
    assert "0.000144642857" not in to_markdown(result, 6)


# --- Names, scope, status ----------------------------------------------------------------


def test_names_from_the_registry_not_ids(books):
    result = statement(books, rules=rules())
    for text in (to_markdown(result), to_html(result)):
        for name in (
            "Search Summaries",
            "Consumer Products",
            "Consumer Engineering",
            "Ana Ruiz",
            "Enterprise Solutions",
            "Chen Wei",
            "Platform shared AI usage",
        ):
            assert name in text
        assert [i for i in REGISTRY_IDS if i in text] == []
        assert "| search-summaries |" not in text and ">search-summaries<" not in text
    # Machines keep the ids next to the names.
    row = json.loads(to_json(result))["owners"]["rows"][0]
    assert (row["owner"], row["owner_name"], row["cost_center"]) == (
        "contract-review",
        "Contract Review",
        "CC-200",
    )


def test_usage_quarantined_under_a_known_application_shows_its_name(books):
    # contract-review called from an environment the registry does not allow for it.
    Ingester(books).ingest_events(
        [
            new_event(
                started_at=datetime(2026, 10, 5, 12, tzinfo=UTC),
                provider="cometapi",
                model_requested="gpt-4o-mini",
                context=AllocationContext(
                    application="contract-review", environment="sandbox", workload_class="batch"
                ),
                usage=Usage(input_tokens=1000, output_tokens=500),
            )
        ]
    )
    result = statement(books, owner="application:contract-review")
    assert [(q.owner, q.events) for q in result.quarantined] == [("contract-review", 1)]
    text = to_markdown(result)
    assert "| Contract Review | 1 | 0.00 |" in text
    assert "contract-review" not in text


@pytest.mark.parametrize(
    "owner",
    [
        "application:contract-review",
        "contract-review",
        "budget-owner:chen.wei",
        "cost-center:CC-200",
        "business-unit:enterprise",
    ],
)
def test_a_scoped_statement_shows_no_other_owner(books, owner):
    result = statement(books, owner=owner, rules=rules())
    assert [o.owner for o in result.owners] == ["contract-review"]
    own = result.owners[0].total()["USD"]
    # It ties out to itself, not to the whole ledger.
    tie = result.tie_out()["USD"]
    assert (tie["statement_total"], tie["difference"]) == (own, 0)
    assert "ledger_total" not in tie
    others = (
        "Search Summaries",
        "Support Assistant",
        "Consumer Products",
        "Ana Ruiz",
        "search-summaries",
        "support-assistant",
        "ghost-app",
        "(untagged)",
        "Ledger",
        "coverage",
        "0.0186",
    )  # 0.0186: the company's total
    ledger_days = {day for day, _ in statement(books).by_day}
    for text in (to_markdown(result, 4), to_html(result, 4), to_json(result), to_csv(result)):
        assert [word for word in others if word in text] == []
    assert "Statement total" in to_markdown(result)
    # Its chart of spend by day holds its own days only (the company has two).
    assert [day for day, _ in result.by_day] == ["2026-10-05"]
    assert len(ledger_days) == 2
    view = build_view(result)
    assert {t.key for t in view.tables}.isdisjoint(
        {"coverage", "unallocated_pool", "by_business_unit"}
    )


def test_scopes_are_checked(books):
    from spendtrail.errors import SpendtrailError

    with pytest.raises(SpendtrailError, match="expected company, or one of application:ID"):
        parse_scope("team:search")
    assert str(parse_scope("cost-center:CC-100")) == "cost-center:CC-100"
    assert parse_scope(None).is_company and parse_scope("company").is_company
    consumer = statement(books, owner="business-unit:consumer", rules=rules())
    assert {o.owner for o in consumer.owners} == {"search-summaries", "support-assistant"}
    assert consumer.scope_name == "Consumer Products"


def test_preliminary_until_the_period_is_closed(books):
    result = statement(books)
    assert not result.closed
    assert "**PRELIMINARY**" in to_markdown(result)
    assert "PRELIMINARY: the period is not closed" in to_html(result)
    assert json.loads(to_json(result))["header"]["status"] == "PRELIMINARY"


def test_no_path_url_or_internal_id_in_any_output(cli_ledger, books, ledger_url, tmp_path):
    rules_copy = tmp_path / "reviewed" / "rules.yaml"
    rules_copy.parent.mkdir()
    rules_copy.write_text(RULES.read_text())
    runner = CliRunner()
    secret_parts = [str(tmp_path), ledger_url, "sqlite:", "postgresql:", "127.0.0.1"]
    for fmt in ("md", "html", "json", "csv"):
        shown = runner.invoke(
            app, ["chargeback", "--period", "2026-10", "--rules", str(rules_copy), "--format", fmt]
        )
        assert shown.exit_code == 0, shown.output
        assert [part for part in secret_parts if part in shown.output] == []
    header = json.loads(
        runner.invoke(
            app,
            ["chargeback", "--period", "2026-10", "--rules", str(rules_copy), "--format", "json"],
        ).output
    )
    assert header["header"]["shared_cost_rules"] == "rules.yaml (given with --rules)"
    assert "ledger" not in header["header"]


# --- Unpriced, budgets, stored rules -------------------------------------------------------


def test_an_owner_whose_usage_is_all_unpriced_stays_in_every_rollup(books):
    # The evaluation harness (business unit platform) calls only a model with no price.
    Ingester(books).ingest_events(
        [
            new_event(
                started_at=datetime(2026, 10, 7, 12, tzinfo=UTC),
                provider="cometapi",
                model_requested="mystery-model",
                context=AllocationContext(
                    application="eval-harness", environment="staging", workload_class="eval"
                ),
                usage=Usage(input_tokens=10, output_tokens=5),
            )
        ]
    )
    result = statement(books, rules=rules())
    harness = next(o for o in result.owners if o.owner == "eval-harness")
    assert (harness.total(), harness.unpriced_events) == ({}, 1)
    assert "platform" in result.rollup("business_unit")
    text = to_markdown(result)
    assert (
        "| Evaluation Harness | Platform Engineering | Platform and Infrastructure | "
        "Dana Kim | unpriced | unpriced | unpriced | unpriced | unpriced | unpriced | 1 | 1 |"
    ) in text
    assert "| Platform Engineering | 1 | unpriced | 1 |" in text
    assert "| Platform and Infrastructure | 1 | unpriced | 1 |" in text
    assert "| Dana Kim | 1 | unpriced | 1 |" in text
    document = json.loads(to_json(result))
    row = next(r for r in document["owners"]["rows"] if r["owner"] == "eval-harness")
    assert row["total"] == "unpriced"
    assert {r["business_unit"] for r in document["by_business_unit"]["rows"]} >= {"platform"}
    assert any(
        r["owner"] == "eval-harness" and r["amount"] == "unpriced" for r in document["line_items"]
    )
    # Its own statement says unpriced, never 0.
    alone = to_markdown(statement(books, owner="application:eval-harness"))
    assert "| **Total** |" in alone and "**unpriced**" in alone
    assert "0.00" not in alone.split("## By model")[0]


def test_a_budget_shows_at_its_worst_period(books):
    # 2 gpt-4o-mini calls of search-summaries on 5 October = 900,000,000 pico-USD: 119% of
    # this daily limit. The 1st of October spent nothing.
    with books.begin() as conn:
        save_budget(
            conn,
            Budget(
                id="search-daily",
                scope="application",
                scope_value="search-summaries",
                period="day",
                limit_units=756_302_521,
                currency="USD",
            ),
            actor="test",
            reason="worst day",
        )
    result = statement(books)
    line = next(b for o in result.owners for b in o.budgets if b.worst.budget.id == "search-daily")
    assert (line.worst.period.label, line.worst.spent, line.worst.percent, line.worst.level) == (
        "2026-10-05",
        2 * MINI,
        119,
        "exceeded",
    )
    assert (line.over_limit, line.periods) == (1, 31)
    assert line.current is None  # the statement was generated in November
    assert (
        "| search-daily | Search Summaries (application) | day | 2026-10-05 | 0.0008 USD | "
        "0.0009 USD | 119% | exceeded |  | 1 of 31 |"
    ) in to_markdown(result, 4)


def test_the_stored_rules_are_used_by_default(cli_ledger, books):
    with books.begin() as conn:
        save_rules_version(
            conn, load_rules(RULES), source_path=str(RULES), actor="test", reason="reviewed"
        )
    result = statement(books)  # no rules given
    assert result.rules_source.startswith("stored version 1 (loaded ")
    assert result.tie_out()["USD"]["unallocated_pool"] == 0
    assert {r.charge.rule.id for o in result.owners for r in o.received} == {
        "platform-proportional-q4",
        "platform-fixed-oct-h2",
    }
    assert statement(books, rules=[]).tie_out()["USD"]["shared_allocations"] == 0
    shown = CliRunner().invoke(app, ["chargeback", "--period", "2026-10", "--format", "json"])
    document = json.loads(shown.output)
    assert document["tie_out"]["rows"][0]["unallocated_pool"] == "0"
    assert document["header"]["shared_cost_rules"].startswith("stored version 1")


@pytest.mark.parametrize("stored_rules", [False, True])
def test_listing_statements_builds_none(books, stored_rules):
    """The statements a month has are found from its rollups and allocation entries: the
    owners of the company statement, without building one (no budget or price query, which
    only a built statement makes, and fewer queries than building it)."""
    if stored_rules:  # shared splits: owners with a share of a pool
        with books.begin() as conn:
            save_rules_version(conn, load_rules(RULES), source_path=str(RULES), actor="t")
    queries: list[str] = []
    with books.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", lambda *a: queries.append(a[2]))
        built = scopes_of(build_statement(conn, OCTOBER).owners)
        building = len(queries)
        assert re.search(r"\b(budgets|price_entries)\b", " ".join(queries))
        queries.clear()
        listed = statement_scopes(conn, OCTOBER)
    assert listed == built and len(listed) > 5
    assert 0 < len(queries) < building
    assert not re.search(r"\b(budgets|price_entries)\b", " ".join(queries))


# --- PDF ---------------------------------------------------------------------------------


def test_pdf_statement(cli_ledger, books, tmp_path):
    pdf = to_pdf(statement(books, rules=rules()))
    assert pdf[:5] == b"%PDF-" and len(pdf) > 5000
    out = tmp_path / "statement.pdf"
    result = CliRunner().invoke(
        app,
        [
            "chargeback",
            "--period",
            "2026-10",
            "--owner",
            "cost-center:CC-100",
            "--format",
            "pdf",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:5] == b"%PDF-"
    refused = CliRunner().invoke(app, ["chargeback", "--period", "2026-10", "--format", "pdf"])
    assert refused.exit_code == 2 and "give --output FILE.pdf" in refused.output


def test_each_currency_has_its_own_tables_that_add_up(seeded, tmp_path):
    from factories import SHEET

    from spendtrail.ledger.prices import add_entries
    from spendtrail.pricing import load_sheet

    euro = tmp_path / "euro.yaml"
    euro.write_text(SHEET.replace("USD", "EUR").replace("cometapi", "mistral"))
    with seeded.begin() as conn:
        add_entries(conn, load_sheet(euro), actor="test")

    def call(application, provider):
        return new_event(
            started_at=datetime(2026, 10, 5, 12, tzinfo=UTC),
            provider=provider,
            model_requested="gpt-4o-mini",
            context=AllocationContext(
                application=application, environment="production", workload_class="batch"
            ),
            usage=Usage(input_tokens=1000, output_tokens=500),
        )

    Ingester(seeded).ingest_events(
        [
            call("search-summaries", "cometapi"),
            call("search-summaries", "mistral"),
            call("contract-review", "mistral"),
        ]
    )
    result = statement(seeded)
    assert result.currencies() == ["EUR", "USD"]
    text = to_markdown(result, 4)
    tables = md_tables(text)
    header, lines, totals = tables["Charges by application (EUR)"]
    assert [(row[0], row[header.index("Calls")]) for row in lines] == [
        ("Contract Review", "1"),
        ("Search Summaries", "1"),
    ]
    assert totals[header.index("Total EUR")] == "0.0009"
    header, lines, totals = tables["Charges by application (USD)"]
    assert [(row[0], row[header.index("Total USD")]) for row in lines] == [
        ("Search Summaries", "0.0004")  # 0.00045, half to even
    ]
    euro_part, dollar_part = text.split("## Charges by application (USD)")
    assert assert_tables_add_up(euro_part.replace(" (EUR)", ""), "EUR") == {Decimal("0.0009")}
    dollar_part = "## Charges by application" + dollar_part.replace(" (USD)", "")
    assert assert_tables_add_up(dollar_part) == {Decimal("0.0004")}
