"""Every endpoint of the console API under every role, against a served API on each backend;
and the walk that proves an owner user never receives another owner's figure, over every
operation the OpenAPI document lists (so a new endpoint cannot be left out)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import requests
from api_server import B_AMOUNTS, OWNER_A, OWNER_B, bill_text, console_books, serving

from spendtrail.api.settings import ApiSettings
from spendtrail.evidence.sample import sample_notes
from spendtrail.gateway.keys import get_key

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("root", "fin", "look", "owner-a")  # admin, finance, viewer, owner of A
EVERYONE = set(ROLES)
BOOKS_READERS = {"root", "fin", "look"}  # company-wide records
WORKERS = {"root", "fin"}
ADMINS = {"root"}


@pytest.fixture
def api(ledger, tmp_path):
    books = console_books(ledger, tmp_path)
    with serving(ledger, ApiSettings(home=books.home)) as base:
        yield base, books


def call(base: str, method: str, path: str, token: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, base + path, headers=headers, timeout=60, **kwargs)


def _groups(base: str, books) -> dict[str, str]:
    """Exception group ids by captured application."""
    queue = call(base, "GET", "/api/v1/exceptions", books.tokens["root"]).json()
    return {g["captured_application"]: g["id"] for g in queue}


def operations(base: str) -> set[tuple[str, str]]:
    document = requests.get(base + "/api/openapi.json", timeout=30).json()
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


Spec = tuple[set[str], dict]


def matrix(books, groups: dict[str, str], role: str) -> dict[tuple[str, str], Spec]:
    """(method, path template) -> (roles allowed, request arguments) for one caller."""
    p = books.period
    a_owner = "application:search-summaries" if role == "owner-a" else "company"
    note = sample_notes(p, team_owner="ana.ruiz")[0].to_dict()
    upload = {
        "files": {"file": ("registry.yaml", (ROOT / "examples/registry.yaml").read_bytes())},
        "data": {"reason": "test"},
    }
    return {
        ("GET", "/api/v1/me"): (EVERYONE, {}),
        ("GET", "/api/v1/users"): (ADMINS, {}),
        ("GET", "/api/v1/overview"): (EVERYONE, {}),
        ("GET", "/api/v1/spend"): (EVERYONE, {"params": {"period": p}}),
        ("GET", "/api/v1/spend/events"): (EVERYONE, {"params": {"period": p}}),
        ("GET", "/api/v1/exceptions"): (BOOKS_READERS, {}),
        ("GET", "/api/v1/exceptions/{group_id}"): (BOOKS_READERS, {"group_id": groups["lost-app"]}),
        ("GET", "/api/v1/bills"): (BOOKS_READERS, {}),
        ("GET", "/api/v1/reconciliations"): (BOOKS_READERS, {}),
        ("GET", "/api/v1/reconciliations/{run_id}"): (BOOKS_READERS, {"run_id": books.run_id}),
        ("GET", "/api/v1/budgets"): (EVERYONE, {}),
        ("GET", "/api/v1/alerts"): (EVERYONE, {"params": {"kind": "budget_threshold"}}),
        ("GET", "/api/v1/budgets/{budget_id}"): (EVERYONE, {"budget_id": "search-monthly"}),
        ("GET", "/api/v1/statements"): (EVERYONE, {"params": {"period": p}}),
        ("GET", "/api/v1/statements/render"): (
            EVERYONE,
            {"params": {"period": p, "owner": a_owner, "format": "csv"}},
        ),
        ("GET", "/api/v1/prices"): (EVERYONE, {}),
        ("GET", "/api/v1/evidence/reviews"): (BOOKS_READERS, {}),
        ("GET", "/api/v1/evidence/follow-ups"): (BOOKS_READERS, {}),
        ("GET", "/api/v1/evidence/handoff"): (BOOKS_READERS, {"expect": 404}),  # none written
        ("GET", "/api/v1/evidence/audit"): (BOOKS_READERS, {}),
        ("GET", "/api/v1/keys"): (EVERYONE, {}),
        ("POST", "/api/v1/keys"): (
            EVERYONE - {"look"},
            {
                "json": {"application": "search-summaries", "environment": "production"},
                "expect": 201,
            },
        ),
        ("POST", "/api/v1/keys/{key_id}/revoke"): (
            EVERYONE - {"look"},
            {"key_id": books.a_key_id, "json": {"reason": "test"}},
        ),
        ("PUT", "/api/v1/budgets/{budget_id}"): (
            EVERYONE - {"look"},
            {
                "budget_id": "search-monthly",
                "json": {
                    "scope": "application",
                    "scope_value": "search-summaries",
                    "period": "month",
                    "limit": f"{len(role)} USD",
                    "thresholds": [80],
                    "reason": "test",
                },
            },
        ),
        ("POST", "/api/v1/exceptions/{group_id}/resolve"): (
            WORKERS,
            {"group_id": groups["no-such-app"], "json": {"note": "test traffic"}, "consumes": True},
        ),
        ("POST", "/api/v1/exceptions/{group_id}/assign"): (
            WORKERS,
            {
                "group_id": groups["lost-app"],
                "json": {"application": "search-summaries", "reason": "test"},
                "consumes": True,
            },
        ),
        ("POST", "/api/v1/bills"): (
            WORKERS,
            {"files": {"file": ("bill.csv", bill_text(f"rx-{role}").encode())}, "expect": 201},
        ),
        ("POST", "/api/v1/reconciliations"): (
            WORKERS,
            {"json": {"bill_id": books.bill_id, "period": p, "reviewer": "ana"}, "expect": 201},
        ),
        ("POST", "/api/v1/statements/run"): (WORKERS, {"json": {"period": p}, "expect": 201}),
        ("POST", "/api/v1/evidence/reviews"): (WORKERS, {"json": {"note": note}, "expect": 201}),
        ("POST", "/api/v1/reference/{kind}"): (
            ADMINS,
            {**upload, "kind": "registry", "expect": 201},
        ),
        ("POST", "/api/v1/auth/login"): (set(), {}),  # tested in test_api_auth.py
        ("POST", "/api/v1/auth/logout"): (set(), {}),
    }


def _send(base: str, method: str, template: str, token: str | None, spec: dict):
    args = dict(spec)
    path = re.sub(r"\{(\w+)\}", lambda m: str(args.pop(m[1])), template)
    args.pop("expect", None)
    args.pop("consumes", None)
    return call(base, method, path, token, **args)


def test_the_matrix_names_every_operation(api):
    base, books = api
    assert set(matrix(books, _groups(base, books), "root")) == operations(base)


def test_every_endpoint_under_every_role(api):
    base, books = api
    groups = _groups(base, books)
    consumed: set[tuple[str, str]] = set()
    # Writes that close an exception group go last, so every role reads the groups first.
    for closing, role in itertools.product((False, True), ROLES):
        for (method, template), (allowed, spec) in matrix(books, groups, role).items():
            if not allowed or bool(spec.get("consumes")) != closing:
                continue
            answer = _send(base, method, template, books.tokens[role], spec)
            where = f"{role} {method} {template}: {answer.status_code} {answer.text[:200]}"
            if role not in allowed:
                assert answer.status_code == 403, where
            elif closing and (method, template) in consumed:
                assert answer.status_code == 404, where  # an earlier role closed the group
            else:
                assert answer.status_code == spec.get("expect", 200), where
                consumed.add((method, template))


def test_every_endpoint_refuses_the_unauthenticated(api):
    base, books = api
    for (method, template), (_, spec) in matrix(books, _groups(base, books), "root").items():
        if template == "/api/v1/auth/login":
            continue
        spec = {
            k: v for k, v in spec.items() if k not in ("group_id", "run_id", "budget_id", "key_id")
        }
        path = re.sub(r"\{\w+\}", "x", template)
        answer = call(
            base,
            method,
            path,
            None,
            **{k: v for k, v in spec.items() if k in ("params", "json", "files")},
        )
        assert answer.status_code == 401, f"{method} {template}: {answer.status_code}"
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        bad = call(base, method, path, "stt_not-a-token")
        assert bad.status_code == 401, f"{method} {template} with a wrong token"


# --- no figure of another owner -------------------------------------------------------------


def _b_markers(base: str, books) -> list[str]:
    """What only B's figures and records contain; and the company total, which holds B's."""
    with books.engine.connect() as conn:
        b_key = get_key(conn, books.b_key_id)
    company = call(
        base,
        "GET",
        "/api/v1/spend",
        books.tokens["root"],
        params={"period": books.period, "group_by": ""},
    ).json()["total"]["cost"]
    assert company[0]["amount"] == "0.77365"  # A's 0.00081, B's 0.772825, held 0.000015
    return [
        *OWNER_B.values(),
        *B_AMOUNTS,
        company[0]["amount"],
        *books.b_event_ids,
        "rb0",
        "rb1",
        "contract-monthly",
        b_key.id,
        b_key.key_prefix,
    ]


def _variants(books, path: str, parameters: list[dict]) -> list[dict]:
    """Query strings that ask, every way the operation allows, for B's figures."""
    names = {p["name"] for p in parameters if p["in"] == "query"}
    base = {"period": books.period} if "period" in names else {}
    asks: list[dict] = [base]
    for name in names & set(OWNER_B):
        asks.append({**base, name: OWNER_B[name]})
    if "group_by" in names:
        asks.append(
            {
                **base,
                "group_by": "application,cost_center,budget_owner,business_unit,"
                "model,provider,allocation_status,day",
            }
        )
    if "owner" in names:
        owners = [f"{k.replace('_', '-')}:{v}" for k, v in OWNER_B.items()]
        owners.append(f"application:{OWNER_A['application']}")  # A's own, nothing of B's
        for owner, fmt in itertools.product([*owners, "company"], ("json", "csv", "md", "html")):
            asks.append({**base, "owner": owner, "format": fmt})
    for name in names & {"actor", "owner", "object_type", "kind"}:
        asks.append({**base, name: "user:owner-b" if name == "actor" else "contract-review"})
    return asks


