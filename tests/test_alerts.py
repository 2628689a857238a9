"""Each kind of alert, raised from a real ledger state (registry, prices, ingested events,
budgets, bills), on SQLite and PostgreSQL; a second check alerts nothing again. The pure
rules (forecast, baseline) and the alerts file's errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlalchemy as sa

from spendtrail.alerts import (
    COMPANY,
    KINDS,
    AlertsConfig,
    AlertsConfigError,
    Owner,
    Rules,
    check_alerts,
    list_alerts,
    parse_config,
)
from spendtrail.alerts.findings import CHECKS
from spendtrail.alerts.rules import anomaly, baseline, forecast
from spendtrail.budgets import Budget, save_budget
from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.schema import budget_alerts
from spendtrail.money import to_pico
from spendtrail.periods import parse_period
from spendtrail.reconcile import import_bill, parse_tolerance, reconcile

# 1000 input + 500 output tokens of gpt-4o-mini: 0.00045 USD (tests/factories.py SHEET).
CALL = Decimal("0.00045")
SEARCH = Owner("search-summaries", "CC-100", "consumer", "ana.ruiz")


def _spend(engine, application: str, day: date, calls: int = 1, rid: str | None = None):
    events = [
        new_event(
            started_at=datetime.combine(day, time(12), UTC),
            provider="cometapi",
            model_requested="gpt-4o-mini",
            provider_request_id=rid,
            context=AllocationContext(
                application=application, environment="production", workload_class="batch"
            ),
            usage=Usage(input_tokens=1000, output_tokens=500),
        )
        for _ in range(calls)
    ]
    assert Ingester(engine).ingest_events(events).inserted == calls


def _budget(
    engine, budget_id: str, limit: str, *, soft=(), scope="application", value="search-summaries"
) -> None:
    with engine.begin() as conn:
        save_budget(
            conn,
            Budget(budget_id, scope, value, "month", to_pico(Decimal(limit)), "USD", tuple(soft)),
            actor="test",
            reason="test",
        )


def _check(engine, at: datetime, *kinds: str, rules: Rules | None = None):
    config = AlertsConfig(rules=rules or Rules())
    return check_alerts(engine, config, now=at, kinds=kinds or KINDS)


def test_every_kind_has_one_check_in_order():
    assert tuple(kind for kind, _ in CHECKS) == KINDS


def test_a_soft_threshold_then_the_hard_limit_each_alert_once(seeded):
    _budget(seeded, "search-monthly", "0.0009", soft=(50,))
    _spend(seeded, "search-summaries", date(2026, 10, 5))
    at = datetime(2026, 10, 8, 9, tzinfo=UTC)
    first = _check(seeded, at, "budget_threshold", "budget_hard_limit")
    assert [(a.kind, a.key, a.owner) for a in first.new] == [
        ("budget_threshold", "budget_threshold:search-monthly:2026-10-01:50", SEARCH)
    ]
    assert first.new[0].message == (
        "budget 'search-monthly' (application=search-summaries, month 2026-10) reached its 50% "
        "threshold: spent 0.00045 USD of 0.0009 USD"
    )
    _spend(seeded, "search-summaries", date(2026, 10, 6))
    second = _check(seeded, at, "budget_threshold", "budget_hard_limit")
    assert [(a.kind, a.key) for a in second.new] == [
        ("budget_hard_limit", "budget_hard_limit:search-monthly:2026-10-01")
    ]
    assert "spent 0.0009 USD of 0.0009 USD (100%)" in second.new[0].message
    assert _check(seeded, at, "budget_threshold", "budget_hard_limit").new == []
    # One source: the crossing is the budgets' own budget_alerts row, written once.
    with seeded.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(budget_alerts)).scalar() == 1


def test_a_budget_on_a_cost_center_names_its_business_unit(seeded):
    _budget(seeded, "cc100", "0.0004", soft=(100,), scope="cost_center", value="CC-100")
    _spend(seeded, "search-summaries", date(2026, 10, 5))
    found = _check(seeded, datetime(2026, 10, 8, tzinfo=UTC), "budget_threshold").new
    assert [a.owner for a in found] == [Owner(cost_center="CC-100", business_unit="consumer")]


def test_the_forecast_crosses_the_limit_before_the_month_ends(seeded):
    """0.00045 USD a day for 3 days: 31 days make 0.01395 USD, over 0.01 USD, passed on the
    23rd (22 days make 0.0099)."""
    _budget(seeded, "search-monthly", "0.01")
    for day in (1, 2, 3):
        _spend(seeded, "search-summaries", date(2026, 10, day))
    too_early = _check(seeded, datetime(2026, 10, 3, 20, tzinfo=UTC), "budget_forecast")
    assert too_early.new == []  # two completed days: below forecast_min_days
    found = _check(seeded, datetime(2026, 10, 4, 10, tzinfo=UTC), "budget_forecast").new
    assert [(a.key, a.owner) for a in found] == [
        ("budget_forecast:search-monthly:2026-10-01", SEARCH)
    ]
    assert found[0].details["forecast"] == "0.01395 USD"
    assert found[0].details["crossing_day"] == "2026-10-23"
    assert "0.00135 USD in the 3 completed days" in found[0].message


def test_a_day_far_above_its_own_baseline_is_an_anomaly(seeded):
    """search-summaries spends one call a day for 14 days, then 20 calls; contract-review
    spends one call a day throughout (no alert)."""
    for n in range(1, 16):
        day = date(2026, 10, n)
        _spend(seeded, "search-summaries", day, calls=20 if n == 15 else 1)
        _spend(seeded, "contract-review", day)
    rules = Rules(anomaly_min_increase=Decimal("0.001"))
    at = datetime(2026, 10, 15, 18, tzinfo=UTC)
    found = _check(seeded, at, "spend_anomaly", rules=rules).new
    assert [(a.key, a.owner) for a in found] == [
        ("spend_anomaly:search-summaries:USD:2026-10-15", SEARCH)
    ]
    assert found[0].details["baseline"] == "0.00045 USD"
    assert found[0].details["spent"] == "0.009 USD"
    assert found[0].details["times"] == "20.0"
    assert "baseline of 0.00045 USD (the median of its 14 days before)" in found[0].message
    assert _check(seeded, at, "spend_anomaly", rules=rules).new == []
    # The same day is not far enough above the baseline for the default 1 USD minimum.
    with seeded.begin() as conn:
        conn.execute(sa.text("DELETE FROM alerts"))
    assert _check(seeded, at, "spend_anomaly").new == []


def test_unallocated_usage_over_the_threshold(seeded):
    _spend(seeded, "search-summaries", date(2026, 10, 5), calls=3)
    _spend(seeded, "no-such-app", date(2026, 10, 5))  # quarantined: 25% of the cost
    found = _check(seeded, datetime(2026, 10, 8, tzinfo=UTC), "unallocated").new
    assert [(a.key, a.owner, a.details["share"]) for a in found] == [
        ("unallocated:2026-10:USD", COMPANY, "25.00%")
    ]
    assert found[0].message.startswith("unallocated USD spend is 25.00% of 2026-10")
    higher = Rules(unallocated_threshold=Fraction(30, 100))
    with seeded.begin() as conn:
        conn.execute(sa.text("DELETE FROM alerts"))
    assert _check(seeded, datetime(2026, 10, 8, tzinfo=UTC), "unallocated", rules=higher).new == []


def test_a_failed_reconciliation(seeded, tmp_path):
    _spend(seeded, "search-summaries", date(2026, 10, 5), rid="r1")
    bill = tmp_path / "bill.csv"
    at = int(datetime(2026, 10, 5, 12, tzinfo=UTC).timestamp())
    bill.write_text(
        "created_at,type,token_name,model_name,prompt_tokens,completion_tokens,quota,"
        f"is_stream,request_id,group\n{at},2,k,gpt-4o-mini,1000,500,250,false,r1,default\n"
    )
    bill_id = import_bill(seeded, bill, "cometapi-csv", actor="ana").bill.id
    record = reconcile(
        seeded,
        period=parse_period("2026-10"),
        bill_id=bill_id,
        reviewer="Ben",
        actor="ana",
        tolerance=parse_tolerance("1%"),
    )
    assert record.result == "fail"
    found = _check(seeded, datetime.now(UTC), "reconciliation_failed").new
    assert [(a.key, a.owner) for a in found] == [(f"reconciliation_failed:{record.id}", COMPANY)]
    assert found[0].message == (
        f"reconciliation {record.id} of the cometapi bill for 2026-10 failed: variance "
        "-0.00005 USD (-10.0000%), over the tolerance of 1% (reviewer Ben)"
    )
    assert _check(seeded, datetime.now(UTC), "reconciliation_failed").new == []


def test_stale_prices_alert_once_per_set_of_entries(seeded):
    """The sheet's two prices were checked on 2026-10-01."""
    assert _check(seeded, datetime(2026, 10, 20, tzinfo=UTC), "prices_stale").new == []
    found = _check(seeded, datetime(2026, 11, 15, tzinfo=UTC), "prices_stale").new
    assert [(a.kind, a.title) for a in found] == [
        ("prices_stale", "2 prices not checked in 30 days")
    ]
    assert "cometapi gpt-4o (checked 2026-10-01 by finance-partner, 45 days ago)" in (
        found[0].message
    )
    assert _check(seeded, datetime(2026, 11, 20, tzinfo=UTC), "prices_stale").new == []


