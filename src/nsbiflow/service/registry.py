"""Which models the service knows: registered uploads in the store, and references resolved to digests.

Registered models live in the store (``service/models/<hex>.json`` next to the document's blob), so a
restarted server, or another replica on the same bucket, knows the same models. A reference is resolved
here, in the server process; workers only ever see (kind, digest).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from nsbiflow.errors import ArtifactNotFoundError, CorruptArtifactError, StoreError
from nsbiflow.service.backends import backend, detect_kind
from nsbiflow.service.errors import BadModelError, ModelNotFoundError, TooLargeError
from nsbiflow.service.schemas import DIGEST_PATTERN, ModelEntry
from nsbiflow.store import ArtifactStore
from nsbiflow.store.digest import canonical_json

MODELS_PREFIX = "service/models/"


@dataclass(frozen=True)
class ResolvedModel:
    """A reference resolved to the document the workers load."""

    ref: str
    kind: str
    digest: str


def read_document(store: ArtifactStore, digest: str, max_bytes: int) -> Any:
    """A model document from the store (digest checked, size limited, parsed as JSON)."""
    try:
        data = store.read_blob(digest)
    except ArtifactNotFoundError:
        raise ModelNotFoundError(
            f"no model {digest} in the store {store.uri}: upload it with POST /v1/models"
        ) from None
    except CorruptArtifactError as exc:
        raise BadModelError(str(exc)) from None
    if len(data) > max_bytes:
        raise TooLargeError(f"model {digest} is {len(data)} bytes, over the server's limit of {max_bytes}")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadModelError(f"model {digest} is not a JSON document") from None


class ModelRegistry:
    """Registers uploaded models and resolves references (a small cache keeps recent documents parsed)."""

    def __init__(self, store: ArtifactStore, max_model_bytes: int, cached: int = 8) -> None:
        self.store = store
        self.max_model_bytes = max_model_bytes
        self._documents: OrderedDict[str, Any] = OrderedDict()
        self._cached = cached
        self._lock = threading.Lock()

    # -- uploads -----------------------------------------------------------------------------------
    def store_document(self, kind: str, document: Any) -> tuple[str, int]:
        """Put a document's canonical JSON in the store; returns (digest, size). Not yet registered."""
        backend(kind)
        if not backend(kind).detect(document):
            raise BadModelError(f"document: not a {kind} model document")
        data = canonical_json(document)
        if len(data) > self.max_model_bytes:
            raise TooLargeError(f"document: {len(data)} bytes, over the server's model limit of {self.max_model_bytes}")
        return self.store.put_bytes(data), len(data)

    def register(self, kind: str, digest: str, size: int, name: str | None) -> ModelEntry:
        """Record a stored document as a model (idempotent: the first record of a digest is kept)."""
        key = MODELS_PREFIX + digest.split(":", 1)[1] + ".json"
        if self.store.backend.exists(key):
            try:
                return ModelEntry.model_validate(self.store.read_json(key))
            except (StoreError, ValueError):
                pass  # an unreadable record is rewritten
        entry = ModelEntry(
            digest=digest, kind=kind, name=name, size=size,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        self.store.write_json(key, entry.model_dump(mode="json"))
        return entry

    def entries(self) -> list[ModelEntry]:
        """Every registered model, oldest first."""
        found = []
        for key in self.store.backend.list(MODELS_PREFIX):
            try:
                found.append(ModelEntry.model_validate(self.store.read_json(key)))
            except (StoreError, ValueError):
                continue
        return sorted(found, key=lambda e: (e.created, e.digest))

    # -- resolution --------------------------------------------------------------------------------
    def document(self, digest: str) -> Any:
        """The parsed document of a digest (cached)."""
        with self._lock:
            if digest in self._documents:
                self._documents.move_to_end(digest)
                return self._documents[digest]
        document = read_document(self.store, digest, self.max_model_bytes)
        with self._lock:
            self._documents[digest] = document
            while len(self._documents) > self._cached:
                self._documents.popitem(last=False)
        return document

    def resolve(self, ref: str) -> ResolvedModel:
        """A model reference -> (kind, digest); one-line errors for anything not found."""
        if re.fullmatch(DIGEST_PATTERN, ref):
            return self._resolve_digest(ref)
        return self._resolve_archive(ref)

    def _resolve_digest(self, digest: str) -> ResolvedModel:
        key = MODELS_PREFIX + digest.split(":", 1)[1] + ".json"
        if self.store.backend.exists(key):
            try:
                entry = ModelEntry.model_validate(self.store.read_json(key))
                return ResolvedModel(digest, entry.kind, digest)
            except (StoreError, ValueError):
                pass
        if not self.store.has_blob(digest):
            raise ModelNotFoundError(f"no model {digest} in the store {self.store.uri}: upload it with POST /v1/models")
        kind = detect_kind(self.document(digest))
        if kind is None:
            raise BadModelError(f"blob {digest} is not a model document (a pyhf workspace or an NSBI model bundle)")
        return ResolvedModel(digest, kind, digest)

    def _resolve_archive(self, ref: str) -> ResolvedModel:
        from nsbiflow.archive.errors import ArchiveError
        from nsbiflow.archive.pyhf_patchset import _workspaces
        from nsbiflow.archive.record import load_archive

        archive, _, label = ref.partition(":")
        try:
            _, record = load_archive(self.store, archive)
            candidates = _workspaces(self.store, record)
        except ArchiveError as exc:
            raise ModelNotFoundError(str(exc).splitlines()[0]) from None
        if not candidates:
            raise ModelNotFoundError(f"archive {archive!r} has no model among its results (no pyhf workspace)")
        if not label:
            if len(candidates) > 1:
                raise BadModelError(f"archive {archive!r} has several models: name one as {archive}:<result> "
                                    f"({', '.join(sorted(candidates))})")
            label = next(iter(candidates))
        if label not in candidates:
            raise ModelNotFoundError(f"archive {archive!r} has no model result {label!r} "
                                     f"(models: {', '.join(sorted(candidates))})")
        return ResolvedModel(ref, "pyhf", candidates[label])
