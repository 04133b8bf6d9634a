"""``preserve``: turn a finished run into an immutable, self-contained archive record."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from nsbiflow.archive.errors import ArchiveError, ArchiveNotFoundError
from nsbiflow.archive.materialize import archived_document, external_input_path, file_inputs, materialize
from nsbiflow.archive.record import (
    ArchivedStep,
    ArchiveRecord,
    DefinitionRecord,
    ExternalInput,
    ImageRecord,
    KeyCheck,
    write_archive,
)
from nsbiflow.engine.keys import step_code_identity, step_key
from nsbiflow.engine.plan import load_plan
from nsbiflow.errors import ArtifactNotFoundError, CorruptArtifactError, NsbiflowError
from nsbiflow.spec.catalog import StepCatalog
from nsbiflow.spec.models import NAME_PATTERN, StepDefinition, Workflow
from nsbiflow.store import ArtifactRef, ArtifactStore, RunManifest
from nsbiflow.store.digest import digest_file, ordered_json

_REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def package_versions() -> dict[str, str]:
    """Versions of nsbiflow and every package it requires, as installed now."""
    versions = {"nsbiflow": importlib.metadata.version("nsbiflow")}
    for requirement in importlib.metadata.requires("nsbiflow") or []:
        if "extra ==" in requirement:
            continue
        match = _REQUIREMENT_NAME.match(requirement)
        if match is None:
            continue
        try:
            versions[match.group(0).lower()] = importlib.metadata.version(match.group(0))
        except importlib.metadata.PackageNotFoundError:
            versions[match.group(0).lower()] = "missing"
    return versions


def image_record(image: str) -> ImageRecord:
    """An image reference, with its digest when it pins one (``repo@sha256:...``)."""
    _, at, digest = image.partition("@")
    return ImageRecord(image=image, digest=digest if at else None)


def _ref_of(store: ArtifactStore, digest: str, filename: str) -> ArtifactRef:
    try:
        store.tree_manifest(digest)
    except (CorruptArtifactError, ArtifactNotFoundError):
        return ArtifactRef(kind="file", digest=digest, filename=filename)
    return ArtifactRef(kind="dir", digest=digest, filename=filename)


def _code_files(
    store: ArtifactStore, manifest: RunManifest, uses: str, blob: str, definition: StepDefinition
) -> dict[str, str]:
    """Put the code files a catalog definition declares (``code: [file globs]``) into the store."""
    patterns = [c for c in definition.code if not c.startswith("python:")]
    if not patterns:
        return {}
    path = Path(str(manifest.workflow.get("path", "")))
    if not path.exists():
        return {}
    entry = StepCatalog.for_workflow(path).find(uses)
    if entry is None or digest_file(entry.path) != blob:
        return {}
    base = entry.path.parent
    files: dict[str, str] = {}
    for pattern in patterns:
        for match in sorted(base.glob(pattern)):
            if match.is_file():
                files[match.relative_to(base).as_posix()] = store.put_file(match).digest
    return files


def check_keys(store: ArtifactStore, record: ArchiveRecord, manifest: RunManifest) -> KeyCheck:
    """Re-plan the archive from its blobs and recompute every step key from the run's input digests."""
    check = KeyCheck()
    with tempfile.TemporaryDirectory(prefix="nsbiflow-preserve-") as tmp:
        workflow_file, steps_dir = materialize(store, record, Path(tmp))
        try:
            plan = load_plan(workflow_file, steps_dirs=[steps_dir])
        except NsbiflowError as exc:
            raise ArchiveError(f"the archived workflow does not plan again: {str(exc).splitlines()[0]}") from None
        identities: dict[str, dict[str, str]] = {}
        for step_id, step in plan.steps.items():
            run_record = manifest.steps.get(step_id)
            if run_record is None or run_record.key is None:
                check.mismatched.append(step_id)
                continue
            if step.template not in identities:
                identities[step.template] = step_code_identity(step)
            if step_key(step, run_record.inputs, identities[step.template]) == run_record.key:
                check.matched += 1
            else:
                check.mismatched.append(step_id)
    return check


