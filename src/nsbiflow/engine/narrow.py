"""``keys_by``: the part of a mapping parameter that reaches a step, so its cache key holds only what it reads.

A step definition may declare, for a parameter of type dict, which of the mapping's keys each value of its
other parameters needs (``steps/generate-offshell/step.yaml``: the simulator configuration's fields that affect
a process). The planner passes the step only those keys, so a change of a key that one process needs re-runs
that process's chain alone. The step sees exactly what its key covers, so an output always matches its key on
every backend; a table that left out a key the step needs would make the step ignore that key (it reads the
default), which is why the owner of a table tests it by perturbing each key (tests/physics/test_offshell_fields.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsbiflow.engine.expressions import has_expression
from nsbiflow.spec.models import ParameterSpec


def _selectors(value: Any) -> list[Any]:
    """What a parameter's value selects by: itself (a scalar), each item (a list) or each key (a mapping)."""
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, list):
        return value
    return [value]


def narrowed(spec: ParameterSpec, value: Any, parameters: Mapping[str, Any]) -> Any:
    """``value`` with only the keys its ``keys_by`` lets reach the step (all of them without ``keys_by``).

    A key named in no table always reaches the step (an unknown key then fails in the step, naming itself);
    a selecting value that a table does not name, or one not resolved at plan time, passes the whole mapping.
    """
    if spec.keys_by is None or not isinstance(value, dict):
        return value
    conditional = {key for table in spec.keys_by.values() for keys in table.values() for key in keys}
    chosen: set[str] = set()
    for other, table in spec.keys_by.items():
        for selector in _selectors(parameters.get(other)):
            keys = table.get(selector) if isinstance(selector, str) and not has_expression(selector) else None
            if keys is None:
                return value
            chosen.update(keys)
    return {key: item for key, item in value.items() if key not in conditional or key in chosen}
