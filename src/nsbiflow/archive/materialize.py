"""Lay an archived workflow out as files again (workflow, step definitions, code, input files).

Re-planning needs files: the planner reads ``workflow.yaml`` and finds ``steps/<name>/step.yaml`` beside it.
Everything comes from blobs, so this works on a fresh copy of the store with no original work directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from nsbiflow.archive.errors import TamperedArchiveError
from nsbiflow.archive.record import ArchiveRecord
from nsbiflow.paths import UnsafePathError, confined, safe_name
from nsbiflow.spec.models import FileInput, Workflow
from nsbiflow.store import ArtifactStore

WORKFLOW_FILE = "workflow.yaml"
STEPS_DIR = "steps"


def external_input_path(step: str, input_name: str, filename: str) -> str:
    """Where an archived file input lives relative to the archived workflow file."""
    return f"inputs/{step}/{input_name}/{filename}"


def archived_document(workflow_yaml: bytes, parameters: dict[str, Any], inputs: dict[tuple[str, str], str]) -> Any:
    """The workflow document as archived: resolved parameters become the defaults, file inputs point into
    the archive's ``inputs/`` folder. This is the document a reinterpretation patch applies to."""
    document = yaml.safe_load(workflow_yaml)
    for name, value in parameters.items():
        spec = document.setdefault("parameters", {}).setdefault(name, {})
        spec["default"] = value
    for (step, input_name), path in inputs.items():
        document["steps"][step]["inputs"][input_name] = {"path": path}
    return document


def file_inputs(workflow: Workflow) -> list[tuple[str, str, FileInput]]:
    """Every ``{path: ...}`` input binding of a workflow: (step, input, binding)."""
    return [
        (step_name, input_name, binding)
        for step_name, step in workflow.steps.items()
        for input_name, binding in step.inputs.items()
        if isinstance(binding, FileInput)
    ]


def write_definitions(store: ArtifactStore, record: ArchiveRecord, folder: Path) -> Path:
    """Write every catalog step definition (and its code files) to ``folder/steps``; returns that folder."""
    steps_dir = folder / STEPS_DIR
    steps_dir.mkdir(parents=True, exist_ok=True)
    for definition in record.definitions.values():
        if definition.uses is None:
            continue
        target = _confined(steps_dir, safe_name_or_refuse(definition.uses, record), record, "step definition")
        target.mkdir(parents=True, exist_ok=True)
        store.fetch_file(definition.blob, target / "step.yaml")
        for relative, digest in definition.code_files.items():
            store.fetch_file(digest, _confined(target, relative, record, "code file"))
    return steps_dir


def safe_name_or_refuse(name: str, record: ArchiveRecord) -> str:
    """A definition's catalog name, refused (as a tampered archive) unless it is one plain name."""
    try:
        return safe_name(name, "step definition name")
    except UnsafePathError as exc:
        raise TamperedArchiveError(f"archive {record.name!r} is unsafe: {exc}") from None


def _confined(folder: Path, relative: str, record: ArchiveRecord, what: str) -> Path:
    """``folder/relative``, refusing (as a tampered archive) any path of the record that would leave it."""
    try:
        return confined(folder, relative, f"{what} path")
    except UnsafePathError as exc:
        raise TamperedArchiveError(f"archive {record.name!r} is unsafe: {exc}") from None


def materialize(
    store: ArtifactStore, record: ArchiveRecord, folder: Path, document: Any | None = None
) -> tuple[Path, Path]:
    """Write the (possibly patched) workflow document, its definitions and its input files under ``folder``.

    Returns (workflow file, steps folder). File inputs the document still points at inside the archive are
    fetched from the store; absolute paths (a reinterpreter's own files) are left as they are.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if document is None:
        document = json.loads(store.read_blob(record.workflow_document))
    workflow_file = folder / WORKFLOW_FILE
    workflow_file.write_text(yaml.safe_dump(document, sort_keys=False))
    steps_dir = write_definitions(store, record, folder)
    for external in record.external_inputs:
        binding = document.get("steps", {}).get(external.step, {}).get("inputs", {}).get(external.input)
        if isinstance(binding, dict) and binding.get("path") == external.path:
            store.fetch(external.ref, _confined(folder, external.path, record, "external input"))
    return workflow_file, steps_dir
