"""Who sees what, as pure rules: the role table, the scope's ``admits`` and its SQL form
(the two must select the same rows), scope parsing, and the login limiter's window."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from spendtrail.access.principal import Principal
from spendtrail.access.ratelimit import LoginLimiter
from spendtrail.access.roles import GRANTS, AccessDenied, Permission, Role, allowed
from spendtrail.access.scope import EVERYONE, OWNER_ATTRIBUTES, AccessScope, parse_scope
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.scoping import scope_condition
from spendtrail.ledger.users import UserError, fitting_scope

VALUES = st.sampled_from(["a", "b", "c", None])
ROWS = st.lists(
    st.fixed_dictionaries(
        {
            **{a: VALUES for a in OWNER_ATTRIBUTES},
            "allocation_status": st.sampled_from(["allocated", "shared", "quarantined"]),
        }
    ),
    max_size=20,
)
SCOPES = st.one_of(
    st.just(EVERYONE),
    st.builds(
        AccessScope,
        **{a + "s": st.frozensets(st.sampled_from("abc"), max_size=2) for a in OWNER_ATTRIBUTES},
    ),
)

table = sa.Table(
    "owned",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    *(sa.Column(a, sa.String) for a in OWNER_ATTRIBUTES),
    sa.Column("allocation_status", sa.String),
)
engine = sa.create_engine("sqlite://")
table.metadata.create_all(engine)


@settings(max_examples=200, deadline=None)
@given(ROWS, SCOPES)
def test_sql_selects_exactly_the_rows_admits_keeps(rows, scope):
    with engine.begin() as conn:
        conn.execute(table.delete())
        if rows:
            conn.execute(table.insert(), [{"id": i, **r} for i, r in enumerate(rows)])
        chosen = set(
            conn.execute(sa.select(table.c.id).where(scope_condition(scope, table))).scalars()
        )
    kept = {
        i
        for i, r in enumerate(rows)
        if scope.admits(r, quarantined=r["allocation_status"] == "quarantined")
    }
    assert chosen == kept


def test_a_scoped_user_sees_its_owners_and_no_quarantined_usage():
    scope = parse_scope(["application:search", "cost-center:CC-1"])
    assert scope.admits({"application": "search", "cost_center": "CC-9"})
    assert scope.admits({"application": "other", "cost_center": "CC-1"})
    assert not scope.admits({"application": "other", "cost_center": "CC-9"})
    assert not scope.admits({"application": "search"}, quarantined=True)
    assert scope.admits_owner("cost_center", "CC-1") and not scope.admits_owner(
        "budget_owner", "CC-1"
    )
    assert scope.items() == ["application:search", "cost-center:CC-1"]
    assert EVERYONE.admits({}, quarantined=True) and parse_scope(["*"]) is EVERYONE


@pytest.mark.parametrize("item", ["search", "team:x", "application:", "cost_center:CC-1"])
def test_a_scope_item_names_its_kind(item):
    with pytest.raises(SpendtrailError, match="expected"):
        parse_scope([item])


def test_roles_fit_their_scopes():
    assert fitting_scope(Role.finance, []) is EVERYONE
    assert fitting_scope(Role.viewer, []) is EVERYONE
    assert fitting_scope(Role.viewer, ["business-unit:x"]).business_units == {"x"}
    with pytest.raises(UserError, match="needs --scope"):
        fitting_scope(Role.owner, [])
    with pytest.raises(UserError, match="needs --scope"):
        fitting_scope(Role.owner, ["*"])
    with pytest.raises(UserError, match="every owner"):
        fitting_scope(Role.admin, ["application:x"])


def test_the_role_table():
    assert set(GRANTS) == set(Permission)
    assert all(allowed(Role.admin, p) for p in Permission)
    assert [p for p in Permission if allowed(Role.viewer, p)] == [
        Permission.read,
        Permission.read_books,
    ]
    assert not allowed(Role.owner, Permission.read_books)
    assert allowed(Role.owner, Permission.manage_keys)
    assert not allowed(Role.finance, Permission.load_reference)


def test_records_of_every_owner_need_an_every_owner_scope():
    viewer = Principal(1, "v", Role.viewer, parse_scope(["application:a"]))
    with pytest.raises(AccessDenied, match="only its own"):
        viewer.require_everyone()
    Principal(2, "w", Role.viewer, EVERYONE).require_everyone()
    with pytest.raises(AccessDenied, match="may not"):
        Principal(3, "o", Role.owner, parse_scope(["application:a"])).require_everyone()


def test_the_login_limiter_window():
    limiter = LoginLimiter(limit=2, window=10)
    keys = ["user:a", "client:1"]
    assert limiter.retry_after(keys, 0) == 0
    limiter.failed(keys, 0)
    limiter.failed(["user:a"], 4)
    assert limiter.retry_after(["user:a"], 5) == 5  # the first failure leaves at t=10
    assert limiter.retry_after(["client:1"], 5) == 0  # one failure from this address
    assert limiter.retry_after(["user:a"], 10) == 0
    assert limiter.retry_after(["user:b"], 10) == 0
