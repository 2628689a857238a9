"""The linter and the credential masking behind it: planted secrets of every kind, raw prompts,
unsupported claims with and without sources, and ordinary text that must stay unflagged.

Test credentials are assembled at run time so no key-shaped literal sits in the repository.
"""

from __future__ import annotations

import random
import string
from datetime import date

import pytest

from spendtrail.evidence import LINT_CODES, Source, lint
from spendtrail.redact import PLACEHOLDER, find_secrets, redact

_RNG = random.Random(20261122)


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        value = "".join(_RNG.choice(alphabet) for _ in range(n))
        # Keep the fixture key-like: all three character classes present.
        if any(c.isdigit() for c in value) and any(c.isupper() for c in value):
            return value


ALNUM = _random(48)
SECRETS: list[tuple[str, str, str]] = [
    # (expected kind, text, the secret itself)
    ("api_key", "OpenAI key {} in the runbook", "sk-" + ALNUM),
    ("api_key", "CometAPI key: {}", "sk-" + _random(48)),
    ("openai_project_key", "project key {}", "sk-" + "proj-" + _random(60, ALNUM + "_-")),
    ("anthropic_key", "key {} was pasted", "sk-" + "ant-api03-" + _random(80, ALNUM + "_-")),
    ("gateway_key", "the gateway key {} maps to search", "sk-" + "st-" + _random(43, ALNUM + "_-")),
    ("bearer_token", "curl -H 'Authorization: Bearer {}'", _random(40)),
    ("authorization_header", "Authorization: Basic {}", "dXNlcjpwYXNzd29yZDEyMw=="),
    ("aws_access_key", "aws key id {}", "AKIA" + _random(16, string.ascii_uppercase + "234567")),
    ("secret_assignment", "api_key={} in .env", _random(20)),
    ("secret_assignment", 'password: "{}"', "hunter2-" + _random(6)),
    ("secret_assignment", "x-api-key: {}", _random(24)),
    ("secret_assignment", "AWS_SECRET_ACCESS_KEY={}", _random(40, ALNUM + "/+")),
    ("secret_assignment", "export HF_TOKEN={}", "hf_" + _random(12)),
    ("jwt", "session {}", "eyJ" + _random(20) + ".eyJ" + _random(30) + "." + _random(43)),
    ("google_api_key", "maps key {}", "AIza" + _random(35)),
    ("github_token", "token {} for CI", "ghp_" + _random(36)),
    ("slack_token", "webhook token {}", "xoxb-" + _random(24)),
    ("high_entropy_token", "left in the log: {} (unlabelled)", _random(40)),
]
PRIVATE_KEY_BODY = _random(64, ALNUM + "+/")
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + PRIVATE_KEY_BODY
    + "\n"
    + _random(64, ALNUM + "+/")
    + "\n-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(("kind", "template", "secret"), SECRETS, ids=[s[0] for s in SECRETS])
def test_planted_secret_is_flagged_and_never_echoed(kind: str, template: str, secret: str) -> None:
    text = "Review of October usage.\n" + template.format(secret) + "\nNothing else."
    findings = lint(text)
    assert [(f.code, f.kind) for f in findings] == [("secret", kind)]
    finding = findings[0]
    assert finding.line == 2
    assert text[finding.span[0] : finding.span[1]] == secret
    assert secret not in finding.message and secret not in finding.excerpt
    assert PLACEHOLDER in finding.excerpt
    masked = redact(text)
    assert secret not in masked and PLACEHOLDER in masked
    assert masked.startswith("Review of October usage.\n") and masked.endswith("\nNothing else.")


def test_private_key_block_is_flagged_whole() -> None:
    text = "handoff notes\n" + PRIVATE_KEY + "\nend"
    findings = lint(text)
    assert [(f.code, f.kind) for f in findings] == [("secret", "private_key")]
    assert findings[0].line == 2
    assert PRIVATE_KEY_BODY not in findings[0].excerpt
    assert redact(text) == f"handoff notes\n{PLACEHOLDER}\nend"


def test_long_line_excerpt_is_cut_around_the_secret_without_leaking_it() -> None:
    secret = "sk-" + _random(48)
    text = "x " * 150 + f"api_key={secret} " + "y " * 150
    (finding,) = lint(text)
    assert finding.excerpt.startswith("…") and finding.excerpt.endswith("…")
    assert "api_key=" + PLACEHOLDER in finding.excerpt
    assert not any(secret[i : i + 8] in finding.excerpt for i in range(len(secret) - 8))


