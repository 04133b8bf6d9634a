"""The archive record (``archives/<name>/<digest>.json``), the name's ref, and how archives are found.

Trust model (docs/recast.md):

- A **version** is a record named by the digest of its canonical JSON: an edited record no longer matches
  its name and is refused as tampered. Anyone who can write the store can add a record under a new name,
  so a record proves only its own integrity, never that it was preserved.
- A **name** is a ref, ``archives/<name>/ref.json``: the current version and the history of every version
  ``preserve`` made under that name, in order. Only ``preserve`` writes it, after the record is complete,
  in one atomic replace (a rename on a folder, a single PUT in a bucket).
- ``NAME`` means the ref's current version; ``NAME@PREFIX`` must be a version in the ref's history. "Newest"
  never comes from a field a record carries (its ``created`` is informational); a record in the store that
  no ref lists is not an archive, whatever it says, and is refused.
- A listed version that is missing, truncated or not valid is an error, never a silent fallback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nsbiflow.archive.errors import ArchiveNotFoundError, TamperedArchiveError
from nsbiflow.errors import ArtifactNotFoundError, StoreError
from nsbiflow.paths import UnsafePathError, safe_name
from nsbiflow.spec.models import NAME_PATTERN
from nsbiflow.store import ArtifactRef, ArtifactStore
from nsbiflow.store.digest import digest_json

ARCHIVE_FORMAT = "nsbiflow/archive/v1"
REINTERPRETATION_FORMAT = "nsbiflow/reinterpretation/v1"
ARCHIVES = "archives"
REF_FORMAT = "nsbiflow/archive-ref/v1"
REF_FILE = "ref.json"
SIGNING_KEY_ENV = "NSBIFLOW_ARCHIVE_KEY"
"""A secret shared by the team: when set, ``preserve`` signs refs and every reader refuses unsigned or
badly signed ones (HMAC-SHA256 over the ref's canonical JSON)."""
_HEX = re.compile(r"^[0-9a-f]{64}$")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefinitionRecord(_Record):
    """One step definition of the archived workflow, by content."""

    uses: str | None = Field(None, description="catalog name (steps/<uses>/step.yaml); None for an inline step")
    blob: str = Field(..., description="digest of step.yaml (or of the inline definition's canonical JSON)")
    code_files: dict[str, str] = Field(default_factory=dict, description="code files beside step.yaml -> digest")


class ExternalInput(_Record):
    """A file input from outside the store (``{path: ...}`` in the workflow), kept by content."""

    step: str
    input: str
    path: str = Field(..., description="where the archived workflow document expects it (relative)")
    ref: ArtifactRef


class ImageRecord(_Record):
    """A step image, with its digest when the reference pins one."""

    image: str
    digest: str | None = None


class ArchivedStep(_Record):
    """A step instance of the preserved run: its key and outputs (enough to seed the cache)."""

    template: str
    key: str
    outputs: dict[str, ArtifactRef] = Field(default_factory=dict)
    log: str | None = None


class KeyCheck(_Record):
    """Whether re-planning the archive reproduces the run's step keys (so a reinterpretation can reuse them)."""

    matched: int = 0
    mismatched: list[str] = Field(default_factory=list)


class ArchiveRecord(_Record):
    """Everything needed to re-run or reinterpret a finished analysis, from the store alone."""

    format: str = ARCHIVE_FORMAT
    name: str
    created: str
    run_id: str
    workflow_name: str
    workflow_file: str = Field(..., description="digest of the workflow YAML as written")
    workflow_document: str = Field(
        ..., description="digest of the archived workflow document (JSON): resolved parameters as defaults"
    )
    definitions: dict[str, DefinitionRecord]
    external_inputs: list[ExternalInput] = Field(default_factory=list)
    parameters: dict[str, Any]
    interface: dict[str, list[str]]
    images: dict[str, ImageRecord]
    versions: dict[str, str]
    steps: dict[str, ArchivedStep]
    results: dict[str, ArtifactRef | list[ArtifactRef]]
    manifest: dict[str, Any] = Field(..., description="the run manifest, as recorded")
    blobs: dict[str, str] = Field(..., description="every referenced blob digest -> what it is")
    key_check: KeyCheck = Field(default_factory=KeyCheck)


class ArchiveEntry(BaseModel):
    """One archive version in a listing (from the name's ref history; details from the record)."""

    name: str
    digest: str
    created: str
    run_id: str
    workflow: str
    current: bool = False


class RefEntry(_Record):
    """One version in a name's history."""

    digest: str
    preserved: str
    run_id: str


class ArchiveRef(_Record):
    """``archives/<name>/ref.json``: the current version of a name and every version preserved under it."""

    format: str = REF_FORMAT
    name: str
    current: str
    history: list[RefEntry]
    signature: str | None = None


def _signing_key() -> bytes | None:
    key = os.environ.get(SIGNING_KEY_ENV, "")
    return key.encode() if key else None


def _signature(ref: ArchiveRef, key: bytes) -> str:
    body = ref.model_dump(mode="json", exclude={"signature"})
    return "hmac-sha256:" + hmac.new(key, digest_json(body).encode(), hashlib.sha256).hexdigest()


def check_archive_name(name: str) -> str:
    """An archive name is a plain catalog-style name (it becomes a folder of the store)."""
    try:
        safe_name(name, "archive name")
    except UnsafePathError as exc:
        raise ArchiveNotFoundError(str(exc)) from None
    if not re.match(NAME_PATTERN, name):
        raise ArchiveNotFoundError(f"archive name {name!r} is not valid: use lower-case letters, digits, '-' and '_'")
    return name


def archive_key(name: str, digest: str) -> str:
    """The store key of an archive record."""
    return f"{ARCHIVES}/{check_archive_name(name)}/{digest.split(':', 1)[1]}.json"


def ref_key(name: str) -> str:
    """The store key of a name's ref."""
    return f"{ARCHIVES}/{check_archive_name(name)}/{REF_FILE}"


def read_ref(store: ArtifactStore, name: str, *, check_signature: bool = True) -> ArchiveRef | None:
    """A name's ref, ``None`` when the name was never preserved; an unreadable ref is an error, and so is
    (with ``$NSBIFLOW_ARCHIVE_KEY`` set) an unsigned or badly signed one."""
    key = ref_key(name)
    try:
        data = store.read_json(key)
    except ArtifactNotFoundError:
        return None
    except StoreError:
        raise TamperedArchiveError(f"archive {name!r}: its ref {key} is not valid JSON") from None
    try:
        ref = ArchiveRef.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TamperedArchiveError(f"archive {name!r}: its ref {key} is not valid ({first['msg']})") from None
    if ref.name != name or ref.current not in {e.digest for e in ref.history}:
        raise TamperedArchiveError(f"archive {name!r}: its ref {key} is inconsistent (name or current version)")
    secret = _signing_key() if check_signature else None
    if secret is not None and not (ref.signature and hmac.compare_digest(ref.signature, _signature(ref, secret))):
        state = "is not signed" if ref.signature is None else "has a signature that does not match"
        raise TamperedArchiveError(
            f"archive {name!r}: its ref {key} {state} with ${SIGNING_KEY_ENV}: it was not written by preserve "
            "with the team's key"
        )
    return ref


def write_archive(store: ArtifactStore, record: ArchiveRecord) -> str:
    """Write an archive record under its own digest, then make it the name's current version; returns it.

    The record is complete before the ref names it; the ref is replaced in one atomic write.
    """
    body = record.model_dump(mode="json")
    digest = digest_json(body)
    store.write_json(archive_key(record.name, digest), body)
    # an unsigned history is adopted (and signed) the first time preserve runs with a key; a badly signed
    # one is not: that is a forgery, and preserving must not launder it
    ref = read_ref(store, record.name, check_signature=False)
    if ref is not None and ref.signature is not None:
        ref = read_ref(store, record.name)
    history = list(ref.history) if ref else []
    history.append(
        RefEntry(
            digest=digest, preserved=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), run_id=record.run_id
        )
    )
    new = ArchiveRef(name=record.name, current=digest, history=history)
    secret = _signing_key()
    if secret is not None:
        new.signature = _signature(new, secret)
    store.write_json(ref_key(record.name), new.model_dump(mode="json"))
    return digest


