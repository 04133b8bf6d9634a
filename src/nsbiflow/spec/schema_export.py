"""The JSON Schema of the spec, exported from the pydantic models (checked in; a test guards drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nsbiflow.spec.models import StepDefinition, Workflow

SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_FILES = {"workflow": "workflow.schema.json", "step": "step.schema.json"}


def schema_dict(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``workflow`` or ``step``."""
    model = Workflow if kind == "workflow" else StepDefinition
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://nsbiflow.dev/schemas/v1/{SCHEMA_FILES[kind]}"
    return schema


def schema_json(kind: str) -> str:
    """The schema as stable, indented JSON text."""
    return json.dumps(schema_dict(kind), indent=2, sort_keys=True) + "\n"