def test_alerts_are_listed_by_owner(seeded):
    _budget(seeded, "search-monthly", "0.0009", soft=(50,))
    _budget(seeded, "contracts", "0.0009", soft=(50,), value="contract-review")
    _spend(seeded, "search-summaries", date(2026, 10, 5))
    _spend(seeded, "contract-review", date(2026, 10, 5))
    _spend(seeded, "no-such-app", date(2026, 10, 5))
    _check(seeded, datetime(2026, 10, 8, tzinfo=UTC), "budget_threshold", "unallocated")
    with seeded.connect() as conn:
        assert len(list_alerts(conn)) == 3
        mine = list_alerts(conn, owner=("business_unit", "enterprise"))
        assert [a.key for a in mine] == ["budget_threshold:contracts:2026-10-01:50"]
        assert (
            list_alerts(conn, owner=("budget_owner", "ana.ruiz"))[0].details["threshold"] == "50%"
        )


# -- the pure rules --------------------------------------------------------------------------


def test_forecast_is_linear_on_the_completed_days():
    start = date(2026, 11, 1)
    assert forecast(300, start, days_done=3, days_total=30, limit=3000) is None  # exactly
    found = forecast(301, start, days_done=3, days_total=30, limit=3000)
    assert (found.at_end, found.crossing) == (3010, date(2026, 11, 30))
    assert forecast(0, start, 3, 30, 10) is None
    assert forecast(10, start, 1, 30, 5).crossing == start  # already past on day one


