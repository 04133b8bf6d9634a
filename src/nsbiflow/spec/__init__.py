"""The spec: pydantic v2 models of workflows and step definitions, the YAML loader, the step catalog, schemas."""

from __future__ import annotations

from nsbiflow.spec.catalog import StepCatalog
from nsbiflow.spec.loader import load_step_definition, load_workflow_document
from nsbiflow.spec.models import (
    API_VERSION,
    FileInput,
    InlineStep,
    IOSpec,
    ParameterSpec,
    ParamType,
    Resources,
    RetryPolicy,
    StepDefinition,
    Workflow,
    WorkflowStep,
    coerce_value,
)
from nsbiflow.spec.schema_export import schema_dict, schema_json

__all__ = [
    "API_VERSION",
    "FileInput",
    "IOSpec",
    "InlineStep",
    "ParamType",
    "ParameterSpec",
    "Resources",
    "RetryPolicy",
    "StepCatalog",
    "StepDefinition",
    "Workflow",
    "WorkflowStep",
    "coerce_value",
    "load_step_definition",
    "load_workflow_document",
    "schema_dict",
    "schema_json",
]
