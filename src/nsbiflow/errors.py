"""The exceptions every layer raises; the CLI turns them into one line each, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem found in a file: where it is and what to do about it."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class NsbiflowError(Exception):
    """Base class: an error a user can act on. ``str(error)`` is the line to print."""

    exit_code = 1


class SpecError(NsbiflowError):
    """A workflow or step definition is invalid; carries one ``Problem`` per finding."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(NsbiflowError):
    """A command-line argument is wrong (e.g. ``--set`` of an unknown parameter)."""

    exit_code = 2


class StoreError(NsbiflowError):
    """The artifact store cannot be used (unreachable, misconfigured, missing object)."""


class StoreUnavailableError(StoreError):
    """The store's endpoint cannot be reached; nothing was recorded and a later run can resume."""


class CorruptArtifactError(StoreError):
    """A blob's content does not match its digest: it is reported and never used."""


class ArtifactNotFoundError(StoreError):
    """A referenced blob or record is not in the store."""


class ExecutionError(NsbiflowError):
    """A workflow run did not succeed."""
