"""The reweighting steps in the catalog agree with their stage programs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from nsbiflow.spec.models import StepDefinition
from nsbiflow.stepcli import reweighting

REPO = Path(__file__).resolve().parents[2]
CONFIGS: dict[str, type[BaseModel]] = {
    "generate-objects": reweighting.GenerateObjectsConfig,
    "load-objects": reweighting.LoadObjectsConfig,
    "train-reweighter": reweighting.TrainReweighterConfig,
    "apply-reweighter": reweighting.ApplyReweighterConfig,
    "reweight-closure": reweighting.ClosureConfig,
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_yaml_matches_the_stage(name: str) -> None:
    definition = StepDefinition.model_validate(yaml.safe_load((REPO / "steps" / name / "step.yaml").read_text()))
    assert definition.name == name and definition.command == ["nsbiflow-step", name]
    fields = CONFIGS[name].model_fields
    assert set(definition.parameters) == set(fields)
    for pname, spec in definition.parameters.items():
        assert spec.description, f"{name}.{pname}: no description"
        if fields[pname].is_required():
            assert spec.default is None, f"{pname}: required by the stage but has a default in step.yaml"
            continue
        assert spec.default == fields[pname].get_default(call_default_factory=True), pname


def test_every_closure_tolerance_is_a_stage_parameter() -> None:
    from nsbiflow.physics.reweight.closure import ClosureTolerances

    for name, field in ClosureTolerances.model_fields.items():
        stage_field = reweighting.ClosureConfig.model_fields[name]
        assert stage_field.default == field.default, name
