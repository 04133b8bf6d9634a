"""``keys_by``: a step is passed (and keyed on) only the keys of a mapping parameter that its other parameters
select; the declaration is checked when the definition loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nsbiflow.engine.keys import step_key
from nsbiflow.engine.plan import load_plan
from nsbiflow.errors import NsbiflowError
from nsbiflow.spec.models import StepDefinition

WORKFLOW = """\
apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: narrow}
parameters:
  config: {type: dict, default: {}}
steps:
  make:
    foreach: [a, b, c]
    run:
      image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
      command: [python, -c, pass]
      parameters:
        kind: {type: str}
        shifts: {type: dict, default: {}}
        config:
          type: dict
          default: {}
          keys_by:
            kind: {a: [size, shared], b: [colour, shared]}
            shifts: {tilt: [tilt_size]}
      outputs:
        out: {kind: file}
    with:
      kind: ${{ item }}
      shifts: "${{ {'tilt': 1.0} if item == 'b' else {} }}"
      config: ${{ params.config }}
"""


def _planned(tmp_path: Path, config: str, text: str = WORKFLOW) -> dict[str, dict[str, object]]:
    path = tmp_path / "narrow.yaml"
    path.write_text(text)
    plan = load_plan(path, overrides={"config": config})
    return {s.id: s.parameters["config"] for s in plan.steps.values()}


def test_each_instance_gets_the_keys_it_selects(tmp_path: Path) -> None:
    planned = _planned(tmp_path, '{"size": 2, "colour": "red", "shared": 1, "tilt_size": 0.1, "other": 5}')
    assert planned["make[a]"] == {"size": 2, "shared": 1, "other": 5}  # 'other' is in no table: always passed
    assert planned["make[b]"] == {"colour": "red", "shared": 1, "tilt_size": 0.1, "other": 5}
    # 'c' is in no table: the whole mapping
    assert planned["make[c]"] == {"size": 2, "colour": "red", "shared": 1, "tilt_size": 0.1, "other": 5}


def test_a_key_that_one_instance_needs_changes_only_its_cache_key(tmp_path: Path) -> None:
    path = tmp_path / "narrow.yaml"
    path.write_text(WORKFLOW)
    keys = [
        {s.id: step_key(s, {}) for s in load_plan(path, overrides={"config": c}).steps.values()}
        for c in ('{"size": 2}', '{"size": 3}')
    ]
    assert [i for i in keys[0] if keys[0][i] != keys[1][i]] == ["make[a]", "make[c]"]


def _definition(parameters: str) -> dict[str, object]:
    import yaml

    return {"name": "x", "image": "i", "command": ["c"], "parameters": yaml.safe_load(parameters)}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ("{kind: {type: str, keys_by: {other: {a: [x]}}}, other: {type: str}}", "keys_by applies to .* type dict"),
        ("{config: {type: dict, keys_by: {kind: {a: [x]}}}}", "keys_by names 'kind', not another parameter"),
        ("{config: {type: dict, keys_by: {config: {a: [x]}}}}", "keys_by names 'config', not another parameter"),
    ],
)
def test_bad_declarations_are_refused_naming_the_parameter(parameters: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StepDefinition.model_validate(_definition(parameters))


def test_a_workflow_parameter_cannot_declare_keys_by(tmp_path: Path) -> None:
    text = WORKFLOW.replace("config: {type: dict, default: {}}", "config: {type: dict, default: {}, keys_by: {x: {}}}")
    with pytest.raises(NsbiflowError, match="keys_by applies to step parameters"):
        _planned(tmp_path, "{}", text)
