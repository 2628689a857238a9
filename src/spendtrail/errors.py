"""The base of every error spendtrail reports to a user, and the one shape of a problem."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Self


class Problem(NamedTuple):
    """One problem in an input, at a line of its source (line 0: the source as a whole)."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


class SpendtrailError(ValueError):
    """Bad input or an unusable resource; the message names the file, line or field.

    ``problems`` holds every problem found when there were several to report at once."""

    def __init__(self, message: str = "", problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def from_problems(cls, problems: Sequence[Problem], document: str) -> Self:
        """One error for all ``problems`` in line order: a count line when there are several
        (``FILE: 3 problems in the registry``), then ``FILE:LINE: message`` for each."""
        ordered = sorted(problems, key=lambda problem: problem.line)
        lines = [str(problem) for problem in ordered]
        if len(lines) > 1:
            lines.insert(0, f"{ordered[0].source}: {len(lines)} problems in {document}")
        return cls("\n".join(lines), ordered)
