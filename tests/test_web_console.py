"""The web console in a real browser: Debian's Chromium driven by Playwright, against
`spendtrail serve`'s app on a loopback port, over a ledger with this month's traffic, a bill,
a reconciliation, an exception, a budget, gateway keys and two users: an admin and a team
lead (an ``owner`` scoped to one application).

Skipped, saying why, where Playwright or Chromium is not installed (``make test`` installs
both: scripts/system-packages.sh and the ``test`` extra). With SPENDTRAIL_CONSOLE_SCREENSHOTS
set to a folder (docs/console to refresh the docs), every page is saved there as PNG at
1280 px and at a phone's 390 px.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from factories import seed_books

from spendtrail.access.roles import Role
from spendtrail.alerts import AlertsConfig, check_alerts
from spendtrail.alerts.store import record_attempt
from spendtrail.api.app import create_app
from spendtrail.api.settings import ApiSettings
from spendtrail.console import budgets, keys, reconciliation
from spendtrail.console.types import BudgetRequest, KeyRequest, ReconcileRequest
from spendtrail.console.uploads import Upload
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.evidence import sample_notes
from spendtrail.evidence.store import store_checked
from spendtrail.ledger.db import open_ledger
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.users import add_user, fitting_scope
from spendtrail.money import plain_decimal
from spendtrail.web import mount

CHROMIUM = Path("/usr/bin/chromium")
playwright = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser tests need the playwright package (pip install -e '.[test]')",
)
if not CHROMIUM.exists():
    pytest.skip(
        "the browser tests need Debian's chromium at /usr/bin/chromium "
        "(scripts/system-packages.sh installs it; apt-get install chromium)",
        allow_module_level=True,
    )

ADMIN, LEAD = ("admin", "admin-password-1"), ("lead", "lead-password-1")
MINI = Decimal("0.00045")  # 1000 in + 500 out of gpt-4o-mini at 0.15 / 0.60 USD per 1M
FOUR_O = Decimal("0.0075")  # the same tokens of gpt-4o at 2.50 / 10.00
QUOTA_PER_USD = 500_000  # CometAPI bills in quota units
HEADER = (
    "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
    "is_stream,request_id,group"
)
PAGES = (
    "/",
    "/spend",
    "/spend/events?business_unit=enterprise",
    "/exceptions",
    "/reconciliation",
    "/reconciliation/1",
    "/budgets",
    "/budgets/search-monthly",
    "/statements",
    "/prices",
    "/evidence",
    "/keys",
)


def _event(day: datetime, app: str, model: str, rid: str, env: str = "production"):
    return new_event(
        started_at=day,
        provider="cometapi",
        model_requested=model,
        provider_request_id=rid,
        context=AllocationContext(application=app, environment=env, workload_class="user_facing"),
        usage=Usage(input_tokens=1000, output_tokens=500),
    )


class Books:
    """What the ledger was given, to check the pages against."""

    def __init__(self, engine, tmp: Path) -> None:
        now = datetime.now(UTC)
        self.month = f"{now:%Y-%m}"
        days = [
            now.replace(day=d, hour=0, minute=30, second=0, microsecond=0)
            for d in range(1, now.day + 1)
        ]
        events, rows = [], []
        for n, day in enumerate(days):
            for app, model, price in (
                ("search-summaries", "gpt-4o-mini", MINI),
                ("search-summaries", "gpt-4o-mini", MINI),
                ("support-assistant", "gpt-4o-mini", MINI),
                ("contract-review", "gpt-4o", FOUR_O),
            ):
                rid = f"req-{n}-{len(events)}"
                events.append(_event(day, app, model, rid))
                billed = int(price * QUOTA_PER_USD) + (5000 if model == "gpt-4o" and n == 0 else 0)
                rows.append(
                    f"{int(day.timestamp())},2,key,{model},1000,500,{billed},false,{rid},default"
                )
        self.enterprise_event = events[3].event_id  # contract-review, day 1
        # Usage that claims an application the registry does not know: the exception queue.
        self.stray = _event(days[-1], "growth-experiments", "gpt-4o-mini", "req-stray")
        events.append(self.stray)
        self.month_to_date = len(days) * (3 * MINI + FOUR_O) + MINI
        report = Ingester(engine).ingest_events(events)
        assert report.inserted == len(events)

        with engine.begin() as conn:
            admin = add_user(
                conn,
                name=ADMIN[0],
                role=Role.admin,
                scope=fitting_scope(Role.admin, []),
                password=ADMIN[1],
                actor="test",
            )
            add_user(
                conn,
                name=LEAD[0],
                role=Role.owner,
                scope=fitting_scope(Role.owner, ["application:search-summaries"]),
                password=LEAD[1],
                actor="test",
            )
        who = admin.principal
        self.bill_text = "\n".join([HEADER, *rows]) + "\n"
        bill = Upload("cometapi-usage.csv", self.bill_text.encode())
        uploaded = reconciliation.upload_bill(engine, who, tmp / "home", bill, "cometapi-csv")
        reconciliation.run_reconciliation(
            engine,
            who,
            ReconcileRequest(bill_id=uploaded.bill.id, period=self.month, reviewer="Ben Okafor"),
        )
        budgets.set_budget(
            engine,
            who,
            "search-monthly",
            BudgetRequest(
                scope="application",
                scope_value="search-summaries",
                period="month",
                # Two-thirds used whatever the day: past its 50% threshold, an alert.
                limit=f"{plain_decimal(len(days) * 2 * MINI * 3 / 2)} USD",
                thresholds=[50, 80],
                reason="test",
            ),
        )
        # The alerts check as the daily job runs it (no channel configured), and one delivery.
        self.alerts = check_alerts(engine, AlertsConfig(), deliver=False).new
        assert any(a.details.get("budget") == "search-monthly" for a in self.alerts)
        with engine.begin() as conn:
            record_attempt(
                conn,
                self.alerts[-1].id,
                "finance-slack",
                "https://hooks.slack.com/services/***",
                attempt=1,
                at=now,
                status="delivered",
                response="HTTP 200",
            )
        self.other_team_key = keys.issue(
            engine,
            who,
            KeyRequest(application="contract-review", environment="production", reason="test"),
        ).key.id
        # The sample review: one owned row that passes, one with no team owner that fails.
        with engine.begin() as conn:
            self.reviews = [
                r.note.review_id
                for r in store_checked(
                    conn, sample_notes(self.month, team_owner="ana.ruiz"), actor="test"
                )
            ]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """The console's app on a loopback port over the books; yields (base URL, Books)."""
    tmp = tmp_path_factory.mktemp("console")
    engine = open_ledger(f"sqlite:///{tmp / 'ledger.db'}")
    with engine.begin() as conn:
        seed_books(conn, tmp)
    books = Books(engine, tmp)
    app = create_app(engine, ApiSettings(home=tmp / "home"))
    mount(app)
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            pytest.fail("the console server did not start")
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", books
    server.should_exit = True
    thread.join(timeout=30)
    engine.dispose()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


