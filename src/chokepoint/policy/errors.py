"""Where a profile is wrong, as ``file:line:column: message`` (1-based), for every kind of error."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourcePos:
    """A 1-based position in a profile, rule or list file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class PolicyError(Exception):
    """A profile, rule file or list file was rejected; nothing of it was loaded.

    ``line`` 0 means the error has no place in a file (e.g. a ``--param`` override, whose ``file`` is then
    the override as written): it prints as ``file: message``."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(file, line, column, message)
        self.file = file
        self.line = line
        self.column = column
        self.message = message

    @classmethod
    def at(cls, pos: SourcePos, message: str) -> PolicyError:
        return cls(pos.file, pos.line, pos.column, message)

    def __str__(self) -> str:
        if self.line == 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"
