"""How the console API knows who calls: password login to a session cookie with its CSRF
token, rate-limited; bearer API tokens; the trusted-header SSO mode (off by default); and
that a disabled user or a revoked token stops working at once. Every write is audited with
the user's name."""

from __future__ import annotations

import pytest
import requests
from api_server import PASSWORD, console_books, serving

from spendtrail.api.settings import ApiSettings
from spendtrail.evidence.audit_view import audit_entries
from spendtrail.ledger.users import disable_user, list_tokens, revoke_token

KEY = {"application": "search-summaries", "environment": "production"}


@pytest.fixture
def books(ledger, tmp_path):
    return console_books(ledger, tmp_path)


def _login(base: str, name: str = "owner-a", password: str = PASSWORD):
    session = requests.Session()
    answer = session.post(
        f"{base}/api/v1/auth/login", data={"name": name, "password": password}, timeout=60
    )
    return session, answer


def test_login_sets_a_guarded_cookie_and_writes_need_its_csrf_token(books, ledger):
    with serving(ledger, ApiSettings(home=books.home)) as base:
        session, answer = _login(base)
        assert answer.status_code == 200
        csrf = answer.json()["csrf_token"]
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        me = session.get(f"{base}/api/v1/me", timeout=30).json()
        assert me["name"] == "owner-a" and me["csrf_token"] == csrf

        refused = session.post(f"{base}/api/v1/keys", json=KEY, timeout=30)
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        wrong = session.post(
            f"{base}/api/v1/keys", json=KEY, timeout=30, headers={"X-CSRF-Token": csrf + "x"}
        )
        assert wrong.status_code == 403
        made = session.post(
            f"{base}/api/v1/keys", json=KEY, timeout=30, headers={"X-CSRF-Token": csrf}
        )
        assert made.status_code == 201
        # A form carries the token as a field (a form without it is refused); logging out
        # ends the session.
        assert (
            session.post(f"{base}/api/v1/auth/logout", data={"next": "/"}, timeout=30).status_code
            == 403
        )
        assert (
            session.post(
                f"{base}/api/v1/auth/logout", data={"csrf_token": csrf}, timeout=30
            ).status_code
            == 204
        )
        assert (
            requests.get(
                f"{base}/api/v1/me",
                timeout=30,
                cookies={"spendtrail_session": answer.cookies["spendtrail_session"]},
            ).status_code
            == 401
        )
    with ledger.connect() as conn:
        made_by = {e.actor for e in audit_entries(conn, object_types=("gateway_key",))}
    assert "user:owner-a" in made_by  # the write is audited with the user


def test_secure_cookies_when_configured(books, ledger):
    with serving(ledger, ApiSettings(home=books.home, secure_cookies=True)) as base:
        _, answer = _login(base)
    assert "secure" in answer.headers["set-cookie"].lower()


def test_login_is_rate_limited(books, ledger):
    settings = ApiSettings(home=books.home, login_failures=3, login_window_seconds=600)
    with serving(ledger, settings) as base:
        for _ in range(3):
            assert _login(base, password="wrong password!")[1].status_code == 401
        limited = _login(base)[1]  # even the right password waits now
        assert limited.status_code == 429
        assert 0 < int(limited.headers["Retry-After"]) <= 600
        assert _login(base, "fin")[1].status_code == 429  # the same client address


def test_a_disabled_user_and_a_revoked_token_stop_at_once(books, ledger):
    with serving(ledger, ApiSettings(home=books.home)) as base:
        session, _ = _login(base)
        token = {"Authorization": f"Bearer {books.tokens['owner-a']}"}
        assert requests.get(f"{base}/api/v1/me", headers=token, timeout=30).status_code == 200
        with ledger.begin() as conn:
            disable_user(conn, "owner-a", actor="test")
        assert requests.get(f"{base}/api/v1/me", headers=token, timeout=30).status_code == 401
        assert session.get(f"{base}/api/v1/me", timeout=30).status_code == 401
        assert _login(base)[1].status_code == 401

        fin = {"Authorization": f"Bearer {books.tokens['fin']}"}
        with ledger.begin() as conn:
            token_id = next(t.id for t in list_tokens(conn) if t.user == "fin")
            revoke_token(conn, token_id, actor="test")
        assert requests.get(f"{base}/api/v1/me", headers=fin, timeout=30).status_code == 401


def test_the_trusted_header_is_ignored_unless_configured(books, ledger):
    header = {"X-Remote-User": "root"}
    with serving(ledger, ApiSettings(home=books.home)) as base:
        assert requests.get(f"{base}/api/v1/me", headers=header, timeout=30).status_code == 401
    settings = ApiSettings(home=books.home, trusted_user_header="X-Remote-User")
    with serving(ledger, settings) as base:
        me = requests.get(f"{base}/api/v1/me", headers=header, timeout=30)
        assert me.status_code == 200 and me.json()["role"] == "admin"
        unknown = {"X-Remote-User": "mallory"}
        assert requests.get(f"{base}/api/v1/me", headers=unknown, timeout=30).status_code == 401
        # A browser behind the proxy carries the header on every request: writes need CSRF.
        assert (
            requests.post(f"{base}/api/v1/keys", json=KEY, headers=header, timeout=30).status_code
            == 403
        )
        csrf = {**header, "X-CSRF-Token": me.json()["csrf_token"]}
        assert (
            requests.post(f"{base}/api/v1/keys", json=KEY, headers=csrf, timeout=30).status_code
            == 201
        )