def sign_in(browser, base: str, user: tuple[str, str], width: int = 1280):
    page = browser.new_page(viewport={"width": width, "height": 900}, accept_downloads=True)
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/login")  # not signed in: sent to sign in
    page.fill("input[name=name]", user[0])
    page.fill("input[name=password]", user[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


def test_wrong_password_is_refused(console, browser):
    base, _ = console
    page = browser.new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=name]", ADMIN[0])
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert "Wrong name or password" in page.inner_text("main")
    assert page.goto(f"{base}/").url.startswith(f"{base}/login")
    page.close()


def test_log_out_ends_the_session(console, browser):
    base, _ = console
    page = sign_in(browser, base, ADMIN)
    session = next(c for c in page.context.cookies() if c["name"] == "spendtrail_session")
    page.click("button:has-text('Log out')")
    assert page.url.startswith(f"{base}/login")
    page.context.add_cookies([session])  # the old cookie is no key any more
    assert page.goto(f"{base}/keys").url.startswith(f"{base}/login")
    page.close()


def test_overview_shows_this_month(console, browser):
    base, books = console
    page = sign_in(browser, base, ADMIN)
    cards = page.inner_text(".cards")
    assert f"{plain_decimal(books.month_to_date)} USD" in cards
    assert "OPEN EXCEPTIONS\n1" in cards.upper()
    assert "fail" in cards  # the planted gpt-4o overcharge: the latest reconciliation
    assert page.locator("figure.chart svg[role=img] > title").count() == 2
    assert "search-monthly" in page.inner_text("table")
    assert f"ALERTS THIS MONTH\n{len(books.alerts)}" in cards.upper()
    latest = page.inner_text("#alerts + .table-wrap")
    assert books.alerts[-1].title in latest and "finance-slack: delivered" in latest
    page.close()


def test_budgets_show_their_alerts(console, browser):
    base, books = console
    page = sign_in(browser, base, LEAD)
    page.click("nav >> text=Budgets")
    raised = [a for a in books.alerts if a.details.get("budget") == "search-monthly"]
    listed = page.inner_text("main")
    assert all(a.title in listed for a in raised)
    page.click("text=search-monthly >> nth=0")
    detail = page.inner_text("main")
    assert all(a.title in detail for a in raised)
    # The lead's view holds its own application's alerts only: no company-wide one.
    page.goto(f"{base}/")
    assert all(
        a.title not in page.inner_text("main") for a in books.alerts if not a.owner.application
    )
    page.close()


def test_a_team_lead_sees_only_their_application(console, browser):
    base, books = console
    page = sign_in(browser, base, LEAD)
    days = datetime.now(UTC).day
    cards = page.inner_text(".cards")
    assert f"{plain_decimal(days * 2 * MINI)} USD" in cards
    assert plain_decimal(books.month_to_date) not in cards
    assert "OPEN EXCEPTIONS" not in cards.upper()  # the queue holds every owner's usage
    page.goto(f"{base}/spend?by=application")
    assert page.locator("tbody td:first-child a").all_inner_texts() == ["search-summaries"]
    assert page.goto(f"{base}/spend/events?application=contract-review").ok
    assert books.enterprise_event not in page.inner_text("main")
    assert page.goto(f"{base}/reconciliation").status == 403
    page.close()


def test_drill_from_a_business_unit_to_an_event(console, browser):
    base, books = console
    page = sign_in(browser, base, ADMIN)
    page.click("nav >> text=Spend")
    page.click("tbody >> text=enterprise")  # grouped by business unit; drill into one
    assert "business unit = enterprise" in page.inner_text("main")
    assert page.locator("tbody td:first-child a").all_inner_texts() == ["contract-review"]
    page.click("tbody >> text=events")
    main = page.inner_text("main")
    assert books.enterprise_event in main
    assert "search-summaries" not in main
    with page.expect_download() as download:
        page.goto(f"{base}/spend?by=business_unit")
        page.click("text=Download these rows as CSV")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["business_unit"] for r in rows] == ["consumer", "enterprise", "quarantined", "TOTAL"]
    assert sum(Decimal(r["cost"]) for r in rows[:-1]) == Decimal(rows[-1]["cost"])
    page.select_option("select[name=filter_by]", "model")  # any dimension, by the form
    page.fill("input[name=filter_value]", "gpt-4o")
    page.click("button:has-text('Show')")
    assert "model = gpt-4o" in page.inner_text("main")
    assert page.locator("tbody td:first-child a").all_inner_texts() == ["enterprise"]
    page.close()


