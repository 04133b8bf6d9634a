"""The yadage/REANA export: the expanded spec, a real run through yadage's engine, and ``reana-client validate``.

yadage and reana-client live in their own virtualenvs (``scripts/setup-yadage-env.sh``): yadage's schemas pin
``jsonschema<=4.9.1``, which the main environment cannot have. Tests that need them skip, saying so, when the
virtualenv is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from nsbiflow.backends.yadage import export_workflow
from nsbiflow.engine.plan import load_plan
from nsbiflow.store import open_store
from tests.conftest import BIN, REPO, run_cli

YADAGE_PYTHON = REPO / ".venv-yadage" / "bin" / "python"
REANA_CLIENT = REPO / ".venv-reana" / "bin" / "reana-client"
needs_yadage = pytest.mark.skipif(
    not YADAGE_PYTHON.exists(), reason="yadage virtualenv missing: run scripts/setup-yadage-env.sh yadage"
)
needs_reana = pytest.mark.skipif(
    not REANA_CLIENT.exists(), reason="reana-client virtualenv missing: run scripts/setup-yadage-env.sh reana"
)


def test_expanded_spec_has_one_stage_per_instance_with_references(demo_workflow: Path, tmp_path: Path) -> None:
    plan = load_plan(demo_workflow)
    written = export_workflow(plan, tmp_path / "out", target="reana", environment="docker")
    assert {p.name for p in written} == {"workflow.yml", "input.yml", "outputs.json", "reana.yaml"}
    spec = json.loads((tmp_path / "out" / "workflow" / "workflow.yml").read_text())
    names = [s["name"] for s in spec["stages"]]
    assert names == ["numbers", "square_0", "square_1", "square_2", "square_3", "total"]
    total = spec["stages"][-1]
    assert total["dependencies"] == {
        "dependency_type": "jsonpath_ready",
        "expressions": ["square_0", "square_1", "square_2", "square_3"],
    }
    params = {p["key"]: p["value"] for p in total["scheduler"]["parameters"]}
    assert params["in_partials_2"] == {
        "step": "square_2",
        "output": "partial",
        "expression_type": "stage-output-selector",
    }
    assert params["out_total"] == "{workdir}/out/total/total.json"
    step = total["scheduler"]["step"]
    assert step["publisher"] == {"publisher_type": "frompar-pub", "outputmap": {"total": "out_total"}}
    env = step["environment"]
    assert env["environment_type"] == "docker-encapsulated"
    assert (env["image"], env["imagetag"]) == ("ghcr.io/nsbiflow/nsbiflow-cpu", "0.1.0")
    assert env["resources"] == [{"kubernetes_memory_limit": "1Gi"}]
    assert "--in partials=\"$in_partials_0\" --in partials=\"$in_partials_1\"" in step["process"]["cmd"]
    reana = yaml.safe_load((tmp_path / "out" / "reana.yaml").read_text())
    assert reana["workflow"] == {"type": "yadage", "file": "workflow/workflow.yml"}
    assert reana["outputs"]["files"] == ["total/out/total/total.json"]


def test_cli_refuses_reana_with_local_processes(demo_workflow: Path, tmp_path: Path) -> None:
    result = run_cli("compile", demo_workflow, "--target", "reana", "--environment", "localproc", "-o", tmp_path / "x")
    assert result.returncode == 2
    assert (
        result.stderr == "error: REANA runs docker-encapsulated steps: use --environment docker with --target reana\n"
    )


@needs_yadage
def test_yadage_engine_run_gives_the_native_digests(demo_workflow: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    compiled = run_cli(
        "compile", demo_workflow, "--target", "yadage", "--environment", "localproc", "-o", export, "--set", "count=300"
    )
    assert compiled.returncode == 0, compiled.stderr
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [str(YADAGE_PYTHON), str(REPO / "scripts" / "run_yadage.py"), str(export), str(tmp_path / "yw")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    native = run_cli("run", demo_workflow, "--store", tmp_path / "store", "--set", "count=300", "--json")
    assert native.returncode == 0, native.stderr
    manifest = open_store(tmp_path / "store").read_manifest(
        json.loads(native.stdout.strip().splitlines()[-1])["run_id"]
    )
    # hash what yadage wrote exactly as the local executor hashes outputs (files and directory trees)
    scratch = open_store(tmp_path / "scratch")
    plan = load_plan(demo_workflow, overrides={"count": "300"})
    from nsbiflow.backends.yadage.stages import output_location, stage_name

    compared = 0
    for step_id, step in plan.steps.items():
        for output in step.definition.outputs:
            produced = tmp_path / "yw" / stage_name(step_id) / output_location(step, output)
            assert scratch.put(produced).digest == manifest.steps[step_id].outputs[output].digest, (step_id, output)
            compared += 1
    assert compared == 6
    outputs = json.loads((export / "outputs.json").read_text())
    result = tmp_path / "yw" / outputs["total"][0]
    assert scratch.put(result).digest == manifest.outputs["total"].digest  # type: ignore[union-attr]


@needs_reana
def test_reana_client_validates_the_export(demo_workflow: Path, tmp_path: Path) -> None:
    compiled = run_cli("compile", demo_workflow, "--target", "reana", "-o", tmp_path / "reana")
    assert compiled.returncode == 0, compiled.stderr
    proc = subprocess.run(
        [str(REANA_CLIENT), "validate", "-f", "reana.yaml"],
        cwd=tmp_path / "reana",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid REANA specification file" in proc.stdout
    assert "WARNING" not in proc.stdout and "ERROR" not in proc.stdout
