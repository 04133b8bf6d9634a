"""The yadage stage spec, in the fully expanded form yadage 0.21 accepts with any jsonschema.

Fan-out is expanded statically: one ``singlestep-stage`` per planned step instance, so the export is exact
(the same commands, parameters and wiring as the local run). Each stage runs the step contract command
through ``string-interpolated-cmd`` (Python ``str.format``: literal braces are doubled, literal words
shell-quoted, interpolated paths captured verbatim by a quoted here-document); inputs are
``stage-output-selector`` references to the upstream stage's published output paths.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from nsbiflow.engine.contract import (
    INHERITED_VARIABLES,
    arguments,
    contract_environment,
    encode_parameter,
    step_variables,
)
from nsbiflow.engine.contract import output_location as contract_output_location
from nsbiflow.engine.plan import Plan, PlannedStep

ENVIRONMENTS = ("docker", "localproc")
HEREDOC_END = "NSBIFLOW_END_OF_VALUE"


def stage_name(step_id: str) -> str:
    """A yadage stage name for a step instance: ``square[0]`` -> ``square_0``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", step_id.replace("]", "")).strip("_")


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def format_literal(value: Any) -> Any:
    """A value yadage passes through ``str.format`` (packtivity formats every string leaf of the stage and
    init parameters with ``{workdir}``): every string in it with its braces doubled."""
    if isinstance(value, str):
        return _braces(value)
    if isinstance(value, list):
        return [format_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: format_literal(v) for k, v in value.items()}
    return value


def _key(prefix: str, name: str, index: int | None = None) -> str:
    base = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
    return base if index is None else f"{base}_{index}"


def split_image(image: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); a digest-pinned ``repo@sha256:x`` keeps the digest in the image."""
    if "@" in image:
        return image, "latest"
    repo, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return image, "latest"


def environment(step: PlannedStep, kind: str) -> dict[str, Any]:
    """The packtivity environment: a docker image with REANA resources, or a local process."""
    if kind == "localproc":
        return {"environment_type": "localproc-env"}
    image, tag = split_image(step.definition.image)
    resources: list[dict[str, Any]] = [{"kubernetes_memory_limit": step.resources.memory}]
    if step.timeout:
        resources.append({"kubernetes_job_timeout": int(step.timeout)})
    return {
        "environment_type": "docker-encapsulated",
        "image": image,
        "imagetag": tag,
        "resources": resources,
        "envscript": "",
        "env": {},
        "workdir": None,
        "par_mounts": [],
    }


def _shell(text: str) -> str:
    """A literal word of the command: shell-quoted, then braces doubled for ``str.format``."""
    return _braces(shlex.quote(text))


def _capture(key: str) -> str:
    """Assign the value yadage interpolates for ``key`` to a shell variable without the shell reading it.

    A quoted here-document takes the interpolated text verbatim (no expansion, no word splitting), so a
    file name such as ``in;touch X;#.txt`` stays a file name. Only a line equal to the delimiter could end
    it early; no path the engines produce has one.
    """
    return f"{key}=\"$(cat <<'{HEREDOC_END}'\n{{{key}}}\n{HEREDOC_END}\n)\""


_INHERIT = (
    "set -- && for v in " + " ".join((*INHERITED_VARIABLES, "LC_ALL", "LC_CTYPE")) + "; do "
    'if printenv "$v" >/dev/null; then set -- "$@" "$v=$(printenv "$v")"; fi; done'
)
"""Collects the allowlisted variables of the engine's environment as ``NAME=VALUE`` arguments for ``env -i``:
a stage sees those and the contract's variables, never the rest (S3 keys, tokens) of the engine's environment."""


def command(step: PlannedStep, inputs: dict[str, list[str]], outputs: dict[str, str]) -> str:
    """The stage's command template: the values yadage interpolates captured into shell variables, output
    folders, then the contract's environment and command line, every literal shell-quoted."""
    literal, _ = step_variables(step.definition.env)
    env = contract_environment(cpu_cores=step.resources.cpu_cores, gpu=step.resources.gpu, step_id=step.id,
                               run_id=f"yadage-{step.template}", declared=literal)  # fmt: skip
    keys = [key for group in inputs.values() for key in group] + list(outputs.values())
    captures = [_capture(key) for key in keys]
    mkdirs = []
    for name, key in outputs.items():
        folder = f'"${key}"' if step.definition.outputs[name].kind == "dir" else f'"$(dirname "${key}")"'
        mkdirs.append(f"mkdir -p {folder}")
    values = {name: encode_parameter(value) for name, value in step.parameters.items()}
    words = [_shell(word) for word in step.definition.command]
    for flag, name, value in arguments(values, inputs, outputs):
        if flag == "--param":
            words.append(f"{flag} {_shell(f'{name}={value}')}")
        else:  # value is the key of a captured shell variable
            words.append(f'{flag} {_shell(name + "=")}"${value}"')
    prefix = "env -i \"$@\" " + " ".join(_shell(f"{k}={v}") for k, v in env.items())
    return " && ".join([*captures, *mkdirs, _INHERIT, prefix + " " + " ".join(words)])


def output_location(step: PlannedStep, name: str) -> str:
    """Where a step writes an output inside its stage work directory (as the local executor lays it out)."""
    return contract_output_location(name, step.definition.outputs[name])


def stage(plan: Plan, step: PlannedStep, kind: str) -> dict[str, Any]:
    """One ``singlestep-stage`` for one planned step instance."""
    parameters: list[dict[str, Any]] = []
    inputs: dict[str, list[str]] = {}
    for name, sources in step.inputs.items():
        multiple = step.definition.inputs[name].multiple
        keys = []
        for index, source in enumerate(sources):
            key = _key("in", name, index if multiple else None)
            if source.step_id is not None:
                value: Any = {
                    "step": stage_name(source.step_id),
                    "output": source.output,
                    "expression_type": "stage-output-selector",
                }
            else:
                value = {
                    "step": "init",
                    "output": input_parameter(step, name),
                    "expression_type": "stage-output-selector",
                }
            parameters.append({"key": key, "value": value})
            keys.append(key)
        inputs[name] = keys
    outputs: dict[str, str] = {}
    for name in step.definition.outputs:
        key = _key("out", name)
        parameters.append({"key": key, "value": "{workdir}/" + output_location(step, name)})
        outputs[name] = key
    upstream = sorted({stage_name(d) for d in step.depends_on}) or ["init"]
    return {
        "name": stage_name(step.id),
        "dependencies": {"dependency_type": "jsonpath_ready", "expressions": upstream},
        "scheduler": {
            "scheduler_type": "singlestep-stage",
            "parameters": parameters,
            "step": {
                "process": {"process_type": "string-interpolated-cmd", "cmd": command(step, inputs, outputs)},
                "publisher": {"publisher_type": "frompar-pub", "outputmap": {n: k for n, k in outputs.items()}},
                "environment": environment(step, kind),
            },
        },
    }


def input_parameter(step: PlannedStep, input_name: str) -> str:
    """The init parameter that carries an external file input (``{path: ...}``) of a step."""
    return _key("input", f"{step.template}_{input_name}")


def workflow_spec(plan: Plan, *, environment_kind: str = "docker") -> dict[str, Any]:
    """The expanded yadage workflow (``{"stages": [...]}``) for a plan."""
    if environment_kind not in ENVIRONMENTS:
        raise ValueError(f"unknown yadage environment {environment_kind!r}: use one of {', '.join(ENVIRONMENTS)}")
    return {"stages": [stage(plan, step, environment_kind) for step in plan.steps.values()]}