@pytest.mark.parametrize("viewer", ["owner-a"])
def test_an_owner_never_receives_another_owners_figure(api, viewer):
    base, books = api
    document = requests.get(base + "/api/openapi.json", timeout=30).json()
    ids = {
        "group_id": _groups(base, books)["lost-app"],
        "run_id": books.run_id,
        "budget_id": "contract-monthly",
        "key_id": books.b_key_id,
        "handoff_id": "x",
        "kind": "registry",
    }
    markers = _b_markers(base, books)
    token = books.tokens[viewer]
    seen, answered = 0, 0
    for template, item in document["paths"].items():
        for method, operation in item.items():
            path = re.sub(r"\{(\w+)\}", lambda m: str(ids[m[1]]), template)
            parameters = operation.get("parameters", [])
            for params in _variants(books, template, parameters):
                if method == "get":
                    answer = call(base, "GET", path, token, params=params)
                else:
                    answer = call(
                        base,
                        method.upper(),
                        path,
                        token,
                        params=params,
                        json=_b_body(template),
                        files=_b_files(template),
                    )
                seen += 1
                answered += answer.status_code == 200
                # A name the caller sent may come back as the echo of its own filter; no
                # figure of B may come back at all.
                asked = " ".join(map(str, params.values())) + path + str(_b_body(template))
                leaked = [m for m in markers if m in answer.text and m not in asked]
                assert not leaked, (
                    f"{method} {path} {params} -> {answer.status_code} "
                    f"shows {leaked}: {answer.text[:300]}"
                )
                assert answer.status_code < 500
    assert seen > 60 and answered > 20  # the walk read figures, not only refusals
    # And nothing of B's changed: its key works, its budget is as it was.
    with books.engine.connect() as conn:
        assert get_key(conn, books.b_key_id).revoked_at is None
    detail = call(base, "GET", "/api/v1/budgets/contract-monthly", books.tokens["root"]).json()
    assert detail["budget"]["limit"] == "1 USD"


