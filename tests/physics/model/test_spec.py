"""The model file: located errors, the checked-in schemas, safe coefficients, the validate hook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from nsbiflow.cli.main import cli
from nsbiflow.errors import SpecError
from nsbiflow.physics.model.expressions import ExpressionError, parse
from nsbiflow.physics.model.loader import load_model
from nsbiflow.physics.model.schema import SCHEMA_DIR, SCHEMA_FILES, schema_dict, schema_json
from tests.physics.model.conftest import REPO, TOY_MODEL


@pytest.mark.parametrize("kind", sorted(SCHEMA_FILES))
def test_checked_in_schemas_match_the_models(kind: str) -> None:
    checked_in = (SCHEMA_DIR / SCHEMA_FILES[kind]).read_text()
    assert checked_in == schema_json(kind), (
        f"the {kind} schema drifted: run `nsbiflow schema --kind {kind} > "
        f"src/nsbiflow/physics/model/schema/{SCHEMA_FILES[kind]}`"
    )


def test_schema_command_prints_the_model_schema() -> None:
    result = CliRunner().invoke(cli, ["schema", "--kind", "model"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == schema_dict("model")
    bad = CliRunner().invoke(cli, ["schema", "--kind", "nonsense"])
    assert bad.exit_code != 0 and "known kinds are workflow, step, model, results" in bad.output


def test_bundled_models_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(schema_dict("model"))
    for path in sorted((REPO / "workflows" / "models").glob("*.yaml")):
        validator.validate(yaml.safe_load(path.read_text()))
        load_model(path)


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_model(path)
    return [str(p) for p in info.value.problems]


def test_errors_carry_file_line_and_column(tmp_path: Path) -> None:
    text = TOY_MODEL.read_text()
    # an unknown field, a bad normsys value, an undeclared parameter and ratio, a bad coefficient
    text = text.replace("  alpha: {constraint: gaussian,", "  alpha: {constrant: gaussian,")
    text = text.replace("lo: 0.95", "lo: -0.95")
    errors = _errors(tmp_path, text)
    lines = text.splitlines()
    alpha_line = next(i for i, line in enumerate(lines, 1) if "constrant" in line)
    assert any(
        e.startswith(f"{tmp_path / 'model.yaml'}:{alpha_line}:")
        and "unknown field 'constrant'" in e
        and "did you mean 'constraint'" in e
        for e in errors
    ), errors
    lo_line = next(i for i, line in enumerate(lines, 1) if "lo: -0.95" in line)
    assert any(f":{lo_line}:" in e and "greater than 0" in e for e in errors), errors
    text = (
        TOY_MODEL.read_text()
        .replace("coefficient: mu", "coefficient: mu * kappa")
        .replace("up: background_up", "up: background_upp")
    )
    errors = _errors(tmp_path, text)
    lines = text.splitlines()
    c_line = next(i for i, line in enumerate(lines, 1) if "mu * kappa" in line)
    assert any(f":{c_line}:" in e and "'kappa', which is not a declared parameter" in e for e in errors), errors
    s_line = next(i for i, line in enumerate(lines, 1) if "background_upp" in line)
    assert any(f":{s_line}:" in e and "ratio 'background_upp' is not declared" in e for e in errors), errors


def test_json_models_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(yaml.safe_load(TOY_MODEL.read_text()), indent=1))
    assert load_model(path).pois() == ["mu"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "not allowed"),
        ("mu.real", "not allowed"),
        ("open(1)", "function 'open' is not allowed"),
        ("sqrt(mu, 2)", "exactly one argument"),
        ("mu if mu else 1", "not allowed"),
        ("mu +", "cannot parse"),
        ("x" * 3000, "longer than"),
    ],
)
def test_coefficients_refuse_anything_but_arithmetic(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        parse(text)


def test_coefficients_evaluate_on_floats_and_tensors() -> None:
    import torch

    e = parse("mu - sqrt(mu) + 2 * k**2 - exp(0) + log(1) + abs(-1)")
    assert e.names == {"mu", "k"}
    assert e({"mu": 4.0, "k": 0.5}) == pytest.approx(4 - 2 + 0.5 - 1 + 0 + 1)
    t = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    value = e({"mu": t, "k": 0.5})
    value.backward()
    assert float(t.grad) == pytest.approx(1 - 0.25)


def test_validate_lists_ratios_the_workflow_does_not_train(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(REPO / "workflows" / "toy-nsbi.yaml", tmp_path / "toy-nsbi.yaml")
    text = TOY_MODEL.read_text().replace(
        "  background_down: {numerator: background_down, denominator: background}",
        "  background_down: {numerator: background_down, denominator: background}\n"
        "  ttbar: {numerator: ttbar, denominator: reference}\n  wjets: {numerator: wjets, denominator: reference}",
    )
    text += (
        "      ttbar: {sample: ttbar, ratio: ttbar, yield: 50.0}\n"
        "      wjets: {sample: wjets, ratio: wjets, yield: 20.0}\n"
    )
    (tmp_path / "models" / "toy.yaml").write_text(text)
    runner = CliRunner()
    steps = str(REPO / "steps")
    ok = runner.invoke(cli, ["validate", "--steps", steps, str(REPO / "workflows" / "toy-nsbi.yaml")])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(cli, ["validate", "--steps", steps, str(tmp_path / "toy-nsbi.yaml")])
    assert bad.exit_code != 0
    assert "model toy.yaml uses ratio(s) ttbar, wjets that no step of the workflow trains" in bad.output
    assert f"{tmp_path / 'toy-nsbi.yaml'}:" in bad.output  # located at the fit step's model binding
    # an invalid model is reported with the model file's own position
    (tmp_path / "models" / "toy.yaml").write_text(TOY_MODEL.read_text().replace("coefficient: mu", "coefficient: mu +"))
    broken = runner.invoke(cli, ["validate", "--steps", steps, str(tmp_path / "toy-nsbi.yaml")])
    assert broken.exit_code != 0 and "models/toy.yaml:" in broken.output and "cannot parse" in broken.output
