"""Helpers of the Argo tests: compiling workflows, a GPU test workflow, rendering a compiled template."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nsbiflow.backends.argo import compile_to_dict
from nsbiflow.backends.local.task import encode_parameter
from nsbiflow.engine.plan import Plan, PlannedStep, load_plan

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"


def workflow_files() -> list[Path]:
    """Every workflow file under workflows/ (compiled goldens and the statistical models in models/ excluded)."""
    return sorted(p for p in WORKFLOWS.rglob("*.yaml") if ".argo." not in p.name and "models" not in p.parts)


def golden_path(workflow: Path) -> Path:
    """The checked-in compiled form of a workflow: ``<stem>.argo.yaml`` next to it."""
    return workflow.with_name(f"{workflow.stem}.argo.yaml")


def compile_file(path: Path, profile: Path | None = None) -> tuple[Plan, dict[str, Any]]:
    """Plan and compile one workflow file."""
    plan = load_plan(path)
    return plan, compile_to_dict(plan, profile_path=profile)


def templates(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Templates by name."""
    return {t["name"]: t for t in workflow["spec"]["templates"]}


def tasks(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """DAG tasks of the entrypoint by name."""
    main = templates(workflow)[workflow["spec"]["entrypoint"]]
    return {t["name"]: t for t in main["dag"]["tasks"]}


GPU_WORKFLOW = textwrap.dedent("""
    apiVersion: nsbiflow/v1
    kind: Workflow
    metadata: {name: gpu-fanout}
    parameters:
      chunks: {type: list, default: [signal-0, signal-1, background-0, background-1, background-2]}
    steps:
      events:
        run:
          image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
          command: [python, -m, nsbiflow.demo, numbers]
          parameters: {count: {type: int, default: 10}, seed: {type: int, default: 0}}
          outputs: {numbers: {kind: file, filename: numbers.txt}}
      train:
        foreach: ${{ params.chunks }}
        run:
          image: ghcr.io/nsbiflow/nsbiflow-cuda:0.1.0
          command: [nsbiflow-step, train-ratio]
          parameters: {chunk: {type: str}, members: {type: int, default: 4}}
          inputs: {events: {kind: file}}
          outputs: {ensemble: {kind: dir}}
          resources: {cpu: 4, memory: 16Gi, gpu: 1, node_pool: gpu}
          retries: {limit: 2, backoff_seconds: 5}
          timeout: 3600
        with: {chunk: "${{ item }}"}
        inputs: {events: events.numbers}
      gather:
        run:
          image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
          command: [python, -m, nsbiflow.demo, total]
          inputs: {partials: {kind: dir, multiple: true}}
          outputs: {total: {kind: file, filename: total.json}}
          resources: {cpu: 500m, memory: 512Mi}
        inputs: {partials: train.ensemble}
""")


@pytest.fixture
def gpu_workflow(tmp_path: Path) -> Path:
    """A workflow with a GPU step fanned out over 5 ensemble chunks."""
    path = tmp_path / "gpu-fanout.yaml"
    path.write_text(GPU_WORKFLOW)
    return path


def render_instance(template: dict[str, Any], step: PlannedStep, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and plain environment a compiled template gives one plan instance (paths under workdir)."""
    values = {name: encode_parameter(value) for name, value in step.parameters.items()}
    values["nsbiflow-step"] = step.id

    def sub(text: str) -> str:
        text = re.sub(r"\{\{inputs\.parameters\.([A-Za-z0-9_-]+)\}\}", lambda mt: values[mt.group(1)], text)
        text = text.replace("{{workflow.name}}", "wf-test")
        return text.replace("=/work/", f"={workdir}/")

    container = template["container"]
    argv = [sub(a) for a in container["command"] + container["args"]]
    env = {e["name"]: sub(e["value"]) for e in container["env"] if "value" in e}
    return argv, env
