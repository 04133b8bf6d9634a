"""JSON Schemas of the model file and of the fit's results, exported from the pydantic models (checked in)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_FILES = {"model": "model.schema.json", "results": "results.schema.json"}


def _model(kind: str) -> type[BaseModel]:
    from nsbiflow.physics.model.results import Results
    from nsbiflow.physics.model.spec import Model

    return Model if kind == "model" else Results


def schema_dict(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``model`` or ``results``."""
    schema = _model(kind).model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://nsbiflow.dev/schemas/v1/{SCHEMA_FILES[kind]}"
    return schema


def schema_json(kind: str) -> str:
    """The schema as stable, indented JSON text."""
    return json.dumps(schema_dict(kind), indent=2, sort_keys=True) + "\n"
