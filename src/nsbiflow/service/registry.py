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

from nsbiflow.errors import ArtifactNotFoundError, CorruptArtifactError, NsbiflowError, StoreError
from nsbiflow.service.backends import backend, detect_kind
from nsbiflow.service.errors import BadModelError, ModelNotFoundError, TooLargeError
from nsbiflow.service.schemas import DIGEST_PATTERN, ModelEntry
from nsbiflow.store import ArtifactStore
from nsbiflow.store.digest import ordered_json

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
        self._kinds: dict[str, str] = {}
        """digest -> kind of registered models (a record never changes once written: no store read per request)"""

    # -- uploads -----------------------------------------------------------------------------------
    def store_document(self, kind: str, document: Any) -> tuple[str, int]:
        """Put a document in the store as compact JSON in its own key order (a Model's parameter order is
        meaningful); returns (digest, size). Not yet registered."""
        backend(kind)
        if not backend(kind).detect(document):
            raise BadModelError(f"document: not a {kind} model document")
        data = ordered_json(document)
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
        known = self._kinds.get(digest)
        if known is not None:
            return ResolvedModel(digest, known, digest)
        key = MODELS_PREFIX + digest.split(":", 1)[1] + ".json"
        if self.store.backend.exists(key):
            try:
                entry = ModelEntry.model_validate(self.store.read_json(key))
                self._kinds[digest] = entry.kind
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
            # every result, not only the reinterpretation interface's (a workspace is often not in it)
            every = record.model_copy(update={"interface": {**record.interface, "results": list(record.results)}})
            candidates = {label: ("pyhf", digest) for label, digest in _workspaces(self.store, every).items()}
        except ArchiveError as exc:
            raise ModelNotFoundError(str(exc).splitlines()[0]) from None
        for step, bundle in self._archived_bundles(record.manifest).items():
            candidates.setdefault(step, ("nsbi", bundle))
        if not candidates:
            raise ModelNotFoundError(f"archive {archive!r} has no model: no pyhf workspace result, no fit step")
        if not label:
            if len(candidates) > 1:
                raise BadModelError(f"archive {archive!r} has several models: name one as {archive}:<result> "
                                    f"({', '.join(sorted(candidates))})")
            label = next(iter(candidates))
        if label not in candidates:
            raise ModelNotFoundError(f"archive {archive!r} has no model result {label!r} "
                                     f"(models: {', '.join(sorted(candidates))})")
        kind, digest = candidates[label]
        return ResolvedModel(ref, kind, digest)

    def _archived_bundles(self, manifest: dict[str, Any]) -> dict[str, str]:
        """NSBI bundles of an archived run: every step that read a ``model`` and ``ratios`` (the fit step).

        The bundle (Model document + the digests of its ratio tables and event files) is written to the
        store, content-addressed, so the same archive always gives the same bundle digest.
        """
        import yaml

        from nsbiflow.service.backends.nsbi_model import bundle_document

        found: dict[str, str] = {}
        for step, record in (manifest.get("steps") or {}).items():
            inputs = record.get("inputs") or {} if isinstance(record, dict) else {}
            if not (inputs.get("model") and inputs.get("ratios")):
                continue
            try:
                model = yaml.safe_load(self.store.read_blob(inputs["model"][0]))
                events = [{"digest": d, "filename": f"{d.split(':', 1)[1][:16]}.parquet"}
                          for d in inputs.get("events") or []]
                bundle = bundle_document(model, list(inputs["ratios"]), events)
            except (StoreError, yaml.YAMLError, NsbiflowError):
                continue
            found[step] = self.store.put_bytes(ordered_json(bundle))
        return found
