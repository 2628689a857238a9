"""The format registry, read_bill, detect_format, and constant-memory streaming."""

from __future__ import annotations

import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

from spendtrail.bills import (
    FORMATS,
    BillFileError,
    BillLine,
    MappingError,
    detect_format,
    read_bill,
    read_cometapi_csv,
)

DATA = Path(__file__).parent / "data" / "bills"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cometapi_log.csv", "cometapi-csv"),
        ("cometapi_log_pages.jsonl", "cometapi-json"),
        ("openai_costs.json", "openai-costs"),
        ("openai_usage.jsonl", "openai-usage"),
        ("anthropic_cost.json", "anthropic-cost"),
        ("anthropic_usage.json", "anthropic-usage"),
        ("focus.csv", "focus-csv"),
        ("acme_bill.csv", None),
    ],
)
def test_detect_format(name, expected):
    assert detect_format(DATA / name) == expected


def test_every_format_reads_its_sample_through_read_bill():
    samples = {
        "cometapi-csv": "cometapi_log.csv", "cometapi-json": "cometapi_log_pages.jsonl",
        "openai-costs": "openai_costs.json", "openai-usage": "openai_usage.jsonl",
        "anthropic-cost": "anthropic_cost.json", "anthropic-usage": "anthropic_usage.json",
        "focus-csv": "focus.csv",
    }
    for name, sample in samples.items():
        lines = [item for item in read_bill(DATA / sample, name) if isinstance(item, BillLine)]
        assert lines and {line.format for line in lines} == {name}
    mapped = read_bill(DATA / "acme_bill.csv", "mapped-csv", DATA / "acme_mapping.yaml")
    assert sum(isinstance(item, BillLine) for item in mapped) == 2
    assert set(FORMATS) == {*samples, "focus-parquet", "mapped-csv"}


def test_read_bill_checks_its_arguments_before_reading():
    with pytest.raises(BillFileError, match="unknown bill format 'csv'"):
        read_bill(DATA / "focus.csv", "csv")
    with pytest.raises(BillFileError, match="needs a column mapping"):
        read_bill(DATA / "acme_bill.csv", "mapped-csv")
    with pytest.raises(BillFileError, match="mapped-csv only"):
        read_bill(DATA / "focus.csv", "focus-csv", DATA / "acme_mapping.yaml")
    with pytest.raises(MappingError):
        read_bill(DATA / "acme_bill.csv", "mapped-csv", DATA / "acme_mapping_bad.yaml")


def test_missing_file_is_a_file_error(tmp_path):
    with pytest.raises(BillFileError, match="cannot read the file"):
        list(read_bill(tmp_path / "nope.csv", "cometapi-csv"))


def _write_log(path: Path, rows: int) -> None:
    with path.open("w") as handle:
        handle.write("created_at,type,token_name,model_name,prompt_tokens,completion_tokens,"
                     "quota,is_stream,request_id,group\n")
        for number in range(rows):
            handle.write(f"{1748736000 + number},2,cc-100-search,gpt-4o-mini,1000,250,150,true,"
                         f"2025060100{number:010d},default\n")


def _peak_while_summing(path: Path) -> tuple[int, int, Decimal]:
    tracemalloc.start()
    try:
        count, total = 0, Decimal(0)
        for line in read_cometapi_csv(path):
            count += 1
            total += line.amount
        return tracemalloc.get_traced_memory()[1], count, total
    finally:
        tracemalloc.stop()


def test_streaming_memory_does_not_grow_with_the_file(tmp_path):
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    _write_log(small, 2_000)
    _write_log(large, 20_000)
    small_peak, small_count, _ = _peak_while_summing(small)
    large_peak, large_count, large_total = _peak_while_summing(large)
    assert (small_count, large_count) == (2_000, 20_000)
    assert large_total == Decimal("6")  # 20,000 x 0.0003, exactly
    # Ten times the rows: the peak stays about the same (a list of lines would be ~10x).
    assert large_peak < small_peak * 1.5 + 64 * 1024, (small_peak, large_peak)
    assert large_peak < 2 * 1024 * 1024


def test_detect_format_reads_headers_as_the_readers_do(tmp_path):
    """Header spellings the CometAPI reader accepts are detected too; Parquet by its magic."""
    spaced = tmp_path / "export.txt"
    spaced.write_text("\ufeffTime,Type,Token,Model,Prompt Tokens,Completion Tokens,Quota,"
                      "Request-ID\n")
    assert detect_format(spaced) == "cometapi-csv"
    parquet = tmp_path / "focus.bin"
    parquet.write_bytes(b"PAR1" + b"\0" * 16)
    assert detect_format(parquet) == "focus-parquet"
    assert detect_format(DATA / "cometapi_log_missing_columns.csv") is None
    assert detect_format(tmp_path / "absent.csv") is None