def _names(store: ArtifactStore) -> list[str]:
    names = set()
    for key in store.backend.list(f"{ARCHIVES}/"):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == REF_FILE:
            names.add(parts[1])
    return sorted(names)


def list_archives(store: ArtifactStore, name: str | None = None) -> list[ArchiveEntry]:
    """Every preserved version (of ``name`` or of all names), in the order ``preserve`` made them.

    Versions come from each name's ref; a listed record that cannot be read is shown as unreadable.
    """
    names = [check_archive_name(name)] if name else _names(store)
    entries = []
    for archive_name in names:
        ref = read_ref(store, archive_name)
        if ref is None:
            continue
        for item in ref.history:
            try:
                data = store.read_json(archive_key(archive_name, item.digest))
                workflow = str(data.get("workflow_name", "")) if isinstance(data, dict) else "<invalid>"
            except StoreError:
                workflow = "<unreadable>"
            entries.append(
                ArchiveEntry(
                    name=archive_name,
                    digest=item.digest,
                    created=item.preserved,
                    run_id=item.run_id,
                    workflow=workflow,
                    current=item.digest == ref.current,
                )
            )
    return entries


def resolve_archive(store: ArtifactStore, reference: str) -> tuple[str, str]:
    """``NAME`` (the ref's current version) or ``NAME@DIGEST-PREFIX`` (a version in its history)."""
    name, _, prefix = reference.partition("@")
    prefix = prefix.removeprefix("sha256:")
    ref = read_ref(store, check_archive_name(name))
    if ref is None:
        raise ArchiveNotFoundError(f"no archive {name!r} in the store {store.uri} (see `nsbiflow archive list`)")
    if not prefix:
        return name, ref.current
    versions = [e.digest for e in ref.history if e.digest.split(":", 1)[1].startswith(prefix)]
    if not versions:
        listed = ", ".join(e.digest[7:19] for e in ref.history)
        raise ArchiveNotFoundError(
            f"no archive {reference!r} in the store {store.uri}: not a version preserved under {name!r} "
            f"(its versions: {listed}; a record no ref lists is not an archive)"
        )
    if len(set(versions)) > 1:
        raise ArchiveNotFoundError(
            f"archive reference {reference!r} is ambiguous: {', '.join(v[:19] for v in sorted(set(versions)))}"
        )
    return name, versions[0]


