"""Argo references resolve: every ``{{...}}`` in each compiled golden names an existing input, parameter, task or
output, and every dependency names an existing task (what Argo's linter checks on a cluster)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.argo.conftest import REPO, golden_path, workflow_files
from tests.argo.references import check_workflow


@pytest.mark.parametrize("workflow", workflow_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_reference_of_the_golden_resolves(workflow: Path) -> None:
    document = yaml.safe_load(golden_path(workflow).read_text())
    assert check_workflow(document) == []


def _demo() -> dict:
    return yaml.safe_load(golden_path(REPO / "workflows" / "examples" / "demo-fanout.yaml").read_text())


def _template(document: dict, name: str) -> dict:
    return next(t for t in document["spec"]["templates"] if t["name"] == name)


def test_the_checker_finds_a_misspelt_input_parameter() -> None:
    document = _demo()
    square = _template(document, "square")
    square["container"]["args"] = [a.replace("inputs.parameters.power", "inputs.parameters.powr")
                                   for a in square["container"]["args"]]  # fmt: skip
    problems = check_workflow(document)
    assert any("{{inputs.parameters.powr}}" in p and "no inputs.parameters 'powr'" in p for p in problems), problems


def test_the_checker_finds_a_dangling_dependency_and_an_unknown_item_key() -> None:
    document = copy.deepcopy(_demo())
    tasks = _template(document, "main")["dag"]["tasks"]
    total = next(t for t in tasks if t["name"] == "total")
    total["dependencies"] = ["squares"]
    fanned = next(t for t in tasks if t.get("withItems"))
    fanned["arguments"]["parameters"][0]["value"] = "{{item.nope}}"
    problems = check_workflow(document)
    assert any("dependency 'squares'" in p for p in problems), problems
    assert any("no key 'nope'" in p for p in problems), problems


def test_the_checker_finds_a_template_reference_outside_its_scope() -> None:
    document = _demo()
    square = _template(document, "square")
    square["container"]["env"].append({"name": "X", "value": "{{item.step}}"})
    assert any("{{item.step}}" in p for p in check_workflow(document))
