"""The guard on what a note or handoff may say: no secrets, no raw prompts or responses, and no
price, discount, rate limit, uptime, support outcome or billing treatment without a source.

A claim is supported only when the same line and sentence cites a known source as
``[src:<id>]`` (several: ``[src:a, b]``); a citation standing alone right after a sentence
belongs to that sentence. The linter errs towards flagging: a flagged sentence is fixed by
citing a source, rewording it as an open question, or removing it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from spendtrail.evidence.sources import Source
from spendtrail.redact import DESCRIPTIONS, find_secrets, redact

# Stable finding codes; a review note reports each as ``lint:<code>``.
LINT_CODES: dict[str, str] = {
    "secret": "a credential in the text; rotate it, then remove it from the note",
    "credential_placeholder": "a credential placeholder other than <API_KEY_PLACEHOLDER>",
    "raw_content": "a raw prompt or model response; keep a sanitized summary only",
    "unsupported_price": "a price or money amount without a supporting source",
    "unsupported_discount": "a discount without a supporting source",
    "unsupported_rate_limit": "a rate limit or quota without a supporting source",
    "unsupported_uptime": "an uptime or SLA figure without a supporting source",
    "unsupported_support_outcome": "a support outcome without a supporting source",
    "unsupported_billing_treatment": "a billing treatment without a supporting source",
}

RAW_BLOCK_MIN = 120  # characters after a "prompt:"/"response:" label
RAW_VALUE_MIN = 80  # characters in a JSON prompt/content string
LONG_QUOTE_MIN = 240  # characters in a quoted passage
_EXCERPT_MAX = 120

CITATION = re.compile(r"\[src:([^\]\n]{0,500})\]")
_URL = re.compile(r"\b(?:https?|ftp)://\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# A number that is a quantity, not part of a date, time, version or identifier.
_NUM = r"(?<![\w\-./:])\d[\d,]*(?:\.\d+)?(?:\s?[kKmM]\b)?(?![\w\-/:])"
_PCT = r"(?<![\w.])\d+(?:\.\d+)?\s?%"

_CLAIMS: dict[str, tuple[re.Pattern[str], ...]] = {
    "price": (
        re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d+)?"),
        re.compile(_NUM + r"\s?(?:USD|EUR|GBP|dollars?|cents?|euros?)\b"),
        re.compile(
            _NUM + r"\s*(?:per|/)\s*(?:1\s*)?(?:[kKmM]|thousand|million)\s+"
            r"(?:input\s+|output\s+|cached\s+)?tokens?\b"
        ),
    ),
    "discount": (
        re.compile(_PCT + r"\s*off\b", re.I),
        re.compile(
            r"\b(?:volume|tiered|committed[- ]use|enterprise|negotiated|contract(?:ed)?|special)"
            r"\s+discounts?\b",
            re.I,
        ),
    ),
    "rate_limit": (
        re.compile(_NUM + r"\s?(?:RPM|TPM|RPD|TPD|RPS|QPS)\b"),
        re.compile(
            _NUM + r"\s+(?:requests?|tokens?|calls?|queries)\s*(?:per|/|an?)\s*"
            r"(?:minute|min|second|sec|hour)\b",
            re.I,
        ),
    ),
    "support_outcome": (
        re.compile(
            r"\b(?:support|provider|vendor|account manager|CometAPI|OpenAI|Anthropic)"
            r"(?:\s+(?:team|staff|agent|desk))?\s+(?:has\s+|have\s+|had\s+)?"
            r"(?:confirmed|agreed|promised|approved|guaranteed|committed|granted|waived|"
            r"refunded|credited|assured)\b",
            re.I,
        ),
        re.compile(
            r"\b(?:refund|credit|waiver)s?\s+(?:was\s+|were\s+|has been\s+|have been\s+)?"
            r"(?:approved|granted|issued|applied|confirmed)\b",
            re.I,
        ),
    ),
    "billing_treatment": (
        re.compile(r"\b(?:is|are|were|was)\s+(?:not|never)\s+(?:billed|charged)\b", re.I),
        re.compile(r"\b(?:not|never)\s+billable\b|\bfree of charge\b|\bno charge for\b", re.I),
        re.compile(r"\bbilled\s+(?:per|by the|as|only)\b", re.I),
    ),
}
# Kinds that need a topic word and a figure in the same sentence.
_TOPIC_CLAIMS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "discount": (re.compile(r"\b(?:discount|rebate|promo|coupon)\w*", re.I), re.compile(_PCT)),
    "rate_limit": (
        re.compile(r"\b(?:rate[- ]?limit\w*|quotas?|throttl\w*)", re.I),
        re.compile(_NUM),
    ),
    "uptime": (
        re.compile(r"\b(?:uptime|availability|SLA|SLO|service[- ]level)\b", re.I),
        re.compile(_PCT),
    ),
}

_RAW: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "chat_message",
        "a chat message with a role",
        re.compile(r"[\"']role[\"']\s*:\s*[\"'](?:system|user|assistant|tool|developer|function)"),
    ),
    ("messages_array", "a list of chat messages", re.compile(r"[\"']messages[\"']\s*:\s*\[")),
    (
        "response_body",
        "a model response body",
        re.compile(r"[\"'](?:choices|candidates)[\"']\s*:\s*\["),
    ),
    (
        "prompt_value",
        "a prompt or response string",
        re.compile(
            r"[\"'](?:prompt|completion|content|output_text|input|text)[\"']\s*:\s*"
            rf"\"(?:[^\"\\]|\\.){{{RAW_VALUE_MIN},}}\""
        ),
    ),
)
_LABEL = re.compile(
    r"(?im)^[ \t]*(?:[-*>][ \t]*)?(?:\*\*)?(?:system prompt|user prompt|prompt|response|"
    r"completion|model output|assistant|user)(?:\*\*)?[ \t]*:(?:\*\*)?[ \t]*"
)
_QUOTE = re.compile(rf"\"[^\"\n]{{{LONG_QUOTE_MIN},}}\"|“[^”]{{{LONG_QUOTE_MIN},}}”")
_JSON_KEY_BEFORE = re.compile(r"[\"']\s*:\s*$")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in a text. ``span`` is (start, end) in the text, ``line`` counts from 1, and
    ``excerpt`` is the line around it with every credential redacted."""

    code: str
    kind: str
    message: str
    line: int
    span: tuple[int, int]
    excerpt: str


