"""Checks of a plan contributed by installed packages, and schemas of their document kinds.

The engine knows nothing of physics; a package that gives meaning to some of a workflow's files (the physics
package's statistical model, ``kind: Model``) registers, as Python entry points:

- ``nsbiflow.plan_checks``: ``check(plan) -> list[Problem]``, run on every plan (``validate``, ``run``,
  ``compile``), so a model that names a ratio the workflow does not train fails before any step runs;
- ``nsbiflow.schemas``: ``kind -> schema_json() -> str``, printed by ``nsbiflow schema --kind KIND``.

Entry points (the pytest/pyhf plugin mechanism) keep the import direction: physics imports the engine's
types, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from nsbiflow.errors import Problem

if TYPE_CHECKING:
    from nsbiflow.engine.plan import Plan

PLAN_CHECKS = "nsbiflow.plan_checks"
SCHEMAS = "nsbiflow.schemas"


def plan_problems(plan: Plan) -> list[Problem]:
    """Problems every registered plan check finds."""
    problems: list[Problem] = []
    for point in sorted(entry_points(group=PLAN_CHECKS), key=lambda p: p.name):
        check: Callable[[Any], list[Problem]] = point.load()
        problems.extend(check(plan))
    return problems


def extra_schemas() -> dict[str, Callable[[], str]]:
    """Document kinds whose JSON Schema an installed package provides: kind -> function returning the text."""
    return {point.name: point.load() for point in entry_points(group=SCHEMAS)}
