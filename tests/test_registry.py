"""Owner registry: loading YAML files (every problem names its line) and validating contexts."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spendtrail.events.model import AllocationContext
from spendtrail.registry import (
    REASON_CODES,
    Registry,
    RegistryError,
    load_registry,
    parse_registry,
    quarantine,
)
from spendtrail.registry import model as registry_model
from spendtrail.registry.loader import FIELDS
from spendtrail.registry.model import SECTIONS, Application

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "registry.yaml"

BASE = """\
effective_from: 2026-06-01
business_units:
  - id: consumer
    name: Consumer Products
  - id: platform
    name: Platform Engineering
cost_centers:
  - id: CC-100
    name: Consumer Engineering
    business_unit: consumer
  - id: CC-300
    name: Platform
    business_unit: platform
budget_owners:
  - id: ana
    name: Ana Ruiz
    role: Director
  - id: dana
    name: Dana Kim
    role: Platform Lead
environments:
  - id: production
  - id: staging
workload_classes:
  - id: user_facing
  - id: batch
applications:
  - id: chat
    name: Chat
    business_unit: consumer
    cost_center: CC-100
    budget_owner: ana
    environments: [production, staging]
    workload_classes: [user_facing]
    default_workload_class: user_facing
  - id: reports
    name: Reports
    business_unit: consumer
    cost_center: CC-100
    budget_owner: ana
    environments: [staging]
    workload_classes: [batch, user_facing]
