"""The engine: plans (parameters, fan-out, order), step keys, and the step contract every backend follows.

The names below are imported on first use, so a stage program that needs only ``nsbiflow.engine.contract``
does not pay for the planner.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ContractError": "contract",
    "command_line": "contract",
    "decode_parameters": "contract",
    "encode_parameter": "contract",
    "code_identity": "keys",
    "definition_key": "keys",
    "step_key": "keys",
    "InputSource": "plan",
    "Plan": "plan",
    "PlannedStep": "plan",
    "build_plan": "plan",
    "load_plan": "plan",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
