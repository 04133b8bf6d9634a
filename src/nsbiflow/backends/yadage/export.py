"""Write a yadage/REANA export folder: ``workflow/workflow.yml``, ``reana.yaml``, input files, init data.

Layout (what ``reana-client validate`` and yadage's engine expect)::

    DIR/workflow/workflow.yml   the fully expanded yadage spec (JSON, which is YAML)
    DIR/inputs/...              external file inputs of the workflow ({path: ...} bindings)
    DIR/input.yml               yadage init data (workflow parameters and input file paths)
    DIR/reana.yaml              REANA specification (type yadage), target 'reana' only
    DIR/outputs.json            workflow output -> path inside the yadage work directory
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from nsbiflow.backends.yadage.loops import refuse_loops
from nsbiflow.backends.yadage.stages import (
    format_literal,
    input_parameter,
    output_location,
    stage_name,
    workflow_spec,
)
from nsbiflow.engine.plan import Plan
from nsbiflow.errors import UsageError

TARGETS = ("yadage", "reana")


def _external_inputs(plan: Plan, out_dir: Path) -> dict[str, str]:
    """Copy external file inputs under ``inputs/``; returns init parameter -> path relative to ``out_dir``."""
    params: dict[str, str] = {}
    for step in plan.steps.values():
        for name, sources in step.inputs.items():
            for source in sources:
                if source.path is None:
                    continue
                relative = f"inputs/{step.template}/{name}/{source.path.name}"
                target = out_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.path.is_dir():
                    shutil.copytree(source.path, target, dirs_exist_ok=True)
                else:
                    shutil.copy2(source.path, target)
                params[input_parameter(step, name)] = relative
    return params


def output_paths(plan: Plan) -> dict[str, list[str]]:
    """Workflow output name -> paths of its files inside the yadage work directory (stage/out/...)."""
    paths: dict[str, list[str]] = {}
    for name, sources in plan.outputs.items():
        paths[name] = [
            f"{stage_name(str(s.step_id))}/{output_location(plan.steps[str(s.step_id)], str(s.output))}"
            for s in sources
        ]
    return paths


def reana_spec(plan: Plan, inputs: dict[str, str]) -> dict[str, Any]:
    """The ``reana.yaml`` document: a yadage workflow with its input files and outputs.

    Workflow parameters are baked into the stages (static fan-out), so the only REANA parameters are the
    input file paths the stages read from ``init``; the resolved values head the file as a comment.
    """
    outputs = [p for paths in output_paths(plan).values() for p in paths]
    spec: dict[str, Any] = {
        "version": "0.9.0",
        "inputs": {"directories": ["workflow"], **({"parameters": format_literal(inputs)} if inputs else {})},
        "workflow": {"type": "yadage", "file": "workflow/workflow.yml"},
        "outputs": {"files": outputs} if outputs else {},
    }
    if inputs:
        spec["inputs"]["files"] = sorted(inputs.values())
    return spec


def export_workflow(plan: Plan, out_dir: Path, *, target: str, environment: str) -> list[Path]:
    """Export ``plan`` to ``out_dir`` for yadage (``target='yadage'``) or REANA (``'reana'``, docker only).

    Parameters are baked into the stages (fan-out is static); re-export with ``--set`` to change them.
    Returns the files written.
    """
    if target not in TARGETS:
        raise UsageError(f"unknown export target {target!r}: use one of {', '.join(TARGETS)}")
    if target == "reana" and environment != "docker":
        raise UsageError("REANA runs docker-encapsulated steps: use --environment docker with --target reana")
    refuse_loops(plan, target)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = workflow_spec(plan, environment_kind=environment)
    inputs = _external_inputs(plan, out_dir)
    init: dict[str, Any] = format_literal({**plan.parameters, **inputs})
    written = []
    workflow_file = out_dir / "workflow" / "workflow.yml"
    workflow_file.parent.mkdir(parents=True, exist_ok=True)
    workflow_file.write_text(json.dumps(spec, indent=1) + "\n")
    written.append(workflow_file)
    init_file = out_dir / "input.yml"
    init_file.write_text(yaml.safe_dump(init, sort_keys=True))
    written.append(init_file)
    outputs_file = out_dir / "outputs.json"
    outputs_file.write_text(json.dumps(output_paths(plan), indent=2) + "\n")
    written.append(outputs_file)
    if target == "reana":
        reana_file = out_dir / "reana.yaml"
        header = (
            f"# {plan.workflow.metadata.name}: exported by nsbiflow with parameters baked into the stages:\n"
            f"# {json.dumps(plan.parameters, sort_keys=True)}\n"
            "# re-export with `nsbiflow compile --target reana --set NAME=VALUE` to change them.\n"
        )
        reana_file.write_text(header + yaml.safe_dump(reana_spec(plan, inputs), sort_keys=False))
        written.append(reana_file)
    return written
