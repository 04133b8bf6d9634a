"""Planner: fan-out expansion, references, order, and step keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nsbiflow.engine.expressions import ExpressionError, evaluate, render
from nsbiflow.engine.keys import step_key
from nsbiflow.engine.plan import load_plan


def test_demo_fans_out_and_orders(demo_workflow: Path) -> None:
    plan = load_plan(demo_workflow)
    assert plan.templates["square"] == [f"square[{i}]" for i in range(4)]
    assert plan.order.index("numbers") < plan.order.index("square[0]") < plan.order.index("total")
    total = plan.steps["total"]
    assert [s.step_id for s in total.inputs["partials"]] == plan.templates["square"]
    assert plan.steps["square[2]"].parameters == {"chunk": 2, "chunks": 4, "power": 2}


def test_set_changes_fan_out_width(demo_workflow: Path) -> None:
    plan = load_plan(demo_workflow, overrides={"chunks": "7"})
    assert len(plan.templates["square"]) == 7


def test_matrix_and_instance_references(tmp_path: Path, demo_workflow: Path) -> None:
    data = yaml.safe_load(demo_workflow.read_text())
    data["steps"]["square"]["foreach"] = {"matrix": {"chunk": [0, 1], "flavour": ["a", "b"]}}
    data["steps"]["square"]["with"]["chunk"] = "${{ item.chunk }}"
    data["steps"]["pick"] = {"run": data["steps"]["total"]["run"], "inputs": {"partials": ["square[1-b].partial"]}}
    path = tmp_path / "wf" / "matrix.yaml"
    path.write_text(yaml.safe_dump(data))
    plan = load_plan(path)
    assert plan.templates["square"] == ["square[0-a]", "square[0-b]", "square[1-a]", "square[1-b]"]
    assert [s.step_id for s in plan.steps["pick"].inputs["partials"]] == ["square[1-b]"]
    assert plan.steps["square[1-a]"].parameters["chunk"] == 1


def _key(plan_path: Path, step: str, digests: dict[str, list[str]], overrides: dict[str, str] | None = None) -> str:
    plan = load_plan(plan_path, overrides=overrides)
    return step_key(plan.steps[step], digests)


def test_keys_stable_under_yaml_key_order(tmp_path: Path, demo_workflow: Path) -> None:
    data = yaml.safe_load(demo_workflow.read_text())

    def reverse(value: object) -> object:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        return value

    shuffled = tmp_path / "wf" / "shuffled.yaml"
    shuffled.write_text(yaml.safe_dump(reverse(data), sort_keys=False))
    assert shuffled.read_text() != demo_workflow.read_text()
    digests = {"numbers": ["sha256:" + "1" * 64]}
    for step in ("square[0]", "square[3]"):
        assert _key(demo_workflow, step, digests) == _key(shuffled, step, digests)
    assert load_plan(demo_workflow).digest == load_plan(shuffled).digest


def test_keys_change_with_parameters_and_inputs(demo_workflow: Path) -> None:
    digests = {"numbers": ["sha256:" + "1" * 64]}
    base = _key(demo_workflow, "square[0]", digests)
    assert _key(demo_workflow, "square[0]", digests, {"power": "3"}) != base
    assert _key(demo_workflow, "square[0]", {"numbers": ["sha256:" + "2" * 64]}) != base
    assert _key(demo_workflow, "square[1]", digests) != base
    # a parameter the step does not use leaves its key alone
    assert _key(demo_workflow, "square[0]", digests, {"seed": "9"}) == base


def test_keys_ignore_descriptions_and_resources(tmp_path: Path, demo_workflow: Path) -> None:
    data = yaml.safe_load(demo_workflow.read_text())
    data["steps"]["square"]["run"]["description"] = "changed words"
    data["steps"]["square"]["resources"] = {"cpu": 2, "memory": "2Gi"}
    path = tmp_path / "wf" / "described.yaml"
    path.write_text(yaml.safe_dump(data))
    digests = {"numbers": ["sha256:" + "1" * 64]}
    assert _key(path, "square[0]", digests) == _key(demo_workflow, "square[0]", digests)
    data["steps"]["square"]["run"]["image"] = "ghcr.io/nsbiflow/nsbiflow-cpu:0.2.0"
    path.write_text(yaml.safe_dump(data))
    assert _key(path, "square[0]", digests) != _key(demo_workflow, "square[0]", digests)


def test_downstream_of(demo_workflow: Path) -> None:
    plan = load_plan(demo_workflow)
    assert plan.downstream_of({"square[1]"}) == {"square[1]", "total"}
    assert plan.downstream_of({"numbers"}) == set(plan.steps)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("params.n * 2 + 1", 7),
        ("item.a", "x"),
        ("params.l[1:]", [2, 3]),
        ("range(params.n)", [0, 1, 2]),
        ("'big' if params.n > 2 else 'small'", "big"),
        ("len(params.l)", 3),
    ],
)
def test_expressions(expression: str, expected: object) -> None:
    scope = {"params": {"n": 3, "l": [1, 2, 3]}, "item": {"a": "x"}}
    assert evaluate(expression, scope) == expected


@pytest.mark.parametrize("expression", ["__import__('os')", "params.__class__", "(lambda: 1)()", "open('x')"])
def test_expressions_refuse_code(expression: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(expression, {"params": {}})


def test_render_keeps_types_and_formats_text() -> None:
    scope = {"params": {"n": 3, "l": [1, 2]}}
    assert render("${{ params.n }}", scope) == 3
    assert render("run-${{ params.n }}", scope) == "run-3"
    assert render({"a": ["${{ params.l }}"]}, scope) == {"a": [[1, 2]]}


def test_matrix_expansion_ignores_axis_order(tmp_path: Path, demo_workflow: Path) -> None:
    data = yaml.safe_load(demo_workflow.read_text())
    data["steps"]["square"]["with"]["chunk"] = "${{ index }}"
    keys = []
    for axes in ({"b": [0, 1], "a": ["x", "y"]}, {"a": ["x", "y"], "b": [0, 1]}):
        data["steps"]["square"]["foreach"] = {"matrix": axes}
        path = tmp_path / "wf" / "m.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        plan = load_plan(path)
        assert plan.templates["square"] == ["square[x-0]", "square[x-1]", "square[y-0]", "square[y-1]"]
        keys.append([step_key(plan.steps[i], {"numbers": ["sha256:" + "1" * 64]}) for i in plan.templates["square"]])
    assert keys[0] == keys[1]
