"""A corrupted blob found while a run stages its inputs is moved aside (never deleted); reading without
``quarantine`` (archive verify, reinterpret) leaves the store untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsbiflow.errors import ArtifactNotFoundError, CorruptArtifactError
from nsbiflow.store import open_store


def test_corrupted_blob_is_quarantined_only_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("1\n4\n9\n")
    store = open_store(tmp_path / "store")
    ref = store.put(source)
    blob = tmp_path / "store" / "blobs" / "sha256" / ref.digest[7:9] / ref.digest[7:]
    blob.chmod(0o644)
    blob.write_text("tampered\n")

    with pytest.raises(CorruptArtifactError, match="delete it and re-run"):
        store.fetch(ref, tmp_path / "read-only-use.txt")
    assert blob.exists() and not (tmp_path / "store" / "quarantine").exists()  # reading wrote nothing

    with pytest.raises(CorruptArtifactError, match="moved it to quarantine/"):
        store.fetch(ref, tmp_path / "staged.txt", quarantine=True)
    assert not blob.exists() and not (tmp_path / "staged.txt").exists()
    assert (tmp_path / "store" / "quarantine" / ref.digest[7:]).read_text() == "tampered\n"

    # a second step staging the same blob is told what happened, not just that it is missing
    with pytest.raises(CorruptArtifactError, match="was corrupted and is moved to quarantine/"):
        store.fetch(ref, tmp_path / "again.txt", quarantine=True)
    with pytest.raises(ArtifactNotFoundError):
        store.fetch(ref, tmp_path / "again.txt")
    assert not store.is_complete(ref)  # so the cache entry naming it misses, and its step re-runs
    assert (
        store.put(source).digest == ref.digest and store.fetch(ref, tmp_path / "healed.txt").read_text() == "1\n4\n9\n"
    )
