"""Content digests: ``sha256:<hex>`` strings, computed in a streaming way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, BinaryIO

ALGORITHM = "sha256"
_CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    """Digest of a byte string."""
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def digest_stream(stream: BinaryIO) -> str:
    """Digest of everything left in a binary stream."""
    hasher = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        hasher.update(chunk)
    return f"{ALGORITHM}:{hasher.hexdigest()}"


def digest_file(path: str | Path) -> str:
    """Digest of a file's content."""
    with open(path, "rb") as handle:
        return digest_stream(handle)


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal values give equal bytes (and digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def ordered_json(value: Any) -> bytes:
    """Compact JSON that keeps mapping order (for documents whose order is meaningful, like a workflow)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def digest_json(value: Any) -> str:
    """Digest of a value's canonical JSON form."""
    return digest_bytes(canonical_json(value))


def split_digest(digest: str) -> tuple[str, str]:
    """``sha256:abc`` -> ``("sha256", "abc")``; raises ``ValueError`` on anything else."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != ALGORITHM or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return algorithm, hexdigest