def test_baseline_is_the_median_and_an_anomaly_needs_history():
    assert baseline([5, 1, 3]) == 3
    assert baseline([1, 2, 3, 10]) == Fraction(5, 2)
    rules = Rules(anomaly_min_increase=Decimal("0.000000000010"), anomaly_min_history_days=3)
    assert anomaly(30, [10, 10, 10, 0], rules) == 10
    assert anomaly(29, [10, 10, 10, 0], rules) is None  # under 3x
    assert anomaly(30, [10, 10, 0, 0], rules) is None  # two days of history
    assert anomaly(30, [10, 10, 10, 0], Rules(anomaly_min_history_days=3)) is None  # < 1 USD


# -- the alerts file -------------------------------------------------------------------------

GOOD = """\
rules:
  anomaly_factor: 4
  unallocated_threshold: 2.5%
delivery: {attempts: 3, backoff_seconds: 0.5}
channels:
  - name: finops
    type: slack
    url_env: SLACK_URL
  - name: billing
    type: webhook
    url: https://hooks.example.com/spendtrail/abcDEF1234567890xyz
    secret_env: ALERT_HMAC
    kinds: [reconciliation_failed]
  - name: search-team
    type: email
    smtp_host: 127.0.0.1
    smtp_port: 2525
    from: spendtrail@example.com
    to: [ana.ruiz@example.com]
    owner: {application: search-summaries}
"""


