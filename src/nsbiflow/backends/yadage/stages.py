"""The yadage stage spec, in the fully expanded form yadage 0.21 accepts with any jsonschema.

Fan-out is expanded statically: one ``singlestep-stage`` per planned step instance, so the export is exact
(the same commands, parameters and wiring as the local run). Each stage runs the step contract command
through ``string-interpolated-cmd`` (Python ``str.format``: literal braces are doubled); inputs are
``stage-output-selector`` references to the upstream stage's published output paths.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from nsbiflow.backends.local.task import encode_parameter
from nsbiflow.engine.plan import Plan, PlannedStep

ENVIRONMENTS = ("docker", "localproc")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NSBIFLOW_NUM_THREADS")


def stage_name(step_id: str) -> str:
    """A yadage stage name for a step instance: ``square[0]`` -> ``square_0``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", step_id.replace("]", "")).strip("_")


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


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


def command(step: PlannedStep, inputs: dict[str, list[str]], outputs: dict[str, str]) -> str:
    """The stage's command template: thread caps, output folders, then the step contract command line."""
    threads = str(max(1, int(step.resources.cpu_cores)))
    env = [f"{var}={threads}" for var in THREAD_VARIABLES] + [f"NSBIFLOW_STEP={shlex.quote(step.id)}"]
    if step.resources.gpu == 0:
        env.append("CUDA_VISIBLE_DEVICES=")
    mkdirs = []
    for name, key in outputs.items():
        folder = f"{{{key}}}" if step.definition.outputs[name].kind == "dir" else f'"$(dirname {{{key}}})"'
        mkdirs.append(f"mkdir -p {folder}")
    parts = [_braces(shlex.join(step.definition.command))]
    for name, value in step.parameters.items():
        parts.append("--param " + _braces(shlex.quote(f"{name}={encode_parameter(value)}")))
    for name, keys in inputs.items():
        parts += [f"--in {_braces(shlex.quote(name + '='))}{{{key}}}" for key in keys]
    for name, key in outputs.items():
        parts.append(f"--out {_braces(shlex.quote(name + '='))}{{{key}}}")
    return " && ".join([*mkdirs, "env " + " ".join(env) + " " + " ".join(parts)])


def output_location(step: PlannedStep, name: str) -> str:
    """Where a step writes an output inside its stage work directory (as the local executor lays it out)."""
    spec = step.definition.outputs[name]
    return f"out/{name}" if spec.kind == "dir" else f"out/{name}/{spec.filename or name}"


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