def preserve_run(store: ArtifactStore, run_id: str, name: str) -> tuple[str, ArchiveRecord]:
    """Archive a succeeded run under ``name`` (a new version if the name exists); returns (digest, record)."""
    if not re.match(NAME_PATTERN, name):
        raise ArchiveError(f"archive name {name!r} is not valid: use lower-case letters, digits, '-' and '_'")
    try:
        manifest = store.read_manifest(run_id)
    except ArtifactNotFoundError as exc:
        raise ArchiveNotFoundError(str(exc)) from None
    if manifest.status != "succeeded":
        raise ArchiveError(f"run {run_id} is {manifest.status}: only a succeeded run can be preserved")
    sources = manifest.workflow
    if "file" not in sources or "definitions" not in sources:
        raise ArchiveError(f"run {run_id} does not record its workflow sources; re-run it with this nsbiflow version")
    workflow_yaml = store.read_blob(str(sources["file"]))
    workflow = Workflow.model_validate(yaml.safe_load(workflow_yaml))

    blobs: dict[str, str] = {str(sources["file"]): "workflow file"}
    externals: list[ExternalInput] = []
    for step_name, input_name, binding in file_inputs(workflow):
        instance = next((r for r in manifest.steps.values() if r.template == step_name), None)
        if instance is None or not instance.inputs.get(input_name):
            raise ArchiveError(f"run {run_id} has no record of input {step_name}.{input_name}")
        filename = Path(binding.path).name
        if filename in ("", ".", ".."):
            raise ArchiveError(f"input {step_name}.{input_name}: {binding.path!r} does not name a file to archive")
        ref = _ref_of(store, instance.inputs[input_name][0], filename)
        externals.append(
            ExternalInput(
                step=step_name, input=input_name, path=external_input_path(step_name, input_name, filename), ref=ref
            )
        )
        for blob in store.blobs_of(ref):
            blobs.setdefault(blob, f"input {step_name}.{input_name}")

    definitions: dict[str, DefinitionRecord] = {}
    images: dict[str, ImageRecord] = {}
    for template, blob in dict(sources["definitions"]).items():
        uses = workflow.steps[template].uses if template in workflow.steps else None
        code: dict[str, str] = {}
        if uses is not None:
            definition = StepDefinition.model_validate(yaml.safe_load(store.read_blob(blob)))
            code = _code_files(store, manifest, uses, blob, definition)
        definitions[template] = DefinitionRecord(uses=uses, blob=blob, code_files=code)
        blobs.setdefault(blob, f"step definition {template}")
        for relative, digest in code.items():
            blobs.setdefault(digest, f"code {template}/{relative}")

    document = archived_document(workflow_yaml, manifest.parameters, {(e.step, e.input): e.path for e in externals})
    document_blob = store.put_bytes(ordered_json(document))
    blobs.setdefault(document_blob, "archived workflow document")

    steps: dict[str, ArchivedStep] = {}
    for step_id, run_record in manifest.steps.items():
        images.setdefault(run_record.template, image_record(run_record.image))
        steps[step_id] = ArchivedStep(
            template=run_record.template, key=str(run_record.key), outputs=run_record.outputs, log=run_record.log
        )
        for output, ref in run_record.outputs.items():
            for blob in store.blobs_of(ref):
                blobs.setdefault(blob, f"{step_id}.{output}")
        if run_record.log:
            blobs.setdefault(run_record.log, f"{step_id} log")

    versions: dict[str, Any] = {**manifest.versions, **package_versions()}
    record = ArchiveRecord(
        name=name,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        run_id=manifest.run_id,
        workflow_name=workflow.metadata.name,
        workflow_file=str(sources["file"]),
        workflow_document=document_blob,
        definitions=definitions,
        external_inputs=externals,
        parameters=manifest.parameters,
        interface=workflow.interface.model_dump(mode="json"),
        images=images,
        versions={k: str(v) for k, v in versions.items()},
        steps=steps,
        results=manifest.outputs,
        manifest=manifest.model_dump(mode="json"),
        blobs=dict(sorted(blobs.items())),
    )
    record.key_check = check_keys(store, record, manifest)
    return write_archive(store, record), record
