"""Load workflows and step definitions from YAML into the pydantic models, with located errors."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from nsbiflow.errors import Problem, SpecError
from nsbiflow.spec.models import StepDefinition, Workflow
from nsbiflow.spec.yaml_source import SourceDocument, read_yaml_file

M = TypeVar("M", bound=BaseModel)


def _field_names(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """All field names (and aliases) reachable from ``model``: the vocabulary for 'did you mean'."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for candidate in _models_in(info.annotation):
            names |= _field_names(candidate, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    return found


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "list[str]", "list[any]", "list[int]"}


def _is_union_tag(part: Any) -> bool:
    if not isinstance(part, str):
        return False
    return part in _UNION_TAGS or part[:1].isupper() or part.startswith(("list[", "dict[", "function-"))


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "string_pattern_mismatch":
        return f"{error.get('input')!r} is not a valid name: use lower-case letters, digits, '-' and '_'"
    return message


def validation_problems(
    doc: SourceDocument, error: ValidationError, model: type[BaseModel], base: tuple[Any, ...] = ()
) -> list[Problem]:
    """Turn a pydantic ``ValidationError`` into located, de-duplicated ``Problem`` lines."""
    vocabulary = _field_names(model)
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    key_errors: set[tuple[Any, ...]] = set()
    for err in error.errors():
        loc = tuple(base) + tuple(part for part in err["loc"] if part != "[key]")
        while loc and (_is_union_tag(loc[-1]) and loc not in doc.positions):
            loc = loc[:-1]
        # strip union tags in the middle too (they are not keys of the document)
        loc = tuple(p for i, p in enumerate(loc) if not (_is_union_tag(p) and loc[: i + 1] not in doc.positions))
        grouped.setdefault(loc, []).append(dict(err))
        if "[key]" in err["loc"]:
            key_errors.add(loc)
    problems: list[Problem] = []
    for loc, errors in grouped.items():
        dotted = ".".join(str(p) for p in loc[len(base) :]) or "(top level)"
        extra = [e for e in errors if e["type"] == "extra_forbidden"]
        if extra:
            field_name = str(loc[-1])
            hint = difflib.get_close_matches(field_name, sorted(vocabulary), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            parent = ".".join(str(p) for p in loc[len(base) : -1]) or "the top level"
            problems.append(doc.problem(loc, f"unknown field {field_name!r} in {parent}{suggestion}", key=True))
            continue
        missing = [e for e in errors if e["type"] == "missing"]
        if missing and len(missing) == len(errors):
            parent = ".".join(str(p) for p in loc[len(base) : -1]) or "the top level"
            problems.append(doc.problem(loc[:-1], f"missing required field {str(loc[-1])!r} in {parent}"))
            continue
        on_key = loc in key_errors
        if len(errors) > 1:
            reasons = "; or ".join(sorted({_describe(e) for e in errors}))
            problems.append(doc.problem(loc, f"{dotted}: invalid value ({reasons})", key=on_key))
        else:
            problems.append(doc.problem(loc, f"{dotted}: {_describe(errors[0])}", key=on_key))
    return problems


def validate_document(doc: SourceDocument, model: type[M]) -> M:
    """Validate parsed YAML against ``model``; raise ``SpecError`` with one located line per problem."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(validation_problems(doc, exc, model)) from None


def load_step_definition(path: str | Path) -> tuple[StepDefinition, SourceDocument]:
    """Load ``steps/<name>/step.yaml``."""
    doc = read_yaml_file(path)
    definition = validate_document(doc, StepDefinition)
    folder = Path(path).parent.name
    if folder != definition.name and Path(path).name == "step.yaml":
        raise SpecError([doc.problem(("name",), f"name {definition.name!r} must match its folder {folder!r}")])
    return definition, doc


# Kubernetes label syntax (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/):
# the labels become Argo Workflow and pod labels, where an invalid one is rejected only at submission.
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_problem(key: str, value: str) -> str | None:
    """Why ``key: value`` is not a valid Kubernetes label, or ``None`` when it is."""
    prefix, _, name = key.rpartition("/")
    if not _LABEL_NAME.match(name) or (prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix))):
        return (
            f"label key {key!r} is not a valid Kubernetes label key: [PREFIX/]NAME, NAME up to 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    if value and not _LABEL_NAME.match(value):
        return (
            f"label value {value!r} of {key!r} is not a valid Kubernetes label value: up to 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit (or empty)"
        )
    return None


def load_workflow_document(path: str | Path) -> tuple[Workflow, SourceDocument]:
    """Load a workflow file into the model (structure only; references are checked by the planner)."""
    doc = read_yaml_file(path)
    workflow = validate_document(doc, Workflow)
    problems = []
    for key, value in workflow.metadata.labels.items():
        message = label_problem(key, value)
        if message is not None:
            problems.append(doc.problem(("metadata", "labels", key), message))
    if problems:
        raise SpecError(problems)
    return workflow, doc
