"""Preservation and reinterpretation (RECAST): immutable archives of finished runs, verified and re-run.

``preserve`` turns a finished run into an archive record (``archives/<name>/<digest>.json``),
``verify`` re-hashes every blob it references, and ``reinterpret`` applies a JSON Patch to the archived
workflow's declared interface and re-runs only what the change touches.
"""

from nsbiflow.archive.errors import ArchiveError, ArchiveNotFoundError, PatchError, TamperedArchiveError
from nsbiflow.archive.preserve import preserve_run
from nsbiflow.archive.record import ArchiveRecord, list_archives, load_archive
from nsbiflow.archive.reinterpret import ReinterpretResult, reinterpret
from nsbiflow.archive.verify import VerifyReport, verify_archive

__all__ = [
    "ArchiveError",
    "ArchiveNotFoundError",
    "ArchiveRecord",
    "PatchError",
    "ReinterpretResult",
    "TamperedArchiveError",
    "VerifyReport",
    "list_archives",
    "load_archive",
    "preserve_run",
    "reinterpret",
    "verify_archive",
]
