"""``fsck`` and ``gc``: check that every record points at intact blobs; remove what nothing references.

What counts as a reference is deliberately generic: every ``sha256:<hex>`` string anywhere in a record
(``cache/``, ``runs/``, ``archives/``, reinterpretations included) keeps that blob, and a kept tree
manifest keeps every blob it lists. So ``gc`` can never remove anything a cache entry, a run or an archive
names, whatever the record's schema version. ``quarantine/`` is never touched (it is evidence).

A blob written a moment ago may belong to a step that is still storing its outputs and has not recorded
its cache entry yet: ``gc`` leaves blobs younger than ``min_age`` seconds alone.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from nsbiflow.errors import ArtifactNotFoundError, StoreError
from nsbiflow.store.artifacts import TREE_FORMAT, ArtifactStore, blob_key
from nsbiflow.store.digest import digest_bytes, digest_json

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
RECORD_PREFIXES = ("cache/", "runs/", "archives/")
DEFAULT_MIN_AGE = 3600.0


@dataclass
class FsckReport:
    """What ``fsck`` found: one line per problem, naming the record that holds the bad reference."""

    records: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the store is consistent."""
        return not self.problems


@dataclass
class GcReport:
    """What ``gc`` removed (or, with ``dry_run``, would remove)."""

    blobs: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)
    bytes: int = 0
    kept: int = 0
    dry_run: bool = False


NOT_BLOBS = {("workflow", "digest"), ("", "archive_digest")}
"""(parent key, key) of record fields holding a digest that names no blob (a plan's or an archive's digest)."""


def _digests_in(value: Any, found: set[str]) -> None:
    stack: list[tuple[str, str, Any]] = [("", "", value)]
    while stack:
        parent, key, item = stack.pop()
        if (parent, key) in NOT_BLOBS or ("", key) in NOT_BLOBS:
            continue
        if isinstance(item, str):
            found.update(DIGEST.findall(item))
        elif isinstance(item, dict):
            for child_key, child in item.items():
                found.update(DIGEST.findall(str(child_key)))
                stack.append((key, str(child_key), child))
        elif isinstance(item, list):
            stack.extend((parent, key, child) for child in item)


def record_keys(store: ArtifactStore) -> list[str]:
    """Every record key (JSON documents under ``cache/``, ``runs/`` and ``archives/``)."""
    keys: list[str] = []
    for prefix in RECORD_PREFIXES:
        keys.extend(k for k in store.backend.list(prefix) if k.endswith(".json"))
    return keys


def _tree_entries(data: bytes) -> list[str] | None:
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != TREE_FORMAT:
        return None
    return [str(e.get("digest")) for e in manifest.get("entries", []) if isinstance(e, dict)]


def _blob_digest(key: str) -> str | None:
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "blobs" and parts[1] == "sha256" and parts[3][:2] == parts[2]:
        return f"sha256:{parts[3]}"
    return None


def fsck(store: ArtifactStore) -> FsckReport:
    """Check every record: valid JSON; every blob it names present and hashing to its name; archive records
    hashing to the digest in their key; tree manifests' entries present and intact as well."""
    report = FsckReport()
    referenced: dict[str, str] = {}
    for key in record_keys(store):
        report.records += 1
        try:
            raw = store.backend.get_bytes(key)
            data = json.loads(raw)
        except ArtifactNotFoundError:
            continue  # removed while we looked
        except (ValueError, UnicodeDecodeError, RecursionError):
            report.problems.append(f"unreadable record: {key} is not valid JSON")
            continue
        name = key.rsplit("/", 1)[-1].removesuffix(".json")
        if (
            key.startswith("archives/")
            and re.fullmatch(r"[0-9a-f]{64}", name)
            and digest_json(data).split(":", 1)[1] != name
        ):
            report.problems.append(f"tampered record: {key} does not hash to the digest in its name")
        found: set[str] = set()
        _digests_in(data, found)
        if key.startswith("archives/") and key.endswith("/ref.json"):  # a name's ref lists archive records
            folder = key.rsplit("/", 1)[0]
            for digest in sorted(found):
                if not store.backend.exists(f"{folder}/{digest[7:]}.json"):
                    report.problems.append(f"missing archive version: {digest} (listed by {key})")
            continue
        for digest in sorted(found):
            referenced.setdefault(digest, key)
    checked: set[str] = set()
    queue = sorted(referenced)
    while queue:
        digest = queue.pop()
        if digest in checked:
            continue
        checked.add(digest)
        holder = referenced[digest]
        if not store.backend.exists(blob_key(digest)):
            report.problems.append(f"missing blob: {digest} (named by {holder})")
            continue
        report.blobs += 1
        try:
            data = store.backend.get_bytes(blob_key(digest))
        except StoreError as exc:
            report.problems.append(f"unreadable blob: {digest} (named by {holder}): {exc}")
            continue
        actual = digest_bytes(data)
        if actual != digest:
            report.problems.append(f"corrupt blob: {digest} hashes to {actual} (named by {holder})")
            continue
        for entry in _tree_entries(data) or []:
            if DIGEST.fullmatch(entry) and entry not in referenced:
                referenced[entry] = f"{holder} (tree {digest[:19]})"
                queue.append(entry)
    return report


def referenced_blobs(store: ArtifactStore) -> set[str]:
    """Every blob a record names, directly or through a tree manifest."""
    found: set[str] = set()
    for key in record_keys(store):
        try:
            _digests_in(json.loads(store.backend.get_bytes(key)), found)
        except ArtifactNotFoundError:
            continue
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise StoreError(f"{key} is not valid JSON: refusing to collect garbage (run `nsbiflow fsck`)") from exc
    queue = sorted(found)
    while queue:
        digest = queue.pop()
        try:
            data = store.backend.get_bytes(blob_key(digest))
        except (ArtifactNotFoundError, StoreError):
            continue
        for entry in _tree_entries(data) or []:
            if DIGEST.fullmatch(entry) and entry not in found:
                found.add(entry)
                queue.append(entry)
    return found


def _age(store: ArtifactStore, key: str, now: float) -> float:
    local = store.backend.local_path(key)
    if local is not None:
        try:
            return now - local.stat().st_mtime
        except OSError:
            return 0.0
    modified = getattr(store.backend, "modified", None)
    if callable(modified):
        stamp = modified(key)
        return now - stamp if stamp is not None else 0.0
    return 0.0


def gc(store: ArtifactStore, *, dry_run: bool = False, min_age: float = DEFAULT_MIN_AGE) -> GcReport:
    """Remove blobs no record references (older than ``min_age`` s) and stale temporaries."""
    report = GcReport(dry_run=dry_run)
    keep = referenced_blobs(store)
    now = time.time()
    for key in store.backend.list("blobs/"):
        digest = _blob_digest(key)
        if digest is None or digest in keep or _age(store, key, now) < min_age:
            report.kept += 1
            continue
        local = store.backend.local_path(key)
        if local is not None:
            with contextlib.suppress(OSError):
                report.bytes += local.stat().st_size
        report.blobs.append(digest)
        if not dry_run:
            store.backend.delete(key)
    stale = getattr(store.backend, "stale_temporaries", None)
    if callable(stale):
        for item in stale(older_than=min_age):
            report.temporaries.append(str(item))
        if not dry_run:
            store.backend.clean_temporaries(older_than=min_age)  # type: ignore[attr-defined]
    return report