shared_pool:
  id: platform-shared
  name: Platform shared
  business_unit: platform
  cost_center: CC-300
  budget_owner: dana
  environments: [production, staging]
  workload_classes: [batch]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"edit anchor {old!r} must occur exactly once"
    return text.replace(old, new)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def problems(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    found = [(p.line, p.message) for p in info.value.problems]
    for problem in info.value.problems:  # the message lists each as FILE:LINE: message
        assert f"{path}:{problem.line}: {problem.message}" in str(info.value)
    return found


# --- loading: valid files -------------------------------------------------------------------


def test_base_and_example_load(tmp_path):
    registry = load_registry(write(tmp_path, BASE))
    assert registry.counts() == {
        "business_units": 2,
        "cost_centers": 2,
        "budget_owners": 2,
        "environments": 2,
        "workload_classes": 2,
        "applications": 2,
    }
    assert registry.effective_from == datetime(2026, 6, 1, tzinfo=UTC)
    assert registry.applications["reports"].workload_classes == ("batch", "user_facing")
    assert registry.shared_pool.id == "platform-shared"

    example = load_registry(EXAMPLE)
    assert len(example.business_units) == 3 and len(example.applications) == 5
    assert set(example.environments) == {"production", "staging", "development"}
    assert {"user_facing", "batch", "eval", "internal_automation"} <= set(example.workload_classes)


def test_docs_full_example_is_the_example_file():
    docs = (ROOT / "docs" / "registry.md").read_text(encoding="utf-8")
    block = re.search(r"## Full example.*?```yaml\n(.*?)```", docs, re.S)
    assert block is not None
    assert parse_registry(block.group(1)).to_document() == load_registry(EXAMPLE).to_document()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-06-01", datetime(2026, 6, 1, tzinfo=UTC)),
        ("2026-06-01T09:30:00+02:00", datetime(2026, 6, 1, 7, 30, tzinfo=UTC)),
        ("2026-06-01T09:30:00Z", datetime(2026, 6, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_effective_from_is_utc(tmp_path, value, expected):
    registry = load_registry(write(tmp_path, edit("2026-06-01", value)))
    assert registry.effective_from == expected
    assert registry.effective_from.tzinfo is UTC


def test_effective_from_is_optional(tmp_path):
    registry = load_registry(write(tmp_path, edit("effective_from: 2026-06-01\n", "")))
    assert registry.effective_from is None


def test_order_comments_and_layout_do_not_change_the_document(tmp_path):
    reordered = edit(
        "  - id: production\n  - id: staging\n",
        "  # staging first, on purpose\n  - {id: staging}\n  - id: production\n",
    )
    reordered = edit(
        "environments: [production, staging]\n    workload_classes: [user_facing]",
        "environments:\n      - staging\n      - production\n    workload_classes: [user_facing]",
        reordered,
    )
    assert parse_registry(reordered).to_document() == parse_registry(BASE).to_document()
    changed = edit("    name: Chat\n", "    name: Chat v2\n")
    assert parse_registry(changed).to_document() != parse_registry(BASE).to_document()


def test_document_round_trip():
    registry = load_registry(EXAMPLE)
    again = Registry.from_document(registry.to_document())
    assert again == registry
    assert again.to_document() == registry.to_document()


def test_damaged_document_is_an_error():
    document = load_registry(EXAMPLE).to_document()
    del document["shared_pool"]["cost_center"]
    with pytest.raises(RegistryError, match="damaged"):
        Registry.from_document(document)


def test_loader_schema_matches_the_model():
    for section, entry_type in SECTIONS.items():
        model_fields = {f.name: f for f in dataclasses.fields(entry_type)}
        assert set(FIELDS[section]) == set(model_fields), section
        for name, spec in FIELDS[section].items():
            assert spec.required == (model_fields[name].default is dataclasses.MISSING)
    assert FIELDS["shared_pool"] == FIELDS["applications"]
    assert {f.name for f in dataclasses.fields(Application)} == set(FIELDS["shared_pool"])


# --- loading: every problem names its line --------------------------------------------------

CASES = [
    # (id, old, new, needle of the expected line, occurrence, expected message fragment)
    (
        "unknown top-level key",
        "shared_pool:\n",
        "teams: []\nshared_pool:\n",
        "teams: []",
        1,
        "the registry: unknown key 'teams'; allowed keys: effective_from, business_units",
    ),
    (
        "typo top-level key",
        "applications:\n",
        "application:\n",
        "application:",
        1,
        "unknown key 'application'; did you mean 'applications'?",
    ),
    (
        "section not a list",
        "environments:\n  - id: production\n  - id: staging\n",
        "environments: production\n",
        "environments: production",
        1,
        "environments: expected a list of entries, got the string 'production'",
    ),
    (
        "entry not a mapping",
        "  - id: batch\n",
        "  - batch\n",
        "  - batch",
        1,
        "workload_classes[1]: expected a mapping, got the string 'batch'",
    ),
    (
        "unknown key in entry",
        "    default_workload_class: user_facing\n",
        "    default_workload: user_facing\n",
        "default_workload:",
        1,
        "application 'chat': unknown key 'default_workload'; did you mean "
        "'default_workload_class'? allowed keys: id, name",
    ),
    (
        "missing required key",
        "    role: Director\n",
        "",
        "  - id: ana",
        1,
        "budget owner 'ana': missing required key 'role'",
    ),
    (
        "number instead of string",
        "  - id: CC-300\n",
        "  - id: 300\n",
        "  - id: 300",
        1,
        "cost_centers[1]: id: expected a string, got a number (300) (quote it",
    ),
    (
        "boolean instead of string",
        "  - id: staging\n",
        "  - id: yes\n",
        "  - id: yes",
        1,
        "environments[1]: id: expected a string, got true/false (yes) (quote it",
    ),
    (
        "null instead of string",
        "    name: Chat\n",
        "    name: ~\n",
        "    name: ~",
        1,
        "application 'chat': name: expected a string, got nothing",
    ),
    (
        "empty string",
        "    name: Chat\n",
        "    name: ''\n",
        "    name: ''",
        1,
        "application 'chat': name: must not be empty",
    ),
    (
        "id with spaces",
        "  - id: batch\n",
        "  - id: ' batch'\n",
        "' batch'",
        1,
        "id: ' batch' must not start or end with spaces",
    ),
    (
        "id too long",
        "  - id: chat\n",
        f"  - id: {'x' * 201}\n",
        "x" * 201,
        1,
        "id: longer than 200 characters",
    ),
    (
        "key not a string",
        "    name: Reports\n",
        "    name: Reports\n    1: one\n",
        "1: one",
        1,
        "application 'reports': keys must be strings, got a number (1)",
    ),
    (
        "duplicate key",
        "    name: Chat\n",
        "    name: Chat\n    name: Chat again\n",
        "name: Chat again",
        1,
        "application 'chat': duplicate key 'name' (first on line 29)",
    ),
    (
        "duplicate id",
        "  - id: staging\n",
        "  - id: production\n",
        "  - id: production",
        2,
        "duplicate environment id 'production' (first defined on line 22)",
    ),
    (
        "cost center with unknown business unit",
        "    name: Platform\n    business_unit: platform\n",
        "    name: Platform\n    business_unit: platfrm\n",
        "business_unit: platfrm",
        1,
        "cost center 'CC-300': unknown business unit 'platfrm'; known: consumer, platform",
    ),
    (
        "application with unknown budget owner",
        "    budget_owner: ana\n    environments: [staging]",
        "    budget_owner: ana\n    environments: [staging]".replace("ana", "ann"),
        "budget_owner: ann",
        1,
        "application 'reports': unknown budget owner 'ann'; known: ana, dana",
    ),
    (
        "application with unknown cost center",
        "    cost_center: CC-100\n    budget_owner: ana\n    environments: [staging]",
        "    cost_center: CC-999\n    budget_owner: ana\n    environments: [staging]",
        "CC-999",
        1,
        "application 'reports': unknown cost center 'CC-999'; known: CC-100, CC-300",
    ),
    (
        "application with unknown business unit",
        "    business_unit: consumer\n    cost_center: CC-100\n    budget_owner: ana\n"
        "    environments: [staging]",
        "    business_unit: retail\n    cost_center: CC-100\n    budget_owner: ana\n"
        "    environments: [staging]",
        "business_unit: retail",
        1,
        "application 'reports': unknown business unit 'retail'",
    ),
    (
        "unknown environment in a list",
        "environments: [staging]",
        "environments: [staging, qa]",
        "[staging, qa]",
        1,
        "application 'reports': unknown environment 'qa'; known: production",
    ),
    (
        "unknown workload class in a list",
        "workload_classes: [batch]\n",
        "workload_classes: [batch, chat]\n",
        "[batch, chat]",
        1,
        "shared pool 'platform-shared': unknown workload class 'chat'; known: batch, user_facing",
    ),
    (
        "value listed twice",
        "environments: [staging]",
        "environments: [staging, staging]",
        "[staging, staging]",
        1,
        "application 'reports': environments lists 'staging' twice",
    ),
    (
        "empty allowed list",
        "environments: [staging]",
        "environments: []",
        "environments: []",
        1,
        "application 'reports': environments: must list at least one",
    ),
    (
        "allowed list not a list",
        "environments: [staging]",
        "environments: staging",
        "environments: staging",
        1,
        "application 'reports': environments: expected a list",
    ),
    (
        "cost center of another business unit",
        "    cost_center: CC-100\n    budget_owner: ana\n    environments: [production, staging]",
        "    cost_center: CC-300\n    budget_owner: ana\n    environments: [production, staging]",
        "cost_center: CC-300",
        1,
        "application 'chat': cost center 'CC-300' belongs to business unit 'platform', not to "
        "its business unit 'consumer'",
    ),
    (
        "default environment not allowed",
        "    environments: [staging]\n",
        "    environments: [staging]\n    default_environment: production\n",
        "default_environment: production",
        1,
        "application 'reports': default_environment 'production' is not one of its "
        "environments (staging)",
    ),
    (
        "default workload class not allowed",
        "default_workload_class: user_facing",
        "default_workload_class: batch",
        "default_workload_class: batch",
        1,
        "application 'chat': default_workload_class 'batch' is not one of its workload_classes "
        "(user_facing)",
    ),
    (
        "shared pool id is an application id",
        "  id: platform-shared\n",
        "  id: chat\n",
        "  id: chat",
        1,
        "shared pool id 'chat' is also an application id (line 28)",
    ),
    (
        "shared pool not a mapping",
        BASE[BASE.index("shared_pool:") :],
        "shared_pool: platform-shared\n",
        "shared_pool:",
        1,
        "shared pool: expected a mapping, got the string 'platform-shared'",
    ),
    (
        "missing section",
        BASE[BASE.index("shared_pool:") :],
        "",
        "effective_from",
        1,
        "the registry: missing required key 'shared_pool'",
    ),
    (
        "effective_from without offset",
        "effective_from: 2026-06-01",
        "effective_from: 2026-06-01 10:00:00",
        "effective_from",
        1,
        "effective_from: a time needs a UTC offset, e.g. 2026-06-01T10:00:00Z",
    ),
    (
        "effective_from not a date",
        "effective_from: 2026-06-01",
        "effective_from: soon",
        "effective_from",
        1,
        "effective_from: expected a date (2026-06-01)",
    ),
    (
        "effective_from impossible date",
        "effective_from: 2026-06-01",
        "effective_from: 2026-13-01",
        "effective_from",
        1,
        "effective_from: not a valid date",
    ),
    (
        "malformed YAML",
        "    name: Reports\n",
        "    name: Reports: annual\n",
        "Reports: annual",
        1,
        "malformed YAML: mapping values are not allowed here",
    ),
    (
        "malformed YAML flow",
        "environments: [staging]",
        "environments: [staging",
        "workload_classes: [batch, user_facing]",
        1,
        "malformed YAML: while parsing a flow",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "needle", "occurrence", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_problem_names_its_line(tmp_path, old, new, needle, occurrence, fragment):
    text = edit(old, new)
    found = problems(tmp_path, text)
    expected_line = line_of(text, needle, occurrence)
    matching = [(line, message) for line, message in found if fragment in message]
    assert matching, f"no problem mentions {fragment!r}: {found}"
    assert matching[0][0] == expected_line, found


def test_all_problems_are_reported_at_once_in_line_order(tmp_path):
    text = edit("  - id: batch\n", "  - id: batch\n    colour: blue\n")
    text = edit("  budget_owner: dana\n", "  budget_owner: nobody\n", text)
    text = edit("    role: Director\n", "", text)
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    lines = [problem.line for problem in info.value.problems]
    assert lines == sorted(lines)
    assert lines == [
        line_of(text, "  - id: ana"),
        line_of(text, "colour: blue"),
        line_of(text, "budget_owner: nobody"),
    ]
    message = str(info.value)
    assert message.splitlines()[0] == f"{path}: 3 problems in the registry"
    assert len(message.splitlines()) == 4


def test_a_malformed_section_is_reported_once_not_at_every_use(tmp_path):
    text = edit("environments:\n  - id: production\n  - id: staging\n", "environments: prod\n")
    assert problems(tmp_path, text) == [
        (
            line_of(text, "environments: prod"),
            "environments: expected a list of entries, got the string 'prod'",
        )
    ]


def test_null_is_not_told_to_be_quoted(tmp_path):
    [(_, message)] = problems(tmp_path, edit("    name: Chat\n", "    name: ~\n"))
    assert message == "application 'chat': name: expected a string, got nothing (~)"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", ":1: the file is empty; expected a mapping with the keys effective_from"),
        ("# only a comment\n", ":1: the file is empty"),
        ("- a\n- b\n", ":1: the registry: expected a mapping, got a list"),
        ("---\na: 1\n---\nb: 2\n", ":3: malformed YAML: expected a single document"),
        ("a: 1\nb: x\x07\n", ":2: malformed YAML: character #x0007: special characters are not"),
    ],
)
def test_unusable_files(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert f"{path}{fragment}" in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RegistryError, match=r"nope\.yaml: cannot read the registry"):
        load_registry(tmp_path / "nope.yaml")


def test_registry_error_is_a_spendtrail_error():
    from spendtrail.errors import SpendtrailError

    assert issubclass(RegistryError, SpendtrailError)


# --- validating allocation contexts ---------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(EXAMPLE)


def test_allocated_resolves_the_registry_owner(registry):
    result = registry.validate(
        AllocationContext(
            application="contract-review",
            environment="staging",
            workload_class="batch",
            job_id="nightly-42",
            tags={"ticket": "FIN-1"},
        )
    )
    assert result.status == "allocated"
    assert result.reasons == ()
    assert (
        result.business_unit,
        result.application,
        result.environment,
        result.workload_class,
        result.cost_center,
        result.budget_owner,
    ) == ("enterprise", "contract-review", "staging", "batch", "CC-200", "chen.wei")


def test_defaults_fill_missing_environment_and_workload(registry):
    result = registry.validate(AllocationContext(application="sales-email-drafts"))
    assert result.status == "allocated"
    assert (result.environment, result.workload_class) == ("production", "internal_automation")
    only_workload_default = registry.validate(
        AllocationContext(application="support-assistant", environment="development")
    )
    assert only_workload_default.status == "allocated"
    assert only_workload_default.workload_class == "user_facing"


def test_restating_the_own_owner_is_no_conflict(registry):
    result = registry.validate(
        AllocationContext(
            application="support-assistant",
            environment="production",
            business_unit="consumer",
            cost_center="CC-110",
            budget_owner="ben.okafor",
        )
    )
    assert (result.status, result.reasons) == ("allocated", ())


def test_shared_pool_usage_is_shared(registry):
    result = registry.validate(
        AllocationContext(application="platform-shared", environment="staging")
    )
    assert result.status == "shared"
    assert result.reasons == ()
    assert (result.business_unit, result.cost_center, result.budget_owner) == (
        "platform",
        "CC-300",
        "dana.kim",
    )
    assert result.workload_class == "internal_automation"
    not_allowed = registry.validate(
        AllocationContext(
            application="platform-shared", environment="staging", workload_class="user_facing"
        )
    )
    assert (not_allowed.status, not_allowed.reasons) == ("quarantined", ("workload_not_allowed",))


REASON_CASES = [
    ({"environment": "production", "workload_class": "batch"}, ("missing_owner",)),
    (
        {"application": "", "environment": "production", "workload_class": "batch"},
        ("missing_owner",),
    ),
    (
        {"application": "support-bot", "environment": "production", "workload_class": "batch"},
        ("unknown_application",),
    ),
    (
        {"application": "support-assistant", "environment": "production", "business_unit": "hr"},
        ("unknown_business_unit", "owner_conflict"),
    ),
    (
        {"application": "support-assistant", "environment": "production", "cost_center": "CC-1"},
        ("unknown_cost_center", "owner_conflict"),
    ),
    (
        {"application": "support-assistant", "environment": "production", "budget_owner": "eve"},
        ("unknown_budget_owner", "owner_conflict"),
    ),
    (
        {
            "application": "support-assistant",
            "environment": "production",
            "business_unit": "enterprise",
        },
        ("owner_conflict",),
    ),
    (
        {"application": "support-assistant", "environment": "production", "cost_center": "CC-100"},
        ("owner_conflict",),
    ),
    (
        {
            "application": "support-assistant",
            "environment": "production",
            "budget_owner": "ana.ruiz",
        },
        ("owner_conflict",),
    ),
    ({"application": "search-summaries", "workload_class": "batch"}, ("missing_environment",)),
    (
        {"application": "search-summaries", "environment": "prod", "workload_class": "batch"},
        ("unknown_environment",),
    ),
    (
        {"application": "search-summaries", "environment": "Production", "workload_class": "batch"},
        ("unknown_environment",),
    ),
    ({"application": "eval-harness", "environment": "production"}, ("environment_not_allowed",)),
    ({"application": "search-summaries", "environment": "staging"}, ("missing_workload_class",)),
    (
        {"application": "search-summaries", "environment": "staging", "workload_class": "chat"},
        ("unknown_workload_class",),
    ),
    (
        {
            "application": "search-summaries",
            "environment": "staging",
            "workload_class": "internal_automation",
        },
        ("workload_not_allowed",),
    ),
    (
        {"application": "support-bot", "environment": "prod"},
        ("unknown_application", "unknown_environment", "missing_workload_class"),
    ),
    ({}, ("missing_owner", "missing_environment", "missing_workload_class")),
    (
        {
            "application": "eval-harness",
            "environment": "production",
            "workload_class": "chat",
            "cost_center": "CC-200",
        },
        ("owner_conflict", "environment_not_allowed", "unknown_workload_class"),
    ),
]


@pytest.mark.parametrize(("fields", "reasons"), REASON_CASES)
def test_reason_codes(registry, fields, reasons):
    context = AllocationContext(**fields)
    result = registry.validate(context)
    assert result.status == "quarantined"
    assert result.reasons == reasons
    # a quarantined result keeps exactly what was captured, never a guessed owner
    for name in (
        "business_unit",
        "application",
        "environment",
        "workload_class",
        "cost_center",
        "budget_owner",
    ):
        assert getattr(result, name) == fields.get(name)


def test_every_reason_code_is_exercised_and_documented():
    exercised = {code for _, reasons in REASON_CASES for code in reasons}
    assert exercised | {"no_registry"} == set(REASON_CODES)
    docs = (ROOT / "docs" / "registry.md").read_text(encoding="utf-8")
    for code in REASON_CODES:
        assert f"| `{code}` |" in docs


def test_quarantine_without_a_registry_keeps_the_capture():
    context = AllocationContext(application="chat", cost_center="CC-9", tags={"k": "v"})
    result = quarantine(context, ("no_registry",))
    assert (result.status, result.reasons) == ("quarantined", ("no_registry",))
    assert (result.application, result.cost_center, result.environment) == ("chat", "CC-9", None)
    with pytest.raises(ValueError, match="reason codes"):
        quarantine(context, ("no_such_code",))
    with pytest.raises(ValueError, match="reason codes"):
        quarantine(context, ())


def test_docs_examples_hold(registry):
    docs = (ROOT / "docs" / "registry.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `((?:\w+: [\w.-]+(?:, )?)+)` \| (\w+)[^|]*\|([^|]*)\|$", docs, re.M)
    assert len(rows) == 6
    for context_text, status, reasons_text in rows:
        fields = dict(part.split(": ") for part in context_text.split(", "))
        result = registry.validate(AllocationContext(**fields))
        assert result.status == status, context_text
        assert result.reasons == tuple(re.findall(r"`(\w+)`", reasons_text)), context_text


def test_memo_keeps_contexts_apart(tmp_path):
    registry = load_registry(write(tmp_path, BASE))
    allowed = AllocationContext(application="chat", environment="production")
    first = registry.validate(allowed)
    assert first.status == "allocated"
    # differs in one field only: must not reuse the memoized allocation
    other = registry.validate(AllocationContext(application="reports", environment="production"))
    assert (other.status, other.reasons) == (
        "quarantined",
        ("environment_not_allowed", "missing_workload_class"),
    )
    conflict = registry.validate(
        AllocationContext(application="chat", environment="production", cost_center="CC-300")
    )
    assert conflict.reasons == ("owner_conflict",)
    # tags and job_id do not take part in the outcome, so they share the memoized result
    tagged = registry.validate(
        AllocationContext(application="chat", environment="production", job_id="j", tags={"k": "v"})
    )
    assert tagged is first
    assert registry.validate(allowed) is first


def test_memo_is_per_registry(tmp_path):
    before = load_registry(write(tmp_path, BASE))
    after = parse_registry(
        edit(
            "environments: [production, staging]\n    workload_classes: [user_facing]",
            "environments: [staging]\n    workload_classes: [user_facing]",
        )
    )
    context = AllocationContext(application="chat", environment="production")
    assert before.validate(context).status == "allocated"
    assert after.validate(context).reasons == ("environment_not_allowed",)
    assert before.validate(context).status == "allocated"


def test_memo_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_model, "_MEMO_LIMIT", 3)
    registry = load_registry(write(tmp_path, BASE))
    for n in range(10):
        result = registry.validate(AllocationContext(application=f"app-{n}"))
        assert result.application == f"app-{n}"
        assert len(registry._memo) <= 3
    chat = AllocationContext(application="chat", environment="staging")
    assert registry.validate(chat).status == "allocated"
