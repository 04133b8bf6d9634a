"""Artifact stores: content-addressed blobs plus records, on a filesystem or in S3."""

from __future__ import annotations

import os
from pathlib import Path

from nsbiflow.store.artifacts import ArtifactStore
from nsbiflow.store.records import ArtifactRef, CacheEntry, RunManifest, StepRecord

STORE_ENV = "NSBIFLOW_STORE"
DEFAULT_STORE = ".nsbiflow"

__all__ = ["ArtifactRef", "ArtifactStore", "CacheEntry", "RunManifest", "StepRecord", "open_store"]


def open_store(uri: str | Path | None = None) -> ArtifactStore:
    """Open a store: ``s3://bucket/prefix`` or a folder (default ``$NSBIFLOW_STORE`` or ``./.nsbiflow``)."""
    text = str(uri) if uri else os.environ.get(STORE_ENV) or DEFAULT_STORE
    if text.startswith("s3://"):
        from nsbiflow.store.s3 import S3Backend

        return ArtifactStore(S3Backend(text))
    if "://" in text and not text.startswith("file://"):
        from nsbiflow.errors import StoreError

        raise StoreError(f"unsupported store URI {text!r}: use a folder path or s3://BUCKET/PREFIX")
    from nsbiflow.store.filesystem import FilesystemBackend

    return ArtifactStore(FilesystemBackend(text.removeprefix("file://")))
