"""The step catalog and the stage programs agree, and the stage CLI stays cheap to import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml

from nsbiflow.spec.models import StepDefinition
from nsbiflow.stepcli.main import registered_configs
from nsbiflow.stepcli.parameters import parameter_specs, regenerate, stage_of, with_parameters

REPO = Path(__file__).resolve().parents[2]
REGEN = os.environ.get("NSBIFLOW_REGEN_STEPS") == "1"
STEP_FILES = sorted((REPO / "steps").glob("*/step.yaml"))
STAGES = registered_configs()


def test_every_stage_has_a_step_definition_and_back() -> None:
    stages = {stage_of(p.read_text()): p.parent.name for p in STEP_FILES}
    assert set(STAGES) <= set(stages), f"stages without steps/<name>/step.yaml: {sorted(set(STAGES) - set(stages))}"
    unregistered = sorted(s for s in stages if s is not None and s not in STAGES)
    assert not unregistered, f"step.yaml files run unknown stages {unregistered}: register them with @stage(...)"


@pytest.mark.parametrize("path", STEP_FILES, ids=lambda p: p.parent.name)
def test_step_parameters_are_generated_from_the_stage_config(path: Path) -> None:
    if REGEN and os.environ.get("CI"):
        pytest.fail("NSBIFLOW_REGEN_STEPS is set in CI: step.yaml files are regenerated locally and committed")
    name = stage_of(path.read_text())
    if name is None:
        pytest.skip(f"{path.parent.name} does not run an nsbiflow-step stage")
    assert path.parent.name == name, f"{path}: runs stage {name!r} but lives in steps/{path.parent.name}/"
    model = STAGES[name]
    if REGEN:
        regenerate(path, model)
    text = path.read_text()
    expected = parameter_specs(model) if model is not None else {}
    definition = StepDefinition.model_validate(yaml.safe_load(text))
    assert definition.parameters == expected, (
        f"steps/{name}/step.yaml parameters drifted from the stage's config: regenerate with "
        "NSBIFLOW_REGEN_STEPS=1 .venv/bin/python -m pytest tests/physics/test_step_definitions.py"
    )
    assert with_parameters(text, expected) == text, f"steps/{name}/step.yaml: parameters block not as generated"


def test_regeneration_round_trips_and_inserts(tmp_path: Path) -> None:
    from pydantic import BaseModel, Field

    class Config(BaseModel):
        n: int = Field(3, description="a count")
        mode: Literal["a", "b"] = "a"
        values: list[float] = Field(default_factory=lambda: [1.0])
        at: dict[str, float] = Field(default_factory=dict)
        needed: str = Field(description="no default: the workflow binds it")
        maybe: float | None = None

    path = tmp_path / "step.yaml"
    path.write_text("apiVersion: nsbiflow/v1\nkind: Step\nname: x\nimage: i\ncommand: [nsbiflow-step, x]\n"
                    "outputs:\n  o: {kind: file}\n")  # fmt: skip
    assert regenerate(path, Config)
    definition = StepDefinition.model_validate(yaml.safe_load(path.read_text()))
    assert definition.parameters["mode"].choices == ["a", "b"]
    assert definition.parameters["needed"].default is None and definition.parameters["n"].default == 3
    assert [definition.parameters[k].type for k in ("values", "at", "maybe")] == ["list", "dict", "float"]
    assert not regenerate(path, Config)  # stable
    assert list(definition.outputs) == ["o"]


def test_regeneration_is_refused_in_ci() -> None:
    env = {**os.environ, "NSBIFLOW_REGEN_STEPS": "1", "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "generated_from",
                           str(Path(__file__))], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "NSBIFLOW_REGEN_STEPS is set in CI" in proc.stdout


def test_physics_configs_are_the_stage_configs_parents() -> None:
    from nsbiflow.physics.configs import TrainConfig

    assert issubclass(STAGES["train-ratio"], TrainConfig)  # type: ignore[arg-type]


def test_stage_cli_does_not_import_heavy_modules() -> None:
    heavy = "('torch', 'matplotlib', 'pyhf')"
    code = f"import sys, nsbiflow.stepcli.main; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
