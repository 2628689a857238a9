"""The registry's error: every problem found, each naming its file and line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from spendtrail.errors import SpendtrailError


class Problem(NamedTuple):
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class RegistryError(SpendtrailError):
    """A registry file or stored document that cannot be used. ``problems`` holds every
    problem found, so one run of ``registry check`` shows all of them."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def from_problems(cls, source: str, problems: Sequence[Problem]) -> RegistryError:
        lines = [str(problem) for problem in problems]
        if len(lines) > 1:
            lines.insert(0, f"{source}: {len(lines)} problems in the registry")
        return cls("\n".join(lines), problems)
