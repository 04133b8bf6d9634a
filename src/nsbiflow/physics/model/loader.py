"""Read a model file (YAML or JSON) into ``Model`` with ``FILE:LINE:COL`` errors.

The project's YAML reader with positions (``nsbiflow.spec.yaml_source``; JSON is read by the same parser)
and its pydantic error formatter are reused, so a model file's errors read like a workflow's. Cross
references (undeclared parameters or ratios, bad coefficients) are checked after the structure and located
at the value at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nsbiflow.errors import Problem, SpecError
from nsbiflow.physics.model.spec import Model, references
from nsbiflow.spec.loader import validation_problems
from nsbiflow.spec.yaml_source import SourceDocument, read_yaml_file

_TAGS = {"unbinned", "binned", "normfactor", "normsys", "lumi", "shapesys", "histosys", "mcstat"}


class _Untagged:
    """A ``ValidationError`` whose locations drop the discriminated unions' tags (``normsys``, ``unbinned``, ...),
    which pydantic inserts but the document does not have, so the error points at the real line."""

    def __init__(self, error: ValidationError, positions: Mapping[tuple[Any, ...], Any]) -> None:
        self.error, self.positions = error, positions

    def errors(self) -> list[Any]:
        """The errors with tag-free locations."""
        out = []
        for err in self.error.errors():
            loc = tuple(err["loc"])
            keep = tuple(
                p for i, p in enumerate(loc) if not (p in _TAGS and i > 0 and loc[: i + 1] not in self.positions)
            )
            out.append({**err, "loc": keep})
        return out


def validate_model_document(doc: SourceDocument) -> Model:
    """Validate a parsed document as a ``Model``; ``SpecError`` with one located line per problem."""
    try:
        model = Model.model_validate(doc.data)
    except ValidationError as exc:
        untagged: Any = _Untagged(exc, doc.positions)  # duck-types the one method validation_problems calls
        raise SpecError(validation_problems(doc, untagged, Model)) from None
    problems = [doc.problem(loc, message) for loc, message in references(model)]
    if problems:
        raise SpecError(problems)
    return model


def load_model(path: str | Path) -> Model:
    """Load and check a model file."""
    return validate_model_document(read_yaml_file(path))


def model_from_data(data: Any, name: str = "<model>") -> Model:
    """Check a model given as plain data (e.g. a patched document); errors carry ``name`` and no position."""
    if not isinstance(data, dict):
        raise SpecError([Problem(name, 1, 1, "a model must be a mapping")])
    return validate_model_document(SourceDocument(path=name, data=data, positions={}))