def test_assign_an_exception_with_a_reason(console, browser):
    base, books = console
    page = sign_in(browser, base, ADMIN)
    page.click("nav >> text=Exceptions")
    group = page.locator("section.card", has_text="growth-experiments")
    group.locator("select[name=application]").select_option("search-summaries")
    group.locator("input[name=reason]").fill("growth team's experiment, billed to search")
    group.locator("button", has_text="Assign").click()
    assert "Assigned 1 events to search-summaries" in page.inner_text(".flash")
    assert page.locator("section.card", has_text="growth-experiments").count() == 0
    page.close()


def test_upload_a_bill_and_reconcile(console, browser, tmp_path):
    base, books = console
    page = sign_in(browser, base, ADMIN)
    page.click("nav >> text=Reconciliation")
    bill = tmp_path / "december.csv"
    bill.write_text(books.bill_text)  # the bill the books were reconciled with already
    page.set_input_files("input[name=file]", bill)
    page.click("button:has-text('Upload')")
    assert "already imported as bill 1" in page.inner_text(".flash.error")
    bill.write_text(books.bill_text.rsplit("\n", 2)[0] + "\n")  # its last line left out
    page.set_input_files("input[name=file]", bill)
    page.select_option("select[name=format]", "cometapi-csv")
    page.click("button:has-text('Upload')")
    assert re.search(r"Imported bill #\d+: \d+ lines, 0 bad rows", page.inner_text(".flash"))
    imported = re.search(r"Imported bill #(\d+)", page.inner_text(".flash"))[1]
    page.select_option("select[name=bill_id]", imported)
    page.click("button:has-text('Reconcile')")
    assert re.search(r"Reconciliation #\d+: fail", page.inner_text(".flash"))
    page.click("tbody >> text=#1")
    page.select_option("select[name=kind]", "price_mismatch")
    page.click("button:has-text('Filter')")
    assert page.locator("tbody tr").all_inner_texts()[0].startswith("price_mismatch")
    assert page.locator("tbody tr").count() == 1
    page.close()


