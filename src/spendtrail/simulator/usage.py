"""Deterministic usage: token counts are a pure function of the request body.

Rules (docs/simulator.md): text costs ceil(chars / 4) tokens; a chat message adds 4 tokens and
the reply primer 3, like OpenAI's chat format; a non-text content part (an image) costs 85.
Output is ``max_tokens`` (or its newer names) when given, else min(256, 16 + prompt // 2).
Reasoning models spend half the output on reasoning. With caching on, a prompt of at least
``cache_min_tokens`` reports as cached the longest multiple of 128 tokens shorter than it.
The reply text is lorem ipsum, one word per output token.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
REPLY_PRIMER = 3
NON_TEXT_PART_TOKENS = 85
CACHE_BLOCK = 128
DEFAULT_OUTPUT_CAP = 256
_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco "
    "laboris nisi ut aliquip ex ea commodo consequat"
).split()


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def visible_tokens(self) -> int:
        return self.completion_tokens - self.reasoning_tokens

    def chat(self) -> dict[str, Any]:
        """The chat/completions ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
            },
        }

    def responses(self) -> dict[str, Any]:
        """The Responses API ``usage`` object."""
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }


def text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def content_tokens(content: Any) -> int:
    """A message content: a string, or a list of parts (text parts by length, others fixed)."""
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            text = part.get("text") if isinstance(part, dict) else part
            total += text_tokens(text) if isinstance(text, str) else NON_TEXT_PART_TOKENS
        return total
    return 0


def messages_tokens(messages: list[dict[str, Any]]) -> int:
    total = REPLY_PRIMER
    for message in messages:
        total += MESSAGE_OVERHEAD + content_tokens(message.get("content"))
    return total


def input_tokens(value: Any) -> int:
    """Completions prompts and embedding inputs: text, a list of texts, or token arrays."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        if all(isinstance(item, int) for item in value):
            return len(value)
        return sum(input_tokens(item) for item in value)
    return 0


def output_tokens(prompt_tokens: int, max_tokens: Any) -> int:
    if isinstance(max_tokens, int) and max_tokens >= 0:
        return max_tokens
    return min(DEFAULT_OUTPUT_CAP, 16 + prompt_tokens // 2)


def cached_tokens(prompt_tokens: int, cache_min_tokens: int | None) -> int:
    if cache_min_tokens is None or prompt_tokens < cache_min_tokens:
        return 0
    return (prompt_tokens - 1) // CACHE_BLOCK * CACHE_BLOCK


def generation_usage(
    prompt_tokens: int, max_tokens: Any, *, reasoning: bool, cache_min_tokens: int | None
) -> TokenUsage:
    completion = output_tokens(prompt_tokens, max_tokens)
    return TokenUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        cached_tokens=cached_tokens(prompt_tokens, cache_min_tokens),
        reasoning_tokens=completion // 2 if reasoning else 0,
    )


def _make_tokens(count: int) -> list[str]:
    n = len(_WORDS)
    return [_WORDS[i % n] if i == 0 else " " + _WORDS[i % n] for i in range(count)]


# Replies are usually short: serve them from one precomputed text instead of building each.
_CACHED = 4096
_TOKENS = _make_tokens(_CACHED)
_TEXT = "".join(_TOKENS)
_ENDS = [0, *accumulate(len(token) for token in _TOKENS)]


def lorem_tokens(count: int) -> list[str]:
    """``count`` output tokens of lorem ipsum; joined they read as space-separated words."""
    return _TOKENS[:count] if count <= _CACHED else _make_tokens(count)


def lorem(count: int) -> str:
    return _TEXT[:_ENDS[count]] if count <= _CACHED else "".join(_make_tokens(count))