def _b_body(template: str) -> dict | None:
    """Write bodies that try to act on B."""
    if template == "/api/v1/keys":
        return {"application": "contract-review", "environment": "production"}
    if template.startswith("/api/v1/budgets/"):
        return {
            "scope": "application",
            "scope_value": "contract-review",
            "period": "month",
            "limit": "999 USD",
        }
    if template.endswith("/assign"):
        return {"application": "contract-review", "reason": "mine"}
    if template.endswith("/resolve"):
        return {"note": "mine"}
    if template == "/api/v1/reconciliations":
        return {"bill_id": 1, "period": "2026-12", "reviewer": "a"}
    if template in ("/api/v1/statements/run",):
        return {"period": "2026-12"}
    return None


def _b_files(template: str) -> dict | None:
    if template in (
        "/api/v1/bills",
        "/api/v1/registry",
        "/api/v1/prices/sheet",
        "/api/v1/allocation/rules",
    ):
        return {"file": ("x.csv", bill_text("rz").encode())}
    return None


def test_an_owner_sets_budgets_and_keys_only_of_its_own(api):
    base, books = api
    token = books.tokens["owner-a"]
    mine = call(
        base,
        "POST",
        "/api/v1/keys",
        token,
        json={"application": "search-summaries", "environment": "production"},
    )
    assert mine.status_code == 201 and mine.json()["secret"].startswith("sk-st-")
    theirs = call(
        base,
        "POST",
        "/api/v1/keys",
        token,
        json={"application": "contract-review", "environment": "production"},
    )
    assert theirs.status_code == 403
    listed = call(base, "GET", "/api/v1/keys", token).json()
    assert {k["application"] for k in listed} == {"search-summaries"}
    assert "secret" not in str(listed)
    moved = call(
        base,
        "PUT",
        "/api/v1/budgets/contract-monthly",
        token,
        json={
            "scope": "application",
            "scope_value": "search-summaries",
            "period": "month",
            "limit": "5 USD",
        },
    )
    assert moved.status_code == 403  # taking over B's budget id is changing B's budget