def cited_ids(text: str) -> list[str]:
    """Source ids cited as ``[src:a]`` or ``[src:a, b]`` / ``[src:a, src:b]``, in order."""
    ids: list[str] = []
    for match in CITATION.finditer(text):
        for part in match[1].split(","):
            part = part.strip().removeprefix("src:").strip()
            if part:
                ids.append(part)
    return ids


def lint(text: str, known_sources: Collection[str] = ()) -> list[Finding]:
    """Every finding in `text`, in order of position. `known_sources` holds the source ids a
    citation may name; when it maps ids to ``Source`` objects, a source must also cover the
    claim's kind."""
    doc = _Doc(text)
    findings = [*_secrets(doc), *_raw_content(doc), *_claims(doc, known_sources)]
    return sorted(findings, key=lambda finding: (finding.span, finding.code))


class _Doc:
    """A text with its line starts, so each finding finds its line in O(log lines)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self._redacted: dict[int, str] = {}  # by line index: several findings share a line

    def finding(self, code: str, kind: str, message: str, start: int, end: int) -> Finding:
        index = bisect_right(self.starts, start) - 1
        line_start = self.starts[index]
        line_end = self.starts[index + 1] - 1 if index + 1 < len(self.starts) else len(self.text)
        line = self.text[line_start:line_end]
        # Redact the whole line before cutting, so no window can hold part of a secret.
        if index not in self._redacted:
            self._redacted[index] = redact(line)
        redacted = self._redacted[index]
        if len(redacted) > _EXCERPT_MAX:
            centre = len(redact(line[: start - line_start]))
            first = max(0, min(centre - _EXCERPT_MAX // 3, len(redacted) - _EXCERPT_MAX))
            cut = redacted[first : first + _EXCERPT_MAX]
            head = "…" if first else ""
            tail = "…" if first + _EXCERPT_MAX < len(redacted) else ""
            redacted = head + cut + tail
        return Finding(code, kind, message, index + 1, (start, end), redacted.strip())


def _secrets(doc: _Doc) -> Iterator[Finding]:
    for match in find_secrets(doc.text):
        code = "secret" if match.secret else "credential_placeholder"
        if match.secret:
            message = f"{DESCRIPTIONS[match.kind]}; remove it and rotate the credential"
        else:
            message = f"{DESCRIPTIONS[match.kind]}; write <API_KEY_PLACEHOLDER> instead"
        yield doc.finding(code, match.kind, message, match.start, match.end)


def _raw_content(doc: _Doc) -> Iterator[Finding]:
    text = doc.text
    for kind, description, pattern in _RAW:
        for match in pattern.finditer(text):
            yield doc.finding(
                "raw_content", kind,
                f"{description}; keep a sanitized summary, not the prompt or response",
                match.start(), match.end(),
            )
    labels = list(_LABEL.finditer(text))
    for index, label in enumerate(labels):
        block_end = labels[index + 1].start() if index + 1 < len(labels) else len(text)
        blank = re.search(r"\n[ \t]*\n", text[label.end() : block_end])
        if blank:
            block_end = label.end() + blank.start()
        if len(text[label.end() : block_end].strip()) >= RAW_BLOCK_MIN:
            yield doc.finding(
                "raw_content", "labelled_block",
                f"a prompt or response block of {RAW_BLOCK_MIN}+ characters; keep a sanitized "
                "summary instead",
                label.start(), block_end,
            )
    for match in _QUOTE.finditer(text):
        if not _JSON_KEY_BEFORE.search(text[max(0, match.start() - 40) : match.start()]):
            yield doc.finding(
                "raw_content", "long_quote",
                f"a quoted passage of {LONG_QUOTE_MIN}+ characters, likely model output; "
                "summarize it instead",
                match.start(), match.end(),
            )


def _sentences(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence, per line; a citation-only piece joins the previous one."""
    offset = 0
    for line in text.split("\n"):
        pieces: list[list[int]] = []
        start = 0
        for gap in _SENTENCE_END.finditer(line):
            pieces.append([start, gap.start()])
            start = gap.end()
        pieces.append([start, len(line)])
        merged: list[list[int]] = []
        for piece in pieces:
            content = CITATION.sub("", line[piece[0] : piece[1]]).strip(" .;,")
            if merged and not content:
                merged[-1][1] = piece[1]
            else:
                merged.append(piece)
        for first, last in merged:
            yield offset + first, offset + last
        offset += len(line) + 1


