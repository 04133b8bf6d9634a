"""The step catalog and the stage programs agree, and the stage CLI stays cheap to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import nsbiflow.stepcli.evaluation as evaluation
import nsbiflow.stepcli.generate as generate
import nsbiflow.stepcli.training as training
from nsbiflow.spec.models import StepDefinition

REPO = Path(__file__).resolve().parents[2]
CONFIGS: dict[str, type[BaseModel]] = {
    "generate": generate.GenerateConfig,
    "generate-data": generate.DataConfig,
    "load-events": generate.LoadConfig,
    "support": training.SupportConfig,
    "train-ratio": training.TrainRatioConfig,
    "gather-ensemble": BaseModel,
    "calibrate": evaluation.CalibrateConfig,
    "infer": evaluation.InferConfig,
    "fit": evaluation.FitConfig,
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_yaml_matches_the_stage(name: str) -> None:
    definition = StepDefinition.model_validate(yaml.safe_load((REPO / "steps" / name / "step.yaml").read_text()))
    assert definition.name == name and definition.command == ["nsbiflow-step", name]
    fields = CONFIGS[name].model_fields
    assert set(definition.parameters) == set(fields)
    for pname, spec in definition.parameters.items():
        if fields[pname].is_required():
            assert spec.default is None, f"{pname}: required by the stage but has a default in step.yaml"
            continue
        assert spec.default == fields[pname].get_default(call_default_factory=True), pname


def test_stage_cli_does_not_import_heavy_modules() -> None:
    heavy = "('torch', 'matplotlib', 'pyhf')"
    code = f"import sys, nsbiflow.stepcli.main; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
