"""``archive verify``: re-hash every blob an archive references and name what is missing or altered."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nsbiflow.archive.record import ArchiveRecord
from nsbiflow.errors import ArtifactNotFoundError
from nsbiflow.store import ArtifactStore
from nsbiflow.store.artifacts import blob_key
from nsbiflow.store.digest import digest_file


@dataclass
class VerifyReport:
    """The outcome of verifying one archive."""

    digest: str
    checked: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    altered: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every referenced blob is present and intact."""
        return not self.missing and not self.altered

    def problems(self) -> list[str]:
        """One line per missing or altered blob, naming what it is."""
        lines = [f"missing: {what} ({digest})" for digest, what in self.missing]
        lines += [f"altered: {what} ({digest})" for digest, what in self.altered]
        return lines


def rehash(store: ArtifactStore, digest: str) -> str | None:
    """The actual digest of a stored blob's content, or None if the blob is absent."""
    key = blob_key(digest)
    local = store.backend.local_path(key)
    if local is not None:
        return digest_file(local) if local.is_file() else None
    with tempfile.TemporaryDirectory(prefix="nsbiflow-verify-") as tmp:
        target = Path(tmp) / "blob"
        try:
            store.backend.get_file(key, target)
        except ArtifactNotFoundError:
            return None
        return digest_file(target)


def verify_archive(store: ArtifactStore, digest: str, record: ArchiveRecord) -> VerifyReport:
    """Re-hash every blob the archive references (the record's own digest is checked when it is loaded)."""
    report = VerifyReport(digest=digest)
    for blob, what in record.blobs.items():
        report.checked += 1
        actual = rehash(store, blob)
        if actual is None:
            report.missing.append((blob, what))
        elif actual != blob:
            report.altered.append((blob, what))
    return report
