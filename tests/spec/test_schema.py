"""The exported JSON Schema is checked in; this fails when the models change and the file does not."""

from __future__ import annotations

import json

import jsonschema
import pytest

from nsbiflow.spec.loader import load_workflow_document
from nsbiflow.spec.schema_export import SCHEMA_DIR, SCHEMA_FILES, schema_dict, schema_json
from tests.conftest import REPO


@pytest.mark.parametrize("kind", sorted(SCHEMA_FILES))
def test_checked_in_schema_matches_models(kind: str) -> None:
    checked_in = (SCHEMA_DIR / SCHEMA_FILES[kind]).read_text()
    assert checked_in == schema_json(kind), (
        f"the {kind} schema drifted from the models: run "
        f"`nsbiflow schema --kind {kind} > src/nsbiflow/spec/schema/{SCHEMA_FILES[kind]}`"
    )


def test_example_workflows_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(schema_dict("workflow"))
    files = sorted(
        p for p in (REPO / "workflows").rglob("*.yaml") if ".argo." not in p.name and "models" not in p.parts
    )  # workflows/models/ holds statistical models (kind: Model), checked in tests/physics/model
    assert files
    for path in files:
        _workflow, doc = load_workflow_document(path)
        errors = list(validator.iter_errors(json.loads(json.dumps(doc.data))))
        assert not errors, (path, errors[0].message)
