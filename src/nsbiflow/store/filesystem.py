"""Artifact storage in a local folder (the embedded default: ``./.nsbiflow`` or ``$NSBIFLOW_STORE``)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from nsbiflow.errors import ArtifactNotFoundError, StoreError
from nsbiflow.store.records import pid_alive

PARTIAL_PREFIX = ".partial-"
STALE_SECONDS = 24 * 3600
"""A temporary whose writer cannot be identified is stale after this long."""


class FilesystemBackend:
    """Objects are files under ``root``; writes go to ``root/tmp`` and are renamed into place."""

    def __init__(self, root: str | Path, *, fsync: bool | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        # A rename makes a write atomic for readers and against a killed process; fsync adds durability
        # against power loss at ~1 ms a write. Off by default: every read re-hashes, so a blob torn by a
        # crash is detected and never used. NSBIFLOW_FSYNC=1 turns it on.
        self.fsync = os.environ.get("NSBIFLOW_FSYNC", "0") == "1" if fsync is None else fsync
        self.uri = str(self.root)
        try:
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store folder {self.root}: {exc.strerror}") from None

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
            raise StoreError(f"invalid store key {key!r}")
        return self.root / key

    def _atomic(self, key: str, write: object) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp", prefix=self._partial_prefix())
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(write, bytes):
                    handle.write(write)
                else:
                    with open(write, "rb") as source:  # type: ignore[call-overload]
                        shutil.copyfileobj(source, handle, 1 << 20)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; stored content is not private to one process
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    @staticmethod
    def _partial_prefix() -> str:
        # who is writing: a temporary whose writer (on this host) is gone is a killed upload's leftover
        return f"{PARTIAL_PREFIX}{socket.gethostname().replace('-', '_')}-{os.getpid()}-"

    def stale_temporaries(self, *, older_than: float = STALE_SECONDS) -> list[Path]:
        """Temporaries under ``tmp/`` left by killed writers: the writer on this host is gone, or (writer
        unknown) the temporary is older than ``older_than`` seconds."""
        now = time.time()
        host = socket.gethostname().replace("-", "_")
        stale = []
        for path in (self.root / "tmp").glob(".*"):
            parts = path.name.removeprefix(PARTIAL_PREFIX).split("-")
            try:
                age = now - path.lstat().st_mtime
            except OSError:
                continue
            if path.name.startswith(PARTIAL_PREFIX) and len(parts) >= 3 and parts[0] == host and parts[1].isdigit():
                if not pid_alive(int(parts[1])):
                    stale.append(path)
            elif age > older_than:
                stale.append(path)
        return sorted(stale)

    def clean_temporaries(self, *, older_than: float = STALE_SECONDS) -> list[Path]:
        """Remove stale temporaries (see ``stale_temporaries``); returns what was removed."""
        removed = self.stale_temporaries(older_than=older_than)
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def put_file(self, key: str, source: Path) -> None:
        """Copy ``source`` into the store under ``key`` atomically."""
        self._atomic(key, source)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` atomically."""
        self._atomic(key, data)

    def get_file(self, key: str, destination: Path) -> None:
        """Copy the object to ``destination``."""
        path = self._path(key)
        try:
            shutil.copyfile(path, destination)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"{key} is not in the store {self.uri}") from None

    def get_bytes(self, key: str) -> bytes:
        """Read the object."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"{key} is not in the store {self.uri}") from None

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder-like prefix ending with '/', or a key prefix)."""
        if prefix.startswith("/") or any(part in (".", "..") for part in prefix.split("/")):
            raise StoreError(f"invalid store prefix {prefix!r}")
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            if path.is_file():
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        """Where the object lives on disk."""
        return self._path(key)
