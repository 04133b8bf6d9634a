"""Validators of compiled Workflows, shared by the tests and ``nsbiflow submit``.

- ``official_validator``: the official Argo Workflows JSON schema (``shared/schemas``), with its
  ``IntOrString`` definition widened to integer-or-string as Kubernetes accepts; it does not forbid
  unknown fields.
- ``strict_validator``: a schema derived from hera's wire models with ``additionalProperties: false``
  added to every object, so a misspelt or misplaced field is an error.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
SCHEMA_FILE = "argo-workflows-v4.1-schema.json"


def official_schema_path() -> Path:
    """Where the official schema is expected: ``$NSBIFLOW_ARGO_SCHEMA`` or ``<repo>/../shared/schemas/``."""
    import os

    if os.environ.get("NSBIFLOW_ARGO_SCHEMA"):
        return Path(os.environ["NSBIFLOW_ARGO_SCHEMA"])
    return Path(__file__).resolve().parents[4].parent / "shared" / "schemas" / SCHEMA_FILE


def _forbid_extra(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_extra(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_extra(value)


@functools.lru_cache(maxsize=1)
def strict_schema() -> dict[str, Any]:
    """hera's ``Workflow`` JSON schema (by alias) with unknown fields forbidden everywhere."""
    from hera.workflows.models import Workflow

    schema = Workflow.model_json_schema(by_alias=True)
    _forbid_extra(schema)
    return schema


@functools.lru_cache(maxsize=2)
def official_schema(path: Path | None = None) -> dict[str, Any]:
    """The official Argo schema, narrowed to ``Workflow`` and with ``IntOrString`` widened."""
    data: dict[str, Any] = json.loads((path or official_schema_path()).read_text())
    schema = copy.deepcopy(data)
    schema["definitions"][INT_OR_STRING] = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    schema.pop("oneOf", None)
    schema["$ref"] = "#/definitions/io.argoproj.workflow.v1alpha1.Workflow"
    return schema


def _errors(validator: Draft202012Validator, document: dict[str, Any]) -> list[str]:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    result = []
    for error in errors:
        error = best_match([error]) if error.context else error
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        result.append(f"{where}: {error.message[:300]}")
    return result


def strict_errors(document: dict[str, Any]) -> list[str]:
    """Problems of a Workflow document under the strict hera-derived schema (empty: valid)."""
    return _errors(Draft202012Validator(strict_schema()), document)


def official_errors(document: dict[str, Any], path: Path | None = None) -> list[str]:
    """Problems of a Workflow document under the official Argo schema (empty: valid)."""
    return _errors(Draft202012Validator(official_schema(path)), document)
