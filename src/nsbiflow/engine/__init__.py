"""The engine: plans (parameters, fan-out, order), step keys, and the step contract every backend follows."""

from __future__ import annotations

from nsbiflow.engine.contract import ContractError, command_line, decode_parameters, encode_parameter
from nsbiflow.engine.keys import code_identity, definition_key, step_key
from nsbiflow.engine.plan import InputSource, Plan, PlannedStep, build_plan, load_plan

__all__ = [
    "ContractError",
    "InputSource",
    "Plan",
    "PlannedStep",
    "build_plan",
    "code_identity",
    "command_line",
    "decode_parameters",
    "definition_key",
    "encode_parameter",
    "load_plan",
    "step_key",
]
