"""Errors of preservation and reinterpretation: each one is a single line for the CLI."""

from __future__ import annotations

from nsbiflow.errors import NsbiflowError


class ArchiveError(NsbiflowError):
    """An archive cannot be written, read or used."""


class ArchiveNotFoundError(ArchiveError):
    """No archive (or run) by that name or digest in the store."""


class TamperedArchiveError(ArchiveError):
    """An archive record or a blob it references does not match its digest, or is missing."""


class PatchError(ArchiveError):
    """A reinterpretation patch is malformed, points at nothing, or leaves the declared interface."""

    exit_code = 2