NEW_PRICE = b"""
defaults: {provider: cometapi, currency: USD, kind: contracted, effective_from: 2026-01-01,
           source_url: https://api.cometapi.com/pricing, checked_at: 2026-10-01,
           checked_by: finance-partner}
prices:
  - model: gpt-4.1
    prices: {input_tokens: "2.00", output_tokens: "8.00"}
"""


@pytest.mark.parametrize(
    ("kind", "file", "content"),
    [
        ("registry", "registry.yaml", (ROOT / "examples/registry.yaml").read_bytes()),
        ("price-sheet", "prices.yaml", NEW_PRICE),
        (
            "shared-cost-rules",
            "rules.yaml",
            (ROOT / "examples/shared-cost-rules.yaml").read_bytes(),
        ),
    ],
)
def test_admins_load_the_reviewed_files(api, kind, file, content):
    base, books = api
    upload = {
        "files": {"file": (file, content)},
        "data": {"reason": "reviewed"},
    }
    path = f"/api/v1/reference/{kind}"
    assert call(base, "POST", path, books.tokens["fin"], **upload).status_code == 403
    loaded = call(base, "POST", path, books.tokens["root"], **upload)
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["what"] == kind
    audit = call(
        base, "GET", "/api/v1/evidence/audit", books.tokens["root"], params={"actor": "user:root"}
    ).json()
    if kind == "registry":  # the books hold this registry already: no new version
        assert loaded.json()["detail"] == "registry version 1" and audit == []
    else:
        assert audit and {a["reason"] for a in audit} == {"reviewed"}
    kept = list((books.home / "uploads").rglob(file))
    assert [p.read_bytes() for p in kept] == [content]
    bad = call(
        base, "POST", path, books.tokens["root"], files={"file": ("x.yaml", b"- not: [a mapping")}
    )
    assert bad.status_code == 400 and "x.yaml" in bad.json()["detail"]


def test_the_events_under_a_figure_are_that_figures(api):
    base, books = api
    root, owner = books.tokens["root"], books.tokens["owner-a"]
    report = call(
        base,
        "GET",
        "/api/v1/spend",
        root,
        params={"period": books.period, "group_by": "application"},
    ).json()
    for row in report["rows"]:
        application = row["key"]["application"]
        page = call(
            base,
            "GET",
            "/api/v1/spend/events",
            root,
            params={"period": books.period, "application": application},
        ).json()
        assert page["total"] == row["events"] == len(page["events"]), application
        if application == "quarantined":  # the claims, not an owner: the held usage itself
            assert {e["allocation_status"] for e in page["events"]} == {"quarantined"}
        else:
            assert {e["application"] for e in page["events"]} == {application}
    held = call(
        base,
        "GET",
        "/api/v1/spend/events",
        owner,
        params={"period": books.period, "application": "quarantined"},
    ).json()
    assert held["total"] == 0 and held["events"] == []
    day = call(
        base,
        "GET",
        "/api/v1/spend/events",
        owner,
        params={"period": books.period, "model": "gpt-4o-mini", "limit": 1},
    ).json()
    assert day["total"] == 2 and len(day["events"]) == 1
    assert day["events"][0]["cost"]["currency"] == "USD"


def test_each_user_sees_the_alerts_of_its_own_owners(api):
    base, books = api
    everything = call(base, "GET", "/api/v1/alerts", books.tokens["fin"]).json()
    assert {a["kind"] for a in everything} == {"budget_threshold", "prices_stale"}
    assert len(everything) == 3
    mine = call(base, "GET", "/api/v1/alerts", books.tokens["owner-a"]).json()
    assert [a["details"]["budget"] for a in mine] == ["search-monthly"]
    assert mine[0]["owner"].startswith("application=search-summaries")
    assert [(d["channel"], d["status"], d["attempts"]) for d in mine[0]["deliveries"]] == [
        ("team-slack", "delivered", 2)
    ]
    theirs = call(base, "GET", "/api/v1/alerts", books.tokens["owner-b"]).json()
    assert [a["details"]["budget"] for a in theirs] == ["contract-monthly"]
    assert theirs[0]["deliveries"] == []
    # The overview counts and lists them; a budget lists its own.
    overview = call(base, "GET", "/api/v1/overview", books.tokens["owner-a"]).json()
    assert overview["alerts_this_month"] == 1
    assert [a["title"] for a in overview["latest_alerts"]] == ["Budget search-monthly reached 50%"]
    # The forecast is an estimate: to the cent, not to the pico-unit.
    assert [len(f["amount"].split(".")[1]) for f in overview["forecast_month_end"]] == [2]
    assert (
        call(base, "GET", "/api/v1/overview", books.tokens["root"]).json()["alerts_this_month"] == 3
    )
    budget = call(base, "GET", "/api/v1/budgets/contract-monthly", books.tokens["root"]).json()
    assert [a["details"]["budget"] for a in budget["alerts"]] == ["contract-monthly"]