def test_redact_keeps_the_name_of_an_assigned_secret() -> None:
    secret = _random(24)
    assert redact(f'{{"api_key": "{secret}", "model": "gpt-4o"}}') == (
        f'{{"api_key": "{PLACEHOLDER}", "model": "gpt-4o"}}'
    )


@pytest.mark.parametrize(
    "text",
    [
        "Use <API_KEY_PLACEHOLDER> in examples.",
        "Authorization: Bearer <API_KEY_PLACEHOLDER>",
        "api_key=<API_KEY_PLACEHOLDER>",
        'OPENAI_API_KEY="<API_KEY_PLACEHOLDER>"',
        "x-api-key: <API_KEY_PLACEHOLDER>",
    ],
)
def test_the_sanctioned_placeholder_is_allowed(text: str) -> None:
    assert lint(text) == []
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "placeholder"),
    [
        ("export OPENAI_API_KEY=<YOUR_KEY>", "<YOUR_KEY>"),
        ("key: sk-xxxx", "sk-xxxx"),
        ("use sk-proj-XXXXXXXX here", "sk-proj-XXXXXXXX"),
        ("Authorization: Bearer <your-api-token>", "<your-api-token>"),
        ("the key sk-... goes in the vault", "sk-..."),
    ],
)
def test_other_placeholders_are_flagged_as_credential_shaped(text: str, placeholder: str) -> None:
    findings = lint(text)
    assert [f.code for f in findings] == ["credential_placeholder"]
    assert text[findings[0].span[0] : findings[0].span[1]] == placeholder
    assert "<API_KEY_PLACEHOLDER>" in findings[0].message
    assert redact(text) == text  # a placeholder is not a secret to mask


RAW = [
    ("chat_message", 'sample: {"role": "user", "content": "Summarize the contract"}'),
    ("messages_array", 'body was {"model": "gpt-4o", "messages": [ ... ]}'),
    ("response_body", '{"id": "chatcmpl-1", "choices": [{"index": 0}]}'),
    ("prompt_value", '{"prompt": "' + "Please draft a reply to the customer " * 3 + '"}'),
    ("labelled_block", "Prompt: " + "summarize the customer ticket and the account history " * 3),
    ("labelled_block", "notes\n\nresponse:\n" + "The assistant answered at length. " * 5),
    ("long_quote", 'The model said "' + "we will process the refund for you " * 8 + '" today.'),
]


@pytest.mark.parametrize(("kind", "text"), RAW, ids=[r[0] for r in RAW])
def test_raw_prompts_and_responses_are_flagged(kind: str, text: str) -> None:
    assert ("raw_content", kind) in [(f.code, f.kind) for f in lint(text)]


@pytest.mark.parametrize(
    "text",
    [
        "response: 200 OK within the smoke test",
        "prompt: summarized, not stored",
        '{"notes": "' + "Owner and unit confirmed against the owner map. " * 8 + '"}',
        'Safe wording: "Shared usage needs an explicit shared-cost decision."',
    ],
)
def test_short_labels_sanitized_summaries_and_short_quotes_are_not_raw(text: str) -> None:
    assert lint(text) == []


PRICING = Source(
    "cometapi-pricing",
    "https://apidoc.cometapi.com/pricing/about-pricing",
    date(2026, 11, 1),
    covers=frozenset({"price", "discount", "billing_treatment"}),
)
STATUS = Source("provider-status", "https://status.example.com/", date(2026, 11, 1))  # any kind
FRAMEWORK = Source(
    "finops-allocation",
    "https://www.finops.org/framework/capabilities/allocation/",
    date(2026, 11, 1),
    covers=frozenset(),
)
KNOWN = {s.id: s for s in (PRICING, STATUS, FRAMEWORK)}

CLAIMS = [
    ("price", "The model costs $0.15 per 1M input tokens"),
    ("price", "Output is 0.60 USD per 1M tokens"),
    ("price", "Cached input is 0.075 per 1k tokens"),
    ("price", "October spend for the team was €1,234.50"),
    ("discount", "The team gets 20% off list price"),
    ("discount", "A 15% rebate applies after the first month"),
    ("discount", "The account is on a volume discount"),
    ("rate_limit", "The key is limited to 500 RPM"),
    ("rate_limit", "We may send 3,000 requests per minute"),
    ("rate_limit", "The TPM quota is 2M for this account"),
    ("uptime", "CometAPI offers 99.9% uptime"),
    ("uptime", "The SLA is 99.95% monthly"),
    ("support_outcome", "Support confirmed the credit for the outage"),
    ("support_outcome", "The refund was approved on the ticket"),
    ("billing_treatment", "Failed requests are not billed"),
]