def load_archive(store: ArtifactStore, reference: str) -> tuple[str, ArchiveRecord]:
    """Find and read an archive; its content must hash to the digest in its name, and name what it is."""
    name, digest = resolve_archive(store, reference)
    key = archive_key(name, digest)
    try:
        data = store.read_json(key)
    except ArtifactNotFoundError:
        raise TamperedArchiveError(
            f"archive {name}@{digest[7:19]} is listed in its ref but its record {key} is missing"
        ) from None
    except StoreError:
        raise TamperedArchiveError(f"archive {name}@{digest[7:19]} is tampered: {key} is not valid JSON") from None
    actual = digest_json(data)
    if actual != digest:
        raise TamperedArchiveError(
            f"archive {name}@{digest[7:19]} is tampered: its record hashes to {actual[7:19]}, not {digest[7:19]}"
        )
    try:
        record = ArchiveRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TamperedArchiveError(
            f"archive {name}@{digest[7:19]} is not a valid archive record: {where}: {first['msg']}"
        ) from None
    if record.name != name:
        raise TamperedArchiveError(f"archive {name}@{digest[7:19]} is a record of archive {record.name!r}")
    return digest, record


class ReinterpretationRecord(_Record):
    """``archives/<name>/reinterpretations/<digest>.json``: one reinterpretation, next to the original."""

    format: str = REINTERPRETATION_FORMAT
    archive: str
    archive_digest: str
    created: str
    kind: str = Field("workflow", description="'workflow' (JSON Patch, re-run) or 'pyhf-patchset' (binned refit)")
    patch: Any
    changed: dict[str, Any] = Field(default_factory=dict)
    workflow_document: str | None = None
    run_id: str | None = None
    reused: list[str] = Field(default_factory=list)
    reran: list[str] = Field(default_factory=list)
    results: dict[str, Any] = Field(default_factory=dict)
    original_results: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


def write_reinterpretation(store: ArtifactStore, record: ReinterpretationRecord) -> str:
    """Write a reinterpretation record under its digest; returns the digest."""
    body = record.model_dump(mode="json")
    digest = digest_json(body)
    store.write_json(f"{ARCHIVES}/{record.archive}/reinterpretations/{digest.split(':', 1)[1]}.json", body)
    return digest


def list_reinterpretations(store: ArtifactStore, name: str) -> list[ReinterpretationRecord]:
    """Every reinterpretation recorded for archive ``name``, oldest first."""
    records = []
    for key in store.backend.list(f"{ARCHIVES}/{name}/reinterpretations/"):
        try:
            records.append(ReinterpretationRecord.model_validate(store.read_json(key)))
        except (StoreError, ValidationError):
            continue
    return sorted(records, key=lambda r: r.created)
