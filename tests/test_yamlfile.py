"""The one YAML reader: typed reads record every problem with its line, then raise together."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from spendtrail.errors import Problem, SpendtrailError
from spendtrail.yamlfile import Reader


class DocError(SpendtrailError):
    pass


def read(text: str) -> tuple[Reader, dict]:
    reader = Reader("doc.yaml", "the test document", DocError)
    top = reader.document_keys(reader.compose(text), ("name", "items", "when", "price"))
    return reader, top or {}


def messages(reader: Reader) -> list[str]:
    return [str(problem) for problem in reader.problems]


def test_keys_unknown_duplicate_and_not_strings():
    reader, top = read("name: a\nnmae: b\nname: c\n3: x\nitems: []\n")
    assert set(top) == {"name", "items"}
    assert messages(reader) == [
        "doc.yaml:2: the test document: unknown key 'nmae'; did you mean 'name'? allowed "
        "keys: name, items, when, price",
        "doc.yaml:3: the test document: duplicate key 'name' (first on line 1)",
        "doc.yaml:4: the test document: keys must be strings, got a number (3) (quote it to "
        "make it a string)",
    ]


def test_required_keys_are_reported_where_the_mapping_starts():
    reader = Reader("doc.yaml", "the test document")
    root = reader.compose("# a comment\n\nentry:\n  a: 1\n")
    entry = reader.document_keys(root, ("entry",))["entry"]
    assert reader.mapping(entry, "entry", ("a", "b"), ("a", "b")) == {"a": entry.value[0][1]}
    assert messages(reader) == ["doc.yaml:4: entry: missing required key 'b'"]


def test_strings_values_and_lists():
    reader, top = read("name: 2026\nitems: [x, '', ~]\nwhen: soon\n")
    assert reader.string(top["name"], "name") is None
    assert reader.text(top["name"], "name") == "2026"  # a field with its own syntax
    first, empty, null = reader.sequence(top["items"], "items")
    assert reader.string(first, "items") == "x"
    assert reader.string(empty, "items") is None and reader.text(null, "items") is None
    assert reader.sequence(top["when"], "when", of="dates") is None
    assert messages(reader) == [
        "doc.yaml:1: name: expected a string, got a number (2026) (quote it to make it a string)",
        "doc.yaml:2: items: must not be empty",
        "doc.yaml:2: items: expected a value, got nothing (~)",
        "doc.yaml:3: when: expected a list of dates, got the string 'soon'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.1", Decimal("0.1")),
        ("'33.5'", Decimal("33.5")),
        ("1e-3", Decimal("0.001")),
        ("1_000", Decimal(1000)),
        ("-2", Decimal(-2)),
        ("0.10000000000000000001", Decimal("0.10000000000000000001")),
    ],
)
def test_decimals_are_read_from_their_text(text, expected):
    reader, top = read(f"price: {text}\n")
    value = reader.decimal(top["price"], "price")
    assert value == expected and str(value) == str(expected)
    assert not reader.problems


@pytest.mark.parametrize("text", [".inf", "nan", "true", "ten", "[1]", "2026-01-01", "~"])
def test_what_is_not_a_decimal(text):
    reader, top = read(f"price: {text}\n")
    assert reader.decimal(top["price"], "price", "a percentage") is None
    (problem,) = reader.problems
    assert problem.line == 1 and problem.message.startswith("price: expected a percentage, got")


def test_days_and_instants():
    reader, top = read(
        "when: 2026-06-01\nname: 2026-06-01T09:30:00+02:00\nitems: 2026-02-30\n"
        "price: 2026-06-01 10:00:00\n"
    )
    assert reader.day(top["when"], "when") == date(2026, 6, 1)
    assert reader.instant(top["when"], "when") == datetime(2026, 6, 1, tzinfo=UTC)
    assert reader.instant(top["name"], "name") == datetime(2026, 6, 1, 7, 30, tzinfo=UTC)
    assert reader.day(top["name"], "name") is None
    assert reader.day(top["items"], "items") is None
    assert reader.instant(top["price"], "price") is None
    assert messages(reader) == [
        "doc.yaml:2: name: expected a date without a time, got 2026-06-01T09:30:00+02:00",
        "doc.yaml:3: items: not a valid date: day is out of range for month",
        "doc.yaml:4: price: a time needs a UTC offset, e.g. 2026-06-01T10:00:00Z",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "",
            "doc.yaml:1: the file is empty; expected a mapping with the keys name, items, "
            "when, price",
        ),
        ("- a\n", "doc.yaml:1: the test document: expected a mapping, got a list"),
        ("name: [a\n", "doc.yaml:2: malformed YAML: while parsing a flow sequence"),
        ("name: a\nitems: \x07\n", "doc.yaml:2: malformed YAML: character #x0007"),
    ],
)
def test_unusable_documents(text, expected):
    reader, top = read(text)
    assert top == {}
    (message,) = messages(reader)
    assert message.startswith(expected)


def test_failure_lists_every_problem_in_line_order():
    reader, top = read("items: x\nname: [a]\n")
    reader.string(top["name"], "name")
    reader.sequence(top["items"], "items")
    error = reader.failure()
    assert isinstance(error, DocError)
    assert [problem.line for problem in error.problems] == [1, 2]
    assert str(error).splitlines() == [
        "doc.yaml: 2 problems in the test document",
        "doc.yaml:1: items: expected a list, got the string 'x'",
        "doc.yaml:2: name: expected a string, got a list",
    ]


def test_an_unreadable_file_names_itself_without_a_line(tmp_path):
    reader = Reader(str(tmp_path / "nope.yaml"), "the test document", DocError)
    with pytest.raises(DocError) as missing:
        reader.read_file(tmp_path / "nope.yaml")
    assert missing.value.problems == (
        Problem(
            str(tmp_path / "nope.yaml"),
            0,
            "cannot read the test document: No such file or directory",
        ),
    )
    assert (
        str(missing.value) == f"{tmp_path / 'nope.yaml'}: cannot read the test document: "
        "No such file or directory"
    )
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: Jos\xe9\n".encode("latin-1"))
    with pytest.raises(DocError, match=r"latin.yaml: not UTF-8 text \(invalid continuation"):
        Reader(str(latin), "the test document", DocError).read_file(latin)
    crlf = tmp_path / "crlf.yaml"
    crlf.write_bytes(b"name: a\r\n")
    assert reader.read_file(crlf) == "name: a\r\n"  # as written: a sheet's hash is of its bytes
