"""Stage parameters are declared once, as the stage's pydantic config; ``steps/*/step.yaml`` is generated from it.

A stage registers its config with ``@stage(NAME, outputs=..., config=ConfigClass)`` (``stepcli.contract``).
From that class this module derives the step definition's ``parameters:`` (type, default, choices,
description per field) and the typed decoding of ``--param`` values (through ``nsbiflow.engine.contract``).
``NSBIFLOW_REGEN_STEPS=1 .venv/bin/python -m pytest tests/physics/test_step_definitions.py`` rewrites the
``parameters:`` block of every ``steps/<name>/step.yaml`` whose command is ``nsbiflow-step <name>``; the same
test fails when a file drifts from its stage (see ``docs/steps.md``).

Field types map onto the step spec's types: ``int``, ``float``, ``str``, ``bool``; ``Literal[...]`` becomes
its values' type with ``choices``; ``list[...]``/``tuple[...]`` ``list``; ``dict[...]`` ``dict``; ``X | None``
is ``X``. A field without a default (or with ``None``) is a parameter the workflow must bind. A dict field's
``json_schema_extra={"keys_by": ...}`` becomes its ``keys_by`` (``nsbiflow.engine.narrow``).
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from nsbiflow.spec.models import ParameterSpec, ParamType

_SCALARS: dict[type, ParamType] = {bool: "bool", int: "int", float: "float", str: "str"}


class ParameterMappingError(TypeError):
    """A config field whose type has no step spec counterpart."""


def _strip_optional(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        if set(args) == {int, float}:
            return float
    return annotation


def field_type(name: str, annotation: Any) -> tuple[ParamType, list[Any] | None]:
    """The step spec type (and choices) of one config field's annotation."""
    annotation = _strip_optional(annotation)
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return field_type(name, get_args(annotation)[0])
    if origin is Literal:
        choices = list(get_args(annotation))
        kinds = {_SCALARS.get(type(c)) for c in choices}
        if len(kinds) != 1 or None in kinds:
            raise ParameterMappingError(f"field {name!r}: Literal choices must share one scalar type")
        return next(iter(kinds)) or "str", choices
    if annotation in _SCALARS:
        return _SCALARS[annotation], None
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        return "list", None
    if origin is dict or annotation is dict:
        return "dict", None
    raise ParameterMappingError(f"field {name!r}: type {annotation!r} has no step parameter type")


def field_default(info: FieldInfo) -> Any:
    """The field's default (factories called); ``None`` when the workflow must give it."""
    if info.is_required():
        return None
    return info.get_default(call_default_factory=True)


def parameter_specs(model: type[BaseModel]) -> dict[str, ParameterSpec]:
    """The step definition's ``parameters:`` of a stage config, in field order."""
    specs: dict[str, ParameterSpec] = {}
    for name, info in model.model_fields.items():
        type_, choices = field_type(name, info.annotation)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        specs[name] = ParameterSpec(
            type=type_,
            default=field_default(info),
            description=info.description or "",
            choices=choices,
            keys_by=extra.get("keys_by"),
        )
    return specs


# -- step.yaml rendering --------------------------------------------------------------------------------
_WIDTH = 118


def _spec_data(spec: ParameterSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"type": spec.type}
    if spec.default is not None:
        data["default"] = spec.default
    if spec.choices is not None:
        data["choices"] = spec.choices
    if spec.description:
        data["description"] = spec.description
    if spec.keys_by is not None:
        data["keys_by"] = spec.keys_by
    return data


def parameters_block(specs: dict[str, ParameterSpec]) -> str:
    """The ``parameters:`` block of a step.yaml (one flow mapping per parameter where it fits), or ``""``."""
    if not specs:
        return ""
    lines = ["parameters:"]
    for name, spec in specs.items():
        data = _spec_data(spec)
        flow = yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=10_000).strip()
        line = f"  {name}: {flow}"
        if len(line) <= _WIDTH and "\n" not in flow:
            lines.append(line)
            continue
        block = yaml.safe_dump({name: data}, default_flow_style=None, sort_keys=False, width=_WIDTH - 6)
        lines += ["  " + row for row in block.rstrip("\n").splitlines()]
    return "\n".join(lines) + "\n"


_BLOCK = re.compile(r"^parameters:[^\n]*\n(?:(?:[ \t][^\n]*|)\n)*", re.M)


def with_parameters(text: str, specs: dict[str, ParameterSpec]) -> str:
    """``text`` (a step.yaml) with its ``parameters:`` block replaced by the generated one (or inserted
    before ``inputs:``/``outputs:``)."""
    block = parameters_block(specs)
    match = _BLOCK.search(text)
    if match:
        tail = match.group(0)
        trailing = tail[len(tail.rstrip("\n")) + 1 :]  # keep blank lines that separated the block
        return text[: match.start()] + block + trailing + text[match.end() :]
    if not block:
        return text
    anchor = re.search(r"^(inputs|outputs|resources):", text, re.M)
    at = anchor.start() if anchor else len(text)
    return text[:at] + block + text[at:]


def stage_of(definition_text: str) -> str | None:
    """The stage a step.yaml runs (``command: [nsbiflow-step, NAME]``), else None."""
    data = yaml.safe_load(definition_text) or {}
    command = data.get("command") or []
    if len(command) == 2 and command[0] == "nsbiflow-step":
        return str(command[1])
    return None


def regenerate(path: Path, model: type[BaseModel] | None) -> bool:
    """Rewrite a step.yaml's parameters from its stage's config; True when the file changed."""
    text = path.read_text()
    new = with_parameters(text, parameter_specs(model) if model is not None else {})
    if new != text:
        path.write_text(new)
        return True
    return False