def _claims(doc: _Doc, known_sources: Collection[str]) -> Iterator[Finding]:
    text = doc.text
    # Blank out URLs, citations and secrets, keeping offsets, so "?discount=10%" in a link or
    # digits in a key are not read as claims.
    chars = list(text)
    spans = [(m.start(), m.end()) for p in (_URL, CITATION) for m in p.finditer(text)]
    spans += [(m.start, m.end) for m in find_secrets(text)]
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    scan = "".join(chars)
    for start, end in _sentences(text):
        sentence = scan[start:end]
        for kind, hit in _claim_hits(sentence):
            problem = _unsupported(kind, cited_ids(text[start:end]), known_sources)
            if problem:
                claim = redact(sentence[hit[0] : hit[1]].strip())
                yield doc.finding(
                    f"unsupported_{kind}", kind,
                    f"{kind.replace('_', ' ')} claim {claim!r} {problem}",
                    start + hit[0], start + hit[1],
                )


def _claim_hits(sentence: str) -> Iterator[tuple[str, tuple[int, int]]]:
    """The first match of each claim kind in one sentence."""
    for kind in (*_CLAIMS, "uptime"):
        hit = next(
            (m.span() for p in _CLAIMS.get(kind, ()) for m in p.finditer(sentence)), None
        )
        if hit is None and kind in _TOPIC_CLAIMS:
            topic, figure = _TOPIC_CLAIMS[kind]
            word, number = topic.search(sentence), figure.search(sentence)
            if word and number:
                hit = (min(word.start(), number.start()), max(word.end(), number.end()))
        if hit is not None:
            yield kind, hit


def _unsupported(kind: str, cited: list[str], known: Collection[str]) -> str | None:
    """Why the citations do not support a claim of `kind`, or None when one does."""
    if not cited:
        return "cites no source; cite [src:<id>] on the same line or record it as an open question"
    sources = known if isinstance(known, Mapping) else None
    for source_id in cited:
        if source_id in known:
            source = sources.get(source_id) if sources is not None else None
            if not isinstance(source, Source) or source.supports(kind):
                return None
    unknown = [source_id for source_id in cited if source_id not in known]
    if unknown:
        return f"cites {', '.join(unknown)}, not a known source"
    return f"cites {', '.join(cited)}, which does not cover {kind.replace('_', ' ')} claims"
