"""``reinterpret``: patch an archived workflow's interface, re-plan, and re-run only what the patch touches.

Nothing is written to the store until the archive verified, the patch stayed inside the interface and the
patched workflow planned. Then the archived step outputs are offered to the cache (so a fresh copy of the
store with only ``blobs/`` and ``archives/`` reuses them) and the plan runs on an ``ExecutionTarget``
(``archive/targets.py``): the local executor by default, or Argo (compiled and submitted against the same S3
store; the pods skip every step whose key is stored). A finished run writes a reinterpretation record next
to the archive; a submitted one reports the workflow's name and which steps the pods will skip.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpointer

from nsbiflow.archive.errors import PatchError, TamperedArchiveError
from nsbiflow.archive.materialize import materialize
from nsbiflow.archive.patching import apply_interface_patch, changed_values, interface_pointers
from nsbiflow.archive.record import ArchiveRecord, ReinterpretationRecord, load_archive, write_reinterpretation
from nsbiflow.archive.targets import Execution, ExecutionTarget, LocalTarget
from nsbiflow.archive.verify import verify_archive
from nsbiflow.backends.local.progress import Progress
from nsbiflow.engine.plan import Plan, load_plan
from nsbiflow.errors import SpecError
from nsbiflow.store import ArtifactStore, CacheEntry, RunManifest
from nsbiflow.store.digest import ordered_json


@dataclass
class ReinterpretResult:
    """What a reinterpretation did: which steps were reused, which re-ran, and the new results."""

    archive: str
    archive_digest: str
    record_digest: str
    record: ReinterpretationRecord
    manifest: RunManifest | None = None
    reused: list[str] = field(default_factory=list)
    reran: list[str] = field(default_factory=list)
    execution: Execution | None = None

    @property
    def submitted(self) -> bool:
        """True when the run was handed to a cluster (no results yet, no record written)."""
        return self.execution is not None and not self.execution.complete

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object."""
        if self.submitted:
            assert self.execution is not None
            return {
                "archive": self.archive,
                "archive_digest": self.archive_digest,
                "kind": self.record.kind,
                "target": self.execution.target,
                "workflow": self.execution.run_id,
                "status": "submitted" if self.execution.run_id else "compiled",
                "changed": self.record.changed,
                "reused": self.reused,
                "reran": self.reran,
            }
        return {
            "archive": self.archive,
            "archive_digest": self.archive_digest,
            "reinterpretation": self.record_digest,
            "kind": self.record.kind,
            "run_id": self.record.run_id,
            "status": self.manifest.status if self.manifest else "succeeded",
            "changed": self.record.changed,
            "reused": self.reused,
            "reran": self.reran,
            "results": self.record.results,
            "original_results": self.record.original_results,
            "seconds": self.record.seconds,
        }


def open_verified(store: ArtifactStore, reference: str) -> tuple[str, ArchiveRecord]:
    """Load an archive and re-hash every blob it references; anything missing or altered is refused."""
    digest, record = load_archive(store, reference)
    report = verify_archive(store, digest, record)
    if not report.ok:
        problems = report.problems()
        more = f" (and {len(problems) - 1} more; see `nsbiflow archive verify`)" if len(problems) > 1 else ""
        raise TamperedArchiveError(f"archive {record.name}@{digest[7:19]} failed verification: {problems[0]}{more}")
    return digest, record


def _absolute_inputs(document: Any, interface: dict[str, list[str]], base_dir: Path, original: Any) -> Any:
    """Interface file inputs a patch pointed elsewhere: relative to the patch file, and they must exist."""
    for ref in interface.get("inputs", []):
        step, _, input_name = ref.partition(".")
        pointer = f"/steps/{step}/inputs/{input_name}/path"
        new = jsonpointer.resolve_pointer(document, pointer, None)
        if new == jsonpointer.resolve_pointer(original, pointer, None):
            continue
        if not isinstance(new, str) or not new:
            raise PatchError(f"{pointer} must be a file path, got {new!r}")
        path = (base_dir / new).resolve()
        if not path.exists():
            raise PatchError(f"{pointer}: the new input {new!r} does not exist (looked at {path})")
        jsonpointer.set_pointer(document, pointer, str(path))
    return document


def _plan(workflow_file: Path, steps_dir: Path) -> Plan:
    try:
        return load_plan(workflow_file, steps_dirs=[steps_dir])
    except SpecError as exc:
        first = exc.problems[0].message if exc.problems else str(exc)
        raise PatchError(f"the patched workflow is not valid: {first}") from None


def seed_cache(store: ArtifactStore, record: ArchiveRecord) -> int:
    """Offer the archived step outputs to the cache (keys absent from this store only); returns how many."""
    seeded = 0
    for step_id, step in record.steps.items():
        if not step.key or store.cache_lookup(step.key) is not None:
            continue
        if not all(store.is_complete(ref) for ref in step.outputs.values()):
            continue
        store.cache_record(
            CacheEntry(
                key=step.key,
                step=step_id,
                outputs=step.outputs,
                log=step.log,
                run_id=record.run_id,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            )
        )
        seeded += 1
    return seeded


def reinterpret(
    store: ArtifactStore,
    reference: str,
    operations: Any,
    *,
    base_dir: Path,
    jobs: int | None = None,
    progress: Progress | None = None,
    target: ExecutionTarget | None = None,
) -> ReinterpretResult:
    """Apply an interface-only JSON Patch to an archive and re-run what changed (see the module docstring);
    ``target`` says where (default: locally, with ``jobs`` and ``progress``)."""
    digest, record = open_verified(store, reference)
    original = json.loads(store.read_blob(record.workflow_document))
    patched = apply_interface_patch(original, operations, record.interface)
    patched = _absolute_inputs(patched, record.interface, base_dir, original)
    changed = changed_values(original, patched, record.interface)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nsbiflow-reinterpret-") as tmp:
        workflow_file, steps_dir = materialize(store, record, Path(tmp), patched)
        plan = _plan(workflow_file, steps_dir)
        # -- from here on the store is written to ------------------------------------------------------
        seed_cache(store, record)
        execution = (target or LocalTarget(jobs=jobs, progress=progress)).execute(store, plan)
    reused, reran = execution.reused, execution.reran
    if not execution.complete:  # submitted to a cluster: nothing finished yet, so no record is written
        pending = ReinterpretationRecord(
            archive=record.name, archive_digest=digest, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            patch=operations, changed=changed, run_id=execution.run_id or None, reused=reused, reran=reran,
        )  # fmt: skip
        return ReinterpretResult(record.name, digest, "", pending, None, reused, reran, execution)
    manifest = execution.manifest
    assert manifest is not None
    results_names = record.interface.get("results") or list(manifest.outputs)
    new = ReinterpretationRecord(
        archive=record.name,
        archive_digest=digest,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        patch=operations,
        changed=changed,
        workflow_document=store.put_bytes(ordered_json(patched)),
        run_id=manifest.run_id,
        reused=reused,
        reran=reran,
        results={n: _dump(manifest.outputs[n]) for n in results_names if n in manifest.outputs},
        original_results={n: _dump(record.results[n]) for n in results_names if n in record.results},
        seconds=round(time.monotonic() - started, 3),
    )
    record_digest = write_reinterpretation(store, new)
    return ReinterpretResult(record.name, digest, record_digest, new, manifest, reused, reran, execution)


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [v.model_dump(mode="json") for v in value]
    return value.model_dump(mode="json")


__all__ = ["ReinterpretResult", "interface_pointers", "open_verified", "reinterpret", "seed_cache"]
