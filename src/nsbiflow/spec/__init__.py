"""The spec: pydantic v2 models of workflows and step definitions, the YAML loader, the step catalog, schemas.

The names below are imported on first use (``nsbiflow.spec.models`` alone is what the step contract needs).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StepCatalog": "catalog",
    "load_step_definition": "loader",
    "load_workflow_document": "loader",
    "schema_dict": "schema_export",
    "schema_json": "schema_export",
    **{
        name: "models"
        for name in (
            "API_VERSION", "FileInput", "IOSpec", "InlineStep", "ParamType", "ParameterSpec", "Resources",
            "RetryPolicy", "StepDefinition", "Workflow", "WorkflowStep", "coerce_value",
        )
    },
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
