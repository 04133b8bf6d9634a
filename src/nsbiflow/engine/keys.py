"""Step keys: the cache key of a step instance.

A step key is the digest of: the step definition (what affects results: image, command, I/O, parameter
types; not descriptions, resources, retries or timeouts), the resolved parameters, the digests of its
inputs, and the identity of the code that implements it. Same key, same outputs: never recompute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nsbiflow import __version__
from nsbiflow.engine.code import entry_digest
from nsbiflow.engine.plan import PlannedStep
from nsbiflow.spec.models import StepDefinition
from nsbiflow.store.digest import digest_json

KEY_SCHEMA = 1
_NOT_IN_KEY = {"description", "resources", "retries", "timeout"}


def definition_identity(definition: StepDefinition) -> dict[str, Any]:
    """The part of a step definition that can change a step's outputs."""
    data = definition.model_dump(mode="json", by_alias=True, exclude=_NOT_IN_KEY)
    for section in ("parameters", "inputs", "outputs"):
        for spec in data.get(section, {}).values():
            spec.pop("description", None)
    if not data.get("env"):
        data.pop("env", None)  # keys of steps that declare no environment stay what they were
    return data


def code_identity(
    definition: StepDefinition, definition_path: Path | None, *, base: Path | None = None
) -> dict[str, str]:
    """What identifies the implementation: package version, image, and digests of the declared code.

    Globs are relative to the step definition's folder, or for an inline step to ``base`` (the workflow
    file's folder); see ``nsbiflow.engine.code`` for what a ``python:`` entry stands for. An entry that
    identifies nothing raises ``CodeError``.
    """
    identity = {"nsbiflow": __version__, "image": definition.image}
    folder = definition_path.parent if definition_path else (base or Path.cwd())
    for entry in definition.code:
        identity[entry] = entry_digest(entry, folder)
    return identity


def step_code_identity(step: PlannedStep) -> dict[str, str]:
    """``code_identity`` of a planned step (inline steps resolve their globs against the workflow's folder)."""
    return code_identity(step.definition, step.definition_path, base=step.code_base)


def definition_key(
    definition: StepDefinition,
    parameters: Mapping[str, Any],
    input_digests: Mapping[str, Sequence[str]],
    code: Mapping[str, str],
) -> str:
    """The cache key of one invocation of ``definition``: what ``step_key`` computes, from its parts
    (the Argo step wrapper calls it in the pod, where there is no plan)."""
    payload = {
        "schema": KEY_SCHEMA,
        "definition": definition_identity(definition),
        "parameters": dict(parameters),
        "inputs": {name: list(digests) for name, digests in sorted(input_digests.items())},
        "code": dict(code),
    }
    return digest_json(payload).split(":", 1)[1]


def step_key(step: PlannedStep, input_digests: dict[str, list[str]], code: dict[str, str] | None = None) -> str:
    """The cache key of a step instance given the digests of its inputs."""
    identity = code if code is not None else step_code_identity(step)
    return definition_key(step.definition, step.parameters, input_digests, identity)
