"""Streaming JSON report pages: one page object, a JSON array of pages, or JSONL (a page a line).

Memory is bounded by the largest single page (plus a read buffer), never by the file: a JSONL
file is decoded a line at a time, a JSON array one element at a time with an incremental
decoder. Numbers with a fraction or exponent become ``Decimal``, never float.

A malformed JSONL line is reported and the next line is read. Inside one JSON document (an
array or a pretty-printed page) there is no safe place to resume, so a syntax error there
ends the file with a fatal error naming its line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from spendtrail.bills.model import BillFileError, BillLine, BillRowError
from spendtrail.bills.values import RowProblem
from spendtrail.events.model import EventError, Usage

_CHUNK = 1 << 16
_WS = re.compile(r"[ \t\r\n]*")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


@dataclass(frozen=True, slots=True)
class Page:
    line: int  # the line the page starts on
    item: str  # "[2]" for the third page of a JSON array, "" otherwise
    data: dict[str, Any]


def json_pages(path: Path) -> Iterator[Page | BillRowError]:
    source = str(path)
    try:
        handle = path.open(encoding="utf-8-sig")
    except OSError as exc:
        raise BillFileError(f"{source}: cannot read the file: {exc.strerror}") from None
    with handle:
        stream = _Stream(handle)
        try:
            first = stream.peek()
            if first == "":
                yield BillRowError(source, 1, "empty file: expected JSON pages", fatal=True)
            elif first == "[":
                yield from _array(stream, source)
            elif stream.first_line_is_whole_value():
                yield from _jsonl(stream, source)
            else:
                yield from _documents(stream, source)
        except _Fatal as exc:
            yield BillRowError(source, exc.line, exc.reason, fatal=True)
        except UnicodeDecodeError as exc:
            yield BillRowError(source, stream.line, f"not UTF-8 text: {exc.reason}", fatal=True)


def _page(value: Any, source: str, line: int, item: str) -> Page | BillRowError:
    if not isinstance(value, dict):
        kind = type(value).__name__
        return BillRowError(source, line, f"expected a page object with 'data', got {kind}", item)
    return Page(line, item, value)


def _array(stream: _Stream, source: str) -> Iterator[Page | BillRowError]:
    stream.advance(stream.pos + 1)  # the "["
    index = 0
    if stream.peek() == "]":
        stream.advance(stream.pos + 1)
    else:
        while True:
            if not stream.peek():
                raise _Fatal(stream.line, "truncated JSON: the file ends before the next page")
            line = stream.line
            yield _page(stream.value(), source, line, f"[{index}]")
            index += 1
            following = stream.peek()
            stream.advance(stream.pos + 1)
            if following == "]":
                break
            if following != ",":
                raise _Fatal(stream.line, _unexpected(following, "',' or ']' between pages"))
    trailing = stream.peek()
    if trailing:
        raise _Fatal(stream.line, _unexpected(trailing, "the end of the file after ']'"))


def _documents(stream: _Stream, source: str) -> Iterator[Page | BillRowError]:
    while stream.peek():
        line = stream.line
        yield _page(stream.value(), source, line, "")


def _jsonl(stream: _Stream, source: str) -> Iterator[Page | BillRowError]:
    while True:
        line = stream.line
        text, complete = stream.readline()
        if text is None:
            return
        if not text.strip():
            continue
        try:
            value = _DECODER.decode(text)
        except ValueError as exc:  # JSONDecodeError, or NaN/Infinity
            what = "malformed JSON" if complete else "truncated last line"
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            yield BillRowError(source, line, f"{what}: {detail}")
            continue
        yield _page(value, source, line, "")


def _unexpected(found: str, expected: str) -> str:
    if not found:
        return f"truncated JSON: expected {expected}, got the end of the file"
    return f"malformed JSON: expected {expected}, got {found!r}"


class _Fatal(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class _Stream:
    """A read buffer over a text file that knows the line number of its read position."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.buf = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def fill(self, size: int = _CHUNK) -> bool:
        if self.eof:
            return False
        data = self.handle.read(size)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + data  # drop what has been consumed
        self.pos = 0
        return True

    def advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file), not consumed."""
        while True:
            self.advance(_WS.match(self.buf, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def first_line_is_whole_value(self) -> bool:
        """JSONL if the first line holds a whole object; a pretty-printed page spans lines."""
        while self.buf.find("\n", self.pos) < 0 and self.fill():
            pass
        first = self.buf[self.pos :].split("\n", 1)[0].strip()
        return first.startswith("{") and first.endswith("}")

    def readline(self) -> tuple[str | None, bool]:
        """The next line without its newline (None at the end), and whether it had one."""
        while (end := self.buf.find("\n", self.pos)) < 0:
            if not self.fill():
                if self.pos >= len(self.buf):
                    return None, True
                text = self.buf[self.pos :]
                self.pos = len(self.buf)
                return text, False
        text = self.buf[self.pos : end]
        self.advance(end + 1)
        return text, True

    def value(self) -> Any:
        """Decode the JSON value at the read position, reading more until it is whole."""
        size = _CHUNK
        start = self.line
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if not self.eof and _maybe_incomplete(exc, len(self.buf)):
                    self.fill(size)
                    size *= 2  # doubling keeps re-decoding a large page linear overall
                    continue
                if _ends_inside(exc):
                    reason = "truncated JSON: the file ends inside the value starting here"
                    raise _Fatal(start, reason) from None
                line = self.line + self.buf.count("\n", self.pos, exc.pos)
                raise _Fatal(line, f"malformed JSON: {exc.msg}") from None
            except ValueError as exc:  # NaN or Infinity
                raise _Fatal(self.line, f"malformed JSON: {exc}") from None
            self.advance(end)
            return value


def _ends_inside(exc: json.JSONDecodeError) -> bool:
    """At the end of the file: did the text stop inside a value rather than go wrong?"""
    rest = exc.doc[exc.pos :].strip()
    return (
        any(literal.startswith(rest) for literal in ("true", "false", "null"))  # "" too
        or exc.msg.startswith("Unterminated string")
    )


def _maybe_incomplete(exc: json.JSONDecodeError, length: int) -> bool:
    # The decoder fails at (or just before) the buffer's end when a value is cut off there;
    # an unterminated string is reported at its opening quote instead.
    return exc.pos >= length - 8 or exc.msg.startswith("Unterminated string")


@dataclass(frozen=True, slots=True)
class BucketRow:
    """One result of one time bucket of an OpenAI or Anthropic report page."""

    source: str
    line: int
    item: str
    start: datetime
    end: datetime
    result: dict[str, Any]

    def error(self, reason: str) -> BillRowError:
        return BillRowError(self.source, self.line, reason, self.item)

    def usage_line(
        self, bill_format: str, provider: str, *, usage: Usage | None = None,
        amount: Decimal | None = None, currency: str | None = None, **fields: Any,
    ) -> BillLine:
        """The bill line of this result: usage or cost over its bucket, the result as raw."""
        return BillLine(
            source=self.source, line=self.line, item=self.item, format=bill_format,
            provider=provider, granularity="bucket", period_start=self.start,
            period_end=self.end, charge_kind="usage", usage=usage, amount=amount,
            currency=currency, raw=self.result, **fields,
        )


def bucket_rows(
    path: Path, period: Callable[[dict[str, Any]], tuple[datetime, datetime]]
) -> Iterator[BucketRow | BillRowError]:
    """Every ``data[i].results[j]`` of every page; ``period`` reads a bucket's start and end.
    A bad bucket is reported once and its results skipped; a bad result only itself."""
    source = str(path)
    for page in json_pages(path):
        if isinstance(page, BillRowError):
            yield page
            continue
        buckets = page.data.get("data")
        if not isinstance(buckets, list):
            yield BillRowError(source, page.line, "data: expected a list of buckets", page.item)
            continue
        for index, bucket in enumerate(buckets):
            where = f"{page.item}{'.' if page.item else ''}data[{index}]"
            try:
                if not isinstance(bucket, dict):
                    raise RowProblem(f"expected a bucket object, got {type(bucket).__name__}")
                start, end = period(bucket)
                if end <= start:
                    raise RowProblem(f"bucket ends ({end.isoformat()}) before it starts")
                results = bucket.get("results")
                if not isinstance(results, list):
                    raise RowProblem("results: expected a list")
            except RowProblem as exc:
                yield BillRowError(source, page.line, str(exc), where)
                continue
            for number, result in enumerate(results):
                item = f"{where}.results[{number}]"
                if isinstance(result, dict):
                    yield BucketRow(source, page.line, item, start, end, result)
                else:
                    reason = f"expected a result object, got {type(result).__name__}"
                    yield BillRowError(source, page.line, reason, item)


def bucket_lines(
    path: Path,
    period: Callable[[dict[str, Any]], tuple[datetime, datetime]],
    to_line: Callable[[BucketRow], BillLine],
) -> Iterator[BillLine | BillRowError]:
    """Every bucket result as a BillLine, or an error naming its place; one bad result never
    stops the others."""
    for row in bucket_rows(path, period):
        if isinstance(row, BillRowError):
            yield row
            continue
        try:
            yield to_line(row)
        except (RowProblem, EventError) as exc:
            yield row.error(str(exc))