@pytest.mark.parametrize(("kind", "sentence"), CLAIMS, ids=[c[1][:30] for c in CLAIMS])
def test_unsupported_claims_are_flagged_and_a_known_source_clears_them(
    kind: str, sentence: str
) -> None:
    findings = lint(sentence + ".", KNOWN)
    assert [f.code for f in findings] == [f"unsupported_{kind}"]
    assert f"unsupported_{kind}" in LINT_CODES
    assert "cites no source" in findings[0].message
    source = "cometapi-pricing" if kind in PRICING.covers else "provider-status"
    assert lint(f"{sentence} [src:{source}].", KNOWN) == []
    # A citation standing alone right after the sentence belongs to it.
    assert lint(f"{sentence}. [src:{source}]", KNOWN) == []
    # Plain ids are enough when no Source objects are at hand.
    assert lint(f"{sentence} [src:{source}].", {source}) == []


@pytest.mark.parametrize(("kind", "sentence"), CLAIMS[:1] + CLAIMS[7:8])
def test_a_citation_elsewhere_does_not_support_a_claim(kind: str, sentence: str) -> None:
    code = f"unsupported_{kind}"
    other_sentence = f"{sentence}. The owner map was checked [src:provider-status]."
    assert [f.code for f in lint(other_sentence, KNOWN)] == [code]
    other_line = f"{sentence}.\n[src:provider-status]"
    assert [f.code for f in lint(other_line, KNOWN)] == [code]


def test_unknown_and_non_covering_sources_do_not_support_a_claim() -> None:
    (unknown,) = lint("The model costs $0.15 per 1M tokens [src:price-blog].", KNOWN)
    assert unknown.code == "unsupported_price" and "price-blog, not a known source" in (
        unknown.message
    )
    (framework,) = lint("The model costs $0.15 per 1M tokens [src:finops-allocation].", KNOWN)
    assert framework.code == "unsupported_price" and "does not cover price" in framework.message
    assert lint("Costs $0.15 [src:finops-allocation, cometapi-pricing].", KNOWN) == []
    assert lint("Costs $0.15 [src:finops-allocation, src:cometapi-pricing].", KNOWN) == []


def test_finding_positions_count_lines() -> None:
    text = "Owner confirmed.\nUnit: tokens.\nSupport agreed to waive the fee."
    (finding,) = lint(text)
    assert finding.line == 3
    assert text[finding.span[0] : finding.span[1]] == "Support agreed"
    assert finding.excerpt == "Support agreed to waive the fee."


ORDINARY = [
    "Event 0190f1c2-7a3b-7c4d-8e5f-0123456789ab and request req_011CV4XyZabcdEFGhijkLMNop123.",
    "Request ids req-8f3a2c1d9e7b4a6f0c2d1e3f4a5b6c7d and chatcmpl-AbC123dEf456GhI789jKl012.",
    "review_id chargeback-review-20261122-001 for usage_period 2026-10.",
    "Reviewed at 2026-11-22T08:00:00Z; window 2026-10-01..2026-10-31.",
    "The team used 12,345 input tokens and 1.2M output tokens in 3,400 requests.",
    "Allocation coverage is 97% and 99.9% of usage carried an owner tag.",
    "Registry sha256 3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea loaded.",
    "Commit 170f5a6e3b2c4d5e6f708192a3b4c5d6e7f80912 holds the owner map.",
    "Source https://apidoc.cometapi.com/pricing/about-pricing?discount=10% was read.",
    "Rate-limit behaviour to verify in the docs; checked on 2026-10-05.",
    "Route unresolved pricing questions to provider support.",
    "A bearer token is required; Bearer authentication is documented.",
    "Authorization: required for every call.",
    "Unit metric: cost per 1k tokens, numerator and denominator documented.",
    "Budget owner: TokenUsageEvidenceForCometAPIBudget2026Reviews workbook.",
    "The gateway key gk_9f2c4e1a7b3d5f60 (prefix sk-st-AbC) was rotated.",
    "api_key=${OPENAI_API_KEY} is read from the environment.",
    "Tools compared: sk-learn pipelines are out of scope.",
    "MAX_TOKEN=4096 and BUDGET_KEY=search-team in the config.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_not_flagged(text: str) -> None:
    assert lint(text) == []
    assert redact(text) == text


def test_spans_never_overlap_and_the_most_specific_kind_wins() -> None:
    key = "sk-" + "ant-" + _random(40)
    text = f'headers = {{"x-api-key": "{key}", "Authorization": "Bearer {key}"}}'
    matches = find_secrets(text)
    assert [m.kind for m in matches] == ["anthropic_key", "anthropic_key"]
    assert all(a.end <= b.start for a, b in zip(matches, matches[1:], strict=False))
    assert key not in redact(text)