def test_the_alerts_file_reads_channels_scopes_and_rules():
    config = parse_config(GOOD, source="alerts.yaml")
    assert config.rules.anomaly_factor == 4
    assert config.rules.unallocated_threshold == Fraction(1, 40)
    assert (config.retry.attempts, config.retry.wait(1), config.retry.wait(2)) == (3, 0.5, 1.0)
    finops, billing, team = config.channels
    assert (finops.type, finops.target) == ("slack", "$SLACK_URL")
    assert billing.target == "https://hooks.example.com/spendtrail/<redacted>"
    assert billing.kinds == ("reconciliation_failed",)
    assert team.owner == ("application", "search-summaries")
    assert team.target == "smtp://127.0.0.1:2525 to ana.ruiz@example.com"


def test_every_problem_in_the_alerts_file_names_its_line():
    text = """\
rules:
  anomaly_factr: 3
channels:
  - name: a
    type: webhook
    url: https://example.com/x
    secret_env: not a variable
  - name: a
    type: pager
  - name: b
    type: email
    smtp_host: localhost
    to: [not-an-address]
    owner: {team: x}
    kinds: [budget_thresholds]
"""
    with pytest.raises(AlertsConfigError) as caught:
        parse_config(text, source="alerts.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "alerts.yaml: 7 problems in the alerts file"
    assert lines[1:] == [
        "alerts.yaml:2: rules: unknown key 'anomaly_factr'; did you mean 'anomaly_factor'? "
        "allowed keys: lookback_days, forecast_min_days, baseline_days, "
        "anomaly_min_history_days, price_cadence_days, anomaly_factor, anomaly_min_increase, "
        "unallocated_threshold",
        "alerts.yaml:7: channel 'a': secret_env: expected the name of an environment variable, "
        "got 'not a variable'",
        "alerts.yaml:9: channel 'a': type 'pager': expected one of slack, webhook, email",
        "alerts.yaml:10: channel 'b': missing required key 'from'",
        "alerts.yaml:13: channel 'b': to: expected an e-mail address, got 'not-an-address'",
        "alerts.yaml:14: channel 'b': owner: unknown key 'team'; allowed keys: application, "
        "cost_center, business_unit, budget_owner",
        "alerts.yaml:15: channel 'b': kinds: unknown kind 'budget_thresholds'; expected any of "
        + ", ".join(KINDS),
    ]
    assert json.dumps([p.line for p in caught.value.problems]) == "[2, 7, 9, 10, 13, 14, 15]"


def test_urls_are_shown_with_their_tokens_masked():
    from spendtrail.redact import mask_url

    assert mask_url("https://hooks.slack.com/services/T0AB12CD/B0EF34GH/R4nd0mT0kenAbCdEfGh") == (
        "https://hooks.slack.com/services/<redacted>/<redacted>/<redacted>"
    )
    assert mask_url("https://ana:pw@hooks.example.com:8443/alerts?token=abc&team=x") == (
        "https://ana:<redacted>@hooks.example.com:8443/alerts?token=<redacted>&team=<redacted>"
    )
    assert mask_url("http://127.0.0.1:8080/hooks/spendtrail") == (
        "http://127.0.0.1:8080/hooks/spendtrail"
    )
