"""The object-storage protocol the artifact store is written against: keys -> immutable bytes.

Two implementations share one layout (``filesystem.py`` and ``s3.py``). Writes are atomic: an object is
either absent or complete, never half-written, so a runner killed at any moment records nothing partial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ObjectBackend(Protocol):
    """Minimal key/value object storage (a folder or a bucket prefix)."""

    uri: str

    def put_file(self, key: str, source: Path) -> None:
        """Store a local file under ``key`` atomically (replace if present)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store bytes under ``key`` atomically (replace if present)."""

    def get_file(self, key: str, destination: Path) -> None:
        """Copy the object to ``destination``; raise ``ArtifactNotFoundError`` if absent."""

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; raise ``ArtifactNotFoundError`` if absent."""

    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` (sorted)."""

    def delete(self, key: str) -> None:
        """Remove the object if present."""

    def local_path(self, key: str) -> Path | None:
        """The object's path on a local filesystem, when it has one (for showing users where outputs are)."""