def test_download_a_statement(console, browser):
    base, books = console
    page = sign_in(browser, base, LEAD)
    page.click("nav >> text=Statements")
    row = page.locator("tr", has_text="application")
    assert row.count() == 1  # the lead's own application only
    with page.expect_download() as download:
        row.locator("a", has_text="csv").click()
    text = Path(download.value.path()).read_text()
    assert "search-summaries" in text and "contract-review" not in text
    page.close()


def test_a_team_lead_issues_a_key_and_is_refused_another_teams(console, browser):
    base, books = console
    page = sign_in(browser, base, LEAD)
    page.click("nav >> text=Keys")
    assert books.other_team_key not in page.inner_text("main")
    page.fill("#issue-key [name=application]", "search-summaries")
    page.fill("#issue-key [name=reason]", "a key for the nightly job")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#issue-key button")
    assert posted.value.status == 303  # POST-redirect-GET: the page shown is a GET
    page.wait_for_load_state()
    assert page.url == f"{base}/keys"
    secret = page.inner_text("[data-testid=new-key]")
    assert secret.startswith("sk-st-")
    issued = page.locator("tbody tr", has_text="search-summaries").count()
    page.reload()  # a reload repeats the GET: no second key, no secret
    assert secret not in page.content()
    assert page.locator("[data-testid=new-key]").count() == 0
    assert page.locator("tbody tr", has_text="search-summaries").count() == issued
    page.fill("#issue-key [name=application]", "contract-review")
    page.fill("#issue-key [name=reason]", "not my team's")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#issue-key button")
    assert answer.value.status == 403
    assert "not in its scope" in page.inner_text(".flash.error")
    assert page.locator("[data-testid=new-key]").count() == 0
    page.close()


def test_a_team_lead_sets_a_budget_on_their_own_application_only(console, browser):
    base, _ = console
    page = sign_in(browser, base, LEAD)
    page.click("nav >> text=Budgets")

    def save(budget_id: str, application: str) -> int:
        page.fill("[name=id]", budget_id)
        page.fill("[name=scope_value]", application)
        page.fill("[name=limit]", "5 USD")
        page.fill("[name=reason]", "the team's monthly cap")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("button:has-text('Save budget')")
        return answer.value.status

    assert save("search-cap", "search-summaries") == 200
    assert "Budget search-cap: created" in page.inner_text(".flash")
    assert "search-cap" in page.inner_text("table")
    assert save("review-cap", "contract-review") == 403
    assert "contract-review" in page.inner_text(".flash.error")
    assert "review-cap" not in page.inner_text("table")
    page.close()


def test_evidence_lists_review_notes_and_their_follow_up(console, browser):
    base, books = console
    page = sign_in(browser, base, ADMIN)
    page.click("nav >> text=Evidence")
    main = page.inner_text("main")
    assert all(review in main for review in books.reviews)  # the ownerless row too
    assert "fail" in main and "pass" in main
    page.close()


def test_a_post_without_the_csrf_token_is_refused(console, browser):
    base, _ = console
    page = sign_in(browser, base, ADMIN)
    answer = page.request.post(
        f"{base}/keys", form={"application": "search-summaries", "reason": "no token"}
    )
    assert answer.status == 403
    page.close()


def test_every_page_renders_and_is_saved(console, browser):
    """Each page answers 200 for the admin at desktop and phone widths; with
    SPENDTRAIL_CONSOLE_SCREENSHOTS set, each is saved there to look at."""
    base, _ = console
    folder = os.environ.get("SPENDTRAIL_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
    for width, suffix in ((1280, "1280"), (390, "phone")):
        page = sign_in(browser, base, ADMIN, width)
        for path in PAGES:
            answer = page.goto(f"{base}{path}")
            assert answer.status == 200, path
            assert page.locator("main h1").count() == 1, path
            # Nothing wider than the screen but the tables and charts, which scroll or scale.
            width_used = page.evaluate("document.documentElement.scrollWidth")
            assert width_used <= width, (path, width_used)
            if folder:
                name = path.strip("/").split("?")[0].replace("/", "-") or "overview"
                page.screenshot(path=f"{folder}/{name}-{suffix}.png", full_page=True)
        page.close()
