"""OpenAI organization Usage API pages for completions (``/v1/organization/usage/completions``).

Read per result, already in spendtrail's convention (input includes cached): ``input_tokens``,
``input_cached_tokens`` -> cached_input_tokens, ``output_tokens``, ``input_audio_tokens``,
``output_audio_tokens``, ``num_model_requests`` -> requests; group keys ``project_id`` ->
project, ``api_key_id`` -> key_name, ``model``. The bucket's ``start_time``/``end_time``
(Unix seconds) are the period. Usage only: ``amount`` and ``currency`` are None.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from spendtrail.bills import values
from spendtrail.bills.model import BillLine, BillRowError
from spendtrail.bills.openai_costs import openai_period
from spendtrail.bills.pages import BucketRow, bucket_lines
from spendtrail.bills.values import RowProblem
from spendtrail.events import Usage

FORMAT = "openai-usage"
_REQUIRED = ("input_tokens", "output_tokens", "num_model_requests")


def read_openai_usage(path: Path) -> Iterator[BillLine | BillRowError]:
    return bucket_lines(path, openai_period, _line)


def _line(row: BucketRow) -> BillLine:
    result = row.result
    for name in _REQUIRED:
        if result.get(name) is None:
            raise RowProblem(f"{name}: missing; expected a token or request count")
    usage = Usage(
        input_tokens=values.count(result["input_tokens"], "input_tokens"),
        cached_input_tokens=values.count(result.get("input_cached_tokens"), "input_cached_tokens"),
        output_tokens=values.count(result["output_tokens"], "output_tokens"),
        input_audio_tokens=values.count(result.get("input_audio_tokens"), "input_audio_tokens"),
        output_audio_tokens=values.count(result.get("output_audio_tokens"), "output_audio_tokens"),
        requests=values.count(result["num_model_requests"], "num_model_requests"),
    )
    usage.check()
    return row.usage_line(
        FORMAT, "openai",
        usage=usage,
        key_name=values.text(result.get("api_key_id")),
        project=values.text(result.get("project_id")),
        model=values.text(result.get("model")),
    )
