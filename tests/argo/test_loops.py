"""The Argo compile of a loop: a recursive DAG template, valid against the official schema, hera's strict schema
and the reference checker; its shell prelude and its ``until`` script are run here, not just looked at."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nsbiflow.backends.argo.loops import PRELUDE, UNTIL_SOURCE
from nsbiflow.backends.argo.validate import official_errors, official_schema_path, strict_errors
from tests.argo.conftest import REPO, compile_file
from tests.argo.references import check_workflow

EXAMPLE = REPO / "workflows" / "examples" / "active-scan.yaml"
SHARED_SCHEMA = Path("/work/shared/schemas/argo-workflows-v4.1-schema.json")


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    return compile_file(EXAMPLE)[1]


def by_name(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in workflow["spec"]["templates"]}


def test_the_loop_compile_validates(compiled: dict[str, Any]) -> None:
    assert strict_errors(compiled) == []
    assert check_workflow(compiled) == []
    path = official_schema_path() if official_schema_path().exists() else SHARED_SCHEMA
    if not path.exists():
        pytest.skip("official Argo schema not found")
    assert official_errors(compiled, path) == []


def test_an_iteration_calls_itself_while_until_is_false(compiled: dict[str, Any]) -> None:
    templates = by_name(compiled)
    iteration = templates["scan-iteration"]
    tasks = {t["name"]: t for t in iteration["dag"]["tasks"]}
    assert set(tasks) == {"choose", "point", "update", "until", "next", "publish"}
    assert tasks["next"]["template"] == "scan-iteration"  # the recursion
    assert (
        tasks["next"]["when"]
        == "{{tasks.until.outputs.parameters.stop}} == false && {{inputs.parameters.iteration}} < 19"
    )
    assert "== true" in tasks["publish"]["when"] and ">= 19" in tasks["publish"]["when"]
    assert tasks["next"]["arguments"]["parameters"][0]["value"] == "{{=asInt(inputs.parameters.iteration) + 1}}"
    main = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert main["scan"]["template"] == "scan-iteration" and main["report"]["dependencies"] == ["grid", "scan"]


def test_the_fan_out_reads_the_iteration_output(compiled: dict[str, Any]) -> None:
    templates = by_name(compiled)
    tasks = {t["name"]: t for t in templates["scan-iteration"]["dag"]["tasks"]}
    assert tasks["point"]["withParam"] == "{{=jsonpath(tasks.choose.outputs.parameters.points, '$.points')}}"
    assert tasks["point"]["dependencies"] == ["choose"]
    exported = templates["scan-choose"]["outputs"]["parameters"]
    assert exported[0] == {"name": "points", "valueFrom": {"path": "/work/out/points/points.json"}}
    values = {p["name"]: p["value"] for p in tasks["point"]["arguments"]["parameters"]}
    assert values["mass"] == "{{item.mass}}" and values["mu"] == "{{item.mu}}"
    # the previous iteration's history is optional (absent in iteration 0), keyed by the previous iteration
    choose_inputs = templates["scan-choose"]["inputs"]["artifacts"]
    assert choose_inputs == [{"name": "history-0", "optional": True, "path": "/work/in/history/0/history.json"}]
    key = tasks["choose"]["arguments"]["artifacts"][0]["s3"]["key"]
    assert key == "nsbiflow/{{workflow.name}}/scan/i{{inputs.parameters.previous}}/update/history/history.json"


def test_the_published_outputs_are_what_the_rest_of_the_workflow_reads(compiled: dict[str, Any]) -> None:
    templates = by_name(compiled)
    published = {a["name"]: a["s3"]["key"] for a in templates["scan-publish"]["outputs"]["artifacts"]}
    main = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    read = {a["s3"]["key"] for a in main["report"]["arguments"]["artifacts"]}
    assert published["history"] in read


def test_the_prelude_drops_absent_inputs_and_expands_a_gathered_fan_out(tmp_path: Path) -> None:
    for pod in ("scan-point-2", "scan-point-1"):
        (tmp_path / "results" / pod).mkdir(parents=True)
        (tmp_path / "results" / pod / "result.json").write_text("{}")
    argv = [
        "echo",
        "--param",
        "x=1",
        "--in",
        f"history={tmp_path}/absent.json",
        "--in",
        f"results={tmp_path}/results/*",
        "--out",
        "state=out.json",
    ]
    result = subprocess.run(["sh", "-c", PRELUDE, "sh", *argv], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [
        "--param",
        "x=1",
        "--in",
        f"results={tmp_path}/results/scan-point-1/result.json",
        "--in",
        f"results={tmp_path}/results/scan-point-2/result.json",
        "--out",
        "state=out.json",
    ]


@pytest.mark.parametrize(("count", "expected"), [(2, "false"), (3, "true")])
def test_the_until_script_evaluates_the_loop_expression(tmp_path: Path, count: int, expected: str) -> None:
    status = tmp_path / "in" / "update" / "status" / "status.json"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"count": count}))
    source = UNTIL_SOURCE.replace("/work/in", str(tmp_path / "in"))
    expression = "loop.current.update.status.count >= params.target"
    result = subprocess.run(
        [sys.executable, "-c", source, json.dumps({"target": 3}), "2", expression],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == expected


def _render_body(compiled: dict[str, Any], task: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """A body step's command line and plain environment for iteration 0, paths under ``workdir``."""
    templates = by_name(compiled)
    dag = {t["name"]: t for t in templates["scan-iteration"]["dag"]["tasks"]}[task]
    values = {p["name"]: str(p["value"]) for p in dag["arguments"]["parameters"]}
    values.update({"iteration": "0", "previous": "none"})

    def sub(text: str) -> str:
        text = re.sub(r"\{\{inputs\.parameters\.([A-Za-z0-9_-]+)\}\}", lambda mt: values[mt.group(1)], text)
        return text.replace("/work/", f"{workdir}/")

    container = templates[dag["template"]]["container"]
    argv = [sub(a) for a in container["command"] + container["args"]]
    env = {e["name"]: sub(e["value"]) for e in container["env"] if "value" in e}
    return argv, env


def test_a_loop_body_runs_through_the_caching_wrapper(compiled: dict[str, Any], tmp_path: Path) -> None:
    """The compiled body step is run as its pod would run it, twice: the second pod is a cache hit."""
    template = by_name(compiled)["scan-choose"]
    assert {p["name"] for p in template["outputs"]["parameters"]} == {"points", "step-key", "cached"}
    store = tmp_path / "store"
    outputs = []
    for pod in ("pod1", "pod2"):
        workdir = tmp_path / pod
        argv, env = _render_body(compiled, "choose", workdir)
        assert argv[4:7] == ["nsbiflow", "pod-step", "--"]  # sh -c PRELUDE sh nsbiflow pod-step -- ...
        env.update(
            PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
            NSBIFLOW_STORE=str(store),
            NSBIFLOW_STATE_DIR=str(workdir / ".nsbiflow"),
        )
        workdir.mkdir()
        subprocess.run(argv, env=env, cwd=workdir, check=True, capture_output=True, text=True)
        outputs.append((workdir / "out" / "points" / "points.json").read_bytes())
        assert (workdir / ".nsbiflow" / "cached").read_text() == ("false" if pod == "pod1" else "true")
    assert outputs[0] == outputs[1] and json.loads(outputs[0])["points"]
