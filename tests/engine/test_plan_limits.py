"""Plan-time bounds and names: fan-out width, colliding fan-out keys, ``uses:`` confined to the catalog."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from nsbiflow.engine.plan import load_plan
from nsbiflow.errors import SpecError
from nsbiflow.paths import canonical_name
from tests.conftest import run_cli


def variant(demo_workflow: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(demo_workflow.read_text())
    edit(data)
    path = demo_workflow.with_name(name)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_problem(path: Path, **kwargs) -> str:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_plan(path, **kwargs)
    assert time.monotonic() - started < 5
    assert len(info.value.problems) == 1, info.value
    return str(info.value)


@pytest.mark.parametrize(
    "foreach",
    [
        {"range": 1_000_000_000},
        {"range": [0, 10**18, 1]},
        {"matrix": {"a": list(range(1000)), "b": list(range(1000)), "c": list(range(1000))}},
        "${{ range(200000) }}",
    ],
    ids=["range", "range-bounds", "matrix", "expression"],
)
def test_huge_fan_out_is_one_line(demo_workflow: Path, foreach: object) -> None:
    def edit(data: dict) -> None:
        data["steps"]["square"]["foreach"] = foreach
        data["steps"]["square"]["with"]["chunk"] = "${{ index }}"

    message = one_problem(variant(demo_workflow, "huge.yaml", edit))
    assert "foreach" in message
    assert "NSBIFLOW_MAX_FANOUT" in message or "at most" in message


def test_fan_out_limit_is_configurable(demo_workflow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSBIFLOW_MAX_FANOUT", "5")
    message = one_problem(demo_workflow, overrides={"chunks": "7"})
    assert "7 instances" in message and "NSBIFLOW_MAX_FANOUT" in message
    assert len(load_plan(demo_workflow, overrides={"chunks": "5"}).templates["square"]) == 5
    monkeypatch.setenv("NSBIFLOW_MAX_FANOUT", "lots")
    assert "NSBIFLOW_MAX_FANOUT" in one_problem(demo_workflow)


KEYS = ["a/b", "a_b", "a b", "a:b", "A_B"]


def punctuated(demo_workflow: Path) -> Path:
    def edit(data: dict) -> None:
        data["steps"]["square"]["foreach"] = KEYS
        data["steps"]["square"]["with"]["chunk"] = "${{ index }}"
        data["steps"]["square"]["with"]["chunks"] = len(KEYS)

    return variant(demo_workflow, "punct.yaml", edit)


def test_keys_differing_in_punctuation_get_unique_names(demo_workflow: Path) -> None:
    plan = load_plan(punctuated(demo_workflow))
    ids = plan.templates["square"]
    assert len(ids) == len(KEYS)
    assert len({canonical_name(i) for i in plan.steps}) == len(plan.steps)


def test_keys_differing_in_punctuation_run_with_four_jobs(demo_workflow: Path, tmp_path: Path) -> None:
    result = run_cli("run", punctuated(demo_workflow), "--store", tmp_path / "store", "--jobs", "4", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {s["status"] for s in summary["steps"]} == {"succeeded"}


def test_names_colliding_across_steps_are_refused(demo_workflow: Path) -> None:
    def edit(data: dict) -> None:
        square = data["steps"].pop("square")
        square["foreach"] = ["b_c"]
        square["with"]["chunk"] = "${{ index }}"
        data["steps"]["a"] = square
        other = json.loads(json.dumps(square))
        other["foreach"] = ["c"]
        data["steps"]["a_b"] = other
        data["steps"]["total"]["inputs"]["partials"] = ["a.partial", "a_b.partial"]

    message = one_problem(variant(demo_workflow, "cross.yaml", edit))
    assert "a[b_c]" in message and "a_b[c]" in message


@pytest.mark.parametrize("uses", ["../../x", "/etc", "..", "a/b", "x\\y"])
def test_uses_must_name_a_catalog_entry(demo_workflow: Path, tmp_path: Path, uses: str) -> None:
    outside = tmp_path / "x"
    outside.mkdir(exist_ok=True)
    (outside / "step.yaml").write_text("apiVersion: nsbiflow/v1\nkind: Step\nname: x\nimage: i\ncommand: [echo]\n")

    def edit(data: dict) -> None:
        data["steps"]["numbers"] = {"uses": uses}

    path = variant(demo_workflow, "uses.yaml", edit)
    (path.parent / "steps").mkdir(exist_ok=True)
    problems = []
    with pytest.raises(SpecError) as info:
        load_plan(path)
    problems = [p.message for p in info.value.problems]
    assert any("not a plain name" in p for p in problems), problems


def test_unclosed_expression_in_a_binding_is_located(demo_workflow: Path) -> None:
    def edit(data: dict) -> None:
        data["steps"]["numbers"]["with"]["count"] = "${{ params.count "

    message = one_problem(variant(demo_workflow, "unclosed.yaml", edit))
    assert "unclosed" in message


def test_punctuated_keys_give_unique_yadage_stage_names(demo_workflow: Path) -> None:
    from nsbiflow.backends.yadage.stages import stage_name

    plan = load_plan(punctuated(demo_workflow))
    names = [stage_name(step_id) for step_id in plan.steps]
    assert len(set(names)) == len(names), names


def test_punctuated_keys_export_to_distinct_yadage_stages(demo_workflow: Path, tmp_path: Path) -> None:
    from nsbiflow.backends.yadage import export_workflow

    plan = load_plan(punctuated(demo_workflow))
    export_workflow(plan, tmp_path / "out", target="reana", environment="docker")
    spec = json.loads((tmp_path / "out" / "workflow" / "workflow.yml").read_text())
    names = [s["name"] for s in spec["stages"]]
    assert len(names) == len(set(names)) == len(plan.steps)
