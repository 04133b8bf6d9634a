"""The archive record (``archives/<name>/<digest>.json``) and how archives are listed and found.

The record's digest is the digest of its canonical JSON; the file name carries it, so an edited record
no longer matches its name and is refused as tampered.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nsbiflow.archive.errors import ArchiveNotFoundError, TamperedArchiveError
from nsbiflow.errors import ArtifactNotFoundError, StoreError
from nsbiflow.store import ArtifactRef, ArtifactStore
from nsbiflow.store.digest import digest_json

ARCHIVE_FORMAT = "nsbiflow/archive/v1"
REINTERPRETATION_FORMAT = "nsbiflow/reinterpretation/v1"
ARCHIVES = "archives"


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
    """One archive version in a listing."""

    name: str
    digest: str
    created: str
    run_id: str
    workflow: str


def archive_key(name: str, digest: str) -> str:
    """The store key of an archive record."""
    return f"{ARCHIVES}/{name}/{digest.split(':', 1)[1]}.json"


def write_archive(store: ArtifactStore, record: ArchiveRecord) -> str:
    """Write an archive record under its own digest; returns the digest."""
    body = record.model_dump(mode="json")
    digest = digest_json(body)
    store.write_json(archive_key(record.name, digest), body)
    return digest


def _archive_keys(store: ArtifactStore, name: str | None = None) -> list[tuple[str, str]]:
    prefix = f"{ARCHIVES}/{name}/" if name else f"{ARCHIVES}/"
    found = []
    for key in store.backend.list(prefix):
        parts = key.split("/")
        if len(parts) == 3 and parts[2].endswith(".json") and (name is None or parts[1] == name):
            found.append((parts[1], "sha256:" + parts[2].removesuffix(".json")))
    return found


def list_archives(store: ArtifactStore, name: str | None = None) -> list[ArchiveEntry]:
    """Every archive version (of ``name`` or of all names), oldest first within a name."""
    entries = []
    for archive_name, digest in _archive_keys(store, name):
        try:
            data = store.read_json(archive_key(archive_name, digest))
        except StoreError:
            continue
        entries.append(
            ArchiveEntry(
                name=archive_name,
                digest=digest,
                created=str(data.get("created", "")),
                run_id=str(data.get("run_id", "")),
                workflow=str(data.get("workflow_name", "")),
            )
        )
    return sorted(entries, key=lambda e: (e.name, e.created, e.digest))


def resolve_archive(store: ArtifactStore, reference: str) -> tuple[str, str]:
    """``NAME`` (newest version) or ``NAME@DIGEST-PREFIX`` -> (name, digest)."""
    name, _, prefix = reference.partition("@")
    prefix = prefix.removeprefix("sha256:")
    versions = [e for e in list_archives(store, name) if e.digest.split(":", 1)[1].startswith(prefix)]
    if not versions:
        what = f"archive {reference!r}"
        raise ArchiveNotFoundError(f"no {what} in the store {store.uri} (see `nsbiflow archive list`)")
    if prefix and len(versions) > 1:
        raise ArchiveNotFoundError(
            f"archive reference {reference!r} is ambiguous: {', '.join(e.digest[:19] for e in versions)}"
        )
    return name, versions[-1].digest


def load_archive(store: ArtifactStore, reference: str) -> tuple[str, ArchiveRecord]:
    """Find and read an archive; its content must hash to the digest in its name."""
    name, digest = resolve_archive(store, reference)
    key = archive_key(name, digest)
    try:
        data = store.read_json(key)
    except ArtifactNotFoundError:
        raise ArchiveNotFoundError(f"archive {reference!r} disappeared from the store {store.uri}") from None
    except StoreError:
        raise TamperedArchiveError(f"archive {name}@{digest[7:19]} is tampered: {key} is not valid JSON") from None
    actual = digest_json(data)
    if actual != digest:
        raise TamperedArchiveError(
            f"archive {name}@{digest[7:19]} is tampered: its record hashes to {actual[7:19]}, not {digest[7:19]}"
        )
    try:
        return digest, ArchiveRecord.model_validate(data)
    except ValidationError as exc:
        raise TamperedArchiveError(f"archive {name}@{digest[7:19]} is not a valid archive record: {exc}") from None


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
