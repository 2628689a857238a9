"""The shared-cost rules file: methods, effective windows, and errors naming file:line."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from factories import ROOT, example_registry

from spendtrail.allocation.rules import RulesError, load_rules, parse_rules
from spendtrail.allocation.shared import check_rules

EXAMPLE = ROOT / "examples" / "shared-cost-rules.yaml"

BASE = """\
rules:
  - id: r1
    pool: platform-shared
    method: {method}
    effective_from: 2026-10-01
    reviewed_by: finance
    reviewed_at: 2026-09-30
{extra}"""


def one(method: str, extra: str = ""):
    return parse_rules(BASE.format(method=method, extra=extra), source="rules.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source="rules.yaml")
    assert str(caught.value)  # the message itself lists them too
    return [str(p) for p in caught.value.problems]


def test_the_example_loads_and_names_known_owners():
    rules = load_rules(EXAMPLE)
    assert [r.method for r in rules] == ["central", "proportional", "fixed", "hold"]
    fixed = rules[2]
    assert fixed.recipients == ("search-summaries", "contract-review", "support-assistant")
    assert fixed.coefficients == (Fraction(1, 2), Fraction(3, 10), Fraction(1, 5))
    assert rules[3].effective_to is None
    assert rules[1].line == 18 and rules[1].where.endswith("shared-cost-rules.yaml:18")
    check_rules(rules, example_registry())


def test_fixed_coefficients_must_sum_to_exactly_100_percent():
    rule = one("fixed", "    coefficients: {a: '33.3', b: '33.3', c: '33.4'}\n")[0]
    assert sum(rule.coefficients) == 1
    found = problems(BASE.format(method="fixed",
                                 extra="    coefficients: {a: 33.3, b: 33.3, c: 33.3}\n"))
    assert found == ["rules.yaml:8: rule 'r1': coefficients: the percentages sum to 99.9%, "
                     "not exactly 100%"]
    assert problems(BASE.format(method="fixed", extra="    coefficients: {a: 100.01}\n")) == [
        "rules.yaml:8: rule 'r1': coefficients: the percentages sum to 100.01%, not exactly 100%"]
    assert "rules.yaml:8: rule 'r1': coefficients: b: 0% must be more than 0" in problems(
        BASE.format(method="fixed", extra="    coefficients: {a: 100, b: 0}\n"))
    assert problems(BASE.format(method="fixed", extra="")) == [
        "rules.yaml:2: rule 'r1': method fixed needs coefficients (recipient: percent)"]


def test_method_specific_keys():
    assert one("even", "    recipients: [a, b]\n")[0].recipients == ("a", "b")
    assert one("proportional")[0].recipients is None  # all owners with direct cost
    assert problems(BASE.format(method="central", extra="    recipients: [a]\n")) == [
        "rules.yaml:8: rule 'r1': recipients are for methods proportional and even"]
    assert problems(BASE.format(method="hold", extra="    coefficients: {a: 100}\n")) == [
        "rules.yaml:8: rule 'r1': coefficients are for method fixed only"]
    assert problems(BASE.format(method="even", extra="    recipients: [a, a]\n")) == [
        "rules.yaml:8: rule 'r1': recipients: 'a' is listed twice"]
    assert problems(BASE.format(method="spread", extra="")) == [
        "rules.yaml:4: rule 'r1': method 'spread' is not one of central, proportional, even, "
        "fixed, hold"]


def test_every_problem_is_reported_with_its_line():
    text = """\
rules:
  - id: a
    pool: p
    method: central
    effective_from: 2026-10-01
    effective_to: 2026-09-01
    reviewed_by: x
    reviewed_at: 2026-09-30
  - id: b
    method: even
    effective_from: yesterday
    reviewed_by: 5
    reviewed_at: 2026-09-30
    colour: red
"""
    assert problems(text) == [
        "rules.yaml:6: rule 'a': effective_to 2026-09-01 is not after effective_from "
        "2026-10-01 (the window is [from, to))",
        "rules.yaml:9: rule 'b': missing required key 'pool'",
        "rules.yaml:11: rule 'b': effective_from: expected a date such as 2026-10-01, got the "
        "string 'yesterday'",
        "rules.yaml:12: rule 'b': reviewed_by: expected a string, got a number (5) (quote it "
        "to make it a string)",
        "rules.yaml:14: rule 'b': unknown key 'colour'; allowed keys: id, pool, method, "
        "recipients, coefficients, effective_from, effective_to, reviewed_by, reviewed_at, note",
    ]
    assert problems("rules: [\n") [0].startswith("rules.yaml:2: malformed YAML")
    assert problems("") == ["rules.yaml:1: the file is empty; expected a mapping with the key "
                            "'rules'"]


def test_windows_of_one_pool_must_not_overlap():
    text = BASE.format(method="central", extra="") + """\
  - id: r2
    pool: platform-shared
    method: hold
    effective_from: 2026-12-01
    reviewed_by: finance
    reviewed_at: 2026-09-30
  - id: r1
    pool: other-pool
    method: hold
    effective_from: 2026-12-01
    reviewed_by: finance
    reviewed_at: 2026-09-30
"""
    assert problems(text) == [
        "rules.yaml:8: rule 'r2' overlaps rule 'r1' (line 2) for pool 'platform-shared'; one "
        "pool's windows must not overlap",
        "rules.yaml:14: duplicate rule id 'r1' (first on line 2)",
    ]


def test_effective_window_is_half_open():
    rule = one("central", "    effective_to: 2026-10-16\n")[0]
    assert rule.window(date(2026, 10, 1), date(2026, 11, 1)) == (date(2026, 10, 1),
                                                                 date(2026, 10, 16))
    assert rule.window(date(2026, 9, 1), date(2026, 10, 1)) is None
    assert rule.window(date(2026, 10, 16), date(2026, 10, 17)) is None
    assert rule.window(date(2026, 10, 15), date(2026, 10, 17)) == (date(2026, 10, 15),
                                                                   date(2026, 10, 16))


def test_recipients_must_be_registry_owners():
    rules = one("even", "    recipients: [search-summaries, serch-summaries]\n")
    with pytest.raises(RulesError) as caught:
        check_rules(rules, example_registry())
    assert str(caught.value) == ("rules.yaml:2: rule 'r1': 'serch-summaries' is not an "
                                 "application or the shared pool in the registry")
