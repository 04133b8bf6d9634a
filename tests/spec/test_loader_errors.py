"""Bad workflow files: each gives exit code 2 and one located line that names the problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nsbiflow.engine.plan import load_plan
from nsbiflow.errors import SpecError
from tests.conftest import run_cli

GOOD_STEP = """\
apiVersion: nsbiflow/v1
kind: Step
name: echo
image: busybox:1.36
command: [sh, -c, "echo hi > $0"]
parameters:
  n: {type: int, default: 1}
  label: {type: str, default: x}
inputs:
  data: {kind: file, optional: true}
  many: {kind: file, multiple: true, optional: true}
outputs:
  out: {kind: file}
"""

HEADER = """\
apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: bad}
parameters:
  chunks: {type: list, default: [0, 1]}
  n: {type: int, default: 3}
  word: {type: str, default: hello}
"""


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "steps" / "echo").mkdir(parents=True, exist_ok=True)
    (tmp_path / "steps" / "echo" / "step.yaml").write_text(GOOD_STEP)
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(body))
    return path


# (name, workflow text, expected line, expected text in the message)
CASES = [
    ("yaml-syntax", HEADER + "steps:\n  a: {uses: echo\n", 10, "invalid YAML"),
    ("tab-indent", HEADER + "steps:\n\ta:\n    uses: echo\n", 9, "invalid YAML"),
    ("duplicate-key", HEADER + "steps:\n  a: {uses: echo}\n  a: {uses: echo}\n", 10, "duplicate key 'a'"),
    ("unknown-top-field", HEADER + "stepz: {}\nsteps:\n  a: {uses: echo}\n", 8, "unknown field 'stepz'"),
    ("unknown-step-field", HEADER + "steps:\n  a:\n    uses: echo\n    inptus: {}\n", 11, "unknown field 'inptus'"),
    (
        "wrong-param-type",
        HEADER.replace("default: 3", "default: three") + "steps:\n  a: {uses: echo}\n",
        6,
        "expected an int",
    ),
    ("unknown-step-name", HEADER + "steps:\n  a:\n    uses: ehco\n", 10, "unknown step definition 'ehco'"),
    (
        "dangling-reference",
        HEADER + "steps:\n  a:\n    uses: echo\n    inputs: {data: b.out}\n",
        11,
        "no step named 'b'",
    ),
    (
        "unknown-output",
        HEADER + "steps:\n  a: {uses: echo}\n  b:\n    uses: echo\n    inputs: {data: a.nope}\n",
        12,
        "has no output 'nope'",
    ),
    (
        "cycle",
        HEADER + "steps:\n  a:\n    uses: echo\n    inputs: {data: b.out}\n  b:\n    uses: echo\n"
        "    inputs: {data: a.out}\n",
        9,
        "dependency cycle",
    ),
    (
        "foreach-not-list",
        HEADER + "steps:\n  a:\n    uses: echo\n    foreach: ${{ params.n }}\n",
        11,
        "foreach must give a list",
    ),
    (
        "unknown-parameter-binding",
        HEADER + "steps:\n  a:\n    uses: echo\n    with: {nn: 2}\n",
        11,
        "has no parameter 'nn'",
    ),
    (
        "bad-binding-type",
        HEADER + "steps:\n  a:\n    uses: echo\n    with:\n      n: ${{ params.word }}\n",
        12,
        "expected an int",
    ),
    (
        "unknown-expression-name",
        HEADER + "steps:\n  a:\n    uses: echo\n    with:\n      n: ${{ parms.n }}\n",
        12,
        "unknown name 'parms'",
    ),
    (
        "fan-in-to-single",
        HEADER + "steps:\n  a:\n    uses: echo\n    foreach: [1, 2]\n  b:\n    uses: echo\n    inputs: {data: a.out}\n",
        14,
        "takes one artifact but gets 2",
    ),
    ("needs-unknown", HEADER + "steps:\n  a:\n    uses: echo\n    needs: [zz]\n", 11, "no step named 'zz'"),
    ("bad-step-name", HEADER + "steps:\n  Bad_Name!:\n    uses: echo\n", 9, "not a valid name"),
    (
        "missing-metadata",
        "apiVersion: nsbiflow/v1\nkind: Workflow\nsteps:\n  a: {uses: echo}\n",
        1,
        "missing required field 'metadata'",
    ),
    (
        "uses-and-run",
        HEADER + "steps:\n  a:\n    uses: echo\n    run: {image: x, command: [y]}\n",
        10,
        "exactly one of 'uses'",
    ),
    (
        "bad-resource-quantity",
        HEADER + "steps:\n  a:\n    uses: echo\n    resources: {memory: lots}\n",
        11,
        "invalid resource quantity 'lots'",
    ),
    (
        "missing-instance",
        HEADER + "steps:\n  a:\n    uses: echo\n    foreach: [x, y]\n  b:\n    uses: echo\n"
        "    inputs:\n      data: a[z].out\n",
        15,
        "has no instance 'z'",
    ),
    (
        "missing-file-input",
        HEADER + "steps:\n  a:\n    uses: echo\n    inputs: {data: {path: nothere.parquet}}\n",
        11,
        "does not exist",
    ),
    ("not-a-mapping", "- just\n- a list\n", 1, "expected a YAML mapping"),
    (
        "interface-unknown-param",
        HEADER + "interface: {parameters: [nope]}\nsteps:\n  a: {uses: echo}\n",
        8,
        "interface parameter 'nope'",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_workflow_is_located(tmp_path: Path, name: str, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_plan(path)
    problems = info.value.problems
    assert any(message in p.message for p in problems), [str(p) for p in problems]
    hit = next(p for p in problems if message in p.message)
    assert hit.file == str(path)
    assert hit.line == line, str(hit)


def test_cli_validate_prints_one_line_per_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "steps:\n  a:\n    uses: ehco\n    with: {nn: 2}\n  b:\n    uses: echo\n    inputs: {data: zz.out}\n",
    )
    result = run_cli("validate", path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert all(line.startswith(f"{path}:") for line in lines), lines
    assert any(":10:11: unknown step definition 'ehco'" in line for line in lines), lines
    assert any("no step named 'zz'" in line for line in lines), lines


def test_cli_validate_missing_file(tmp_path: Path) -> None:
    result = run_cli("validate", tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'nope.yaml'}:0:0: no such file"


def test_bad_step_definition_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "steps:\n  a: {uses: echo}\n")
    (tmp_path / "steps" / "echo" / "step.yaml").write_text(GOOD_STEP.replace("kind: file}", "kind: folder}", 1))
    with pytest.raises(SpecError) as info:
        load_plan(path)
    (problem,) = info.value.problems
    assert problem.file.endswith("steps/echo/step.yaml")
    assert problem.line == 13
    assert "outputs.out.kind" in problem.message


def test_unknown_set_parameter_is_a_usage_error(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "steps:\n  a: {uses: echo}\n")
    result = run_cli("run", path, "--set", "nn=3", "--store", tmp_path / "store")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --set nn: the workflow has no parameter 'nn' (did you mean 'n'?); parameters: chunks, n, word"
    )


def test_an_interface_input_must_list_every_reader_of_its_file(tmp_path: Path) -> None:
    """fit.data in the interface but toys.data reading the same file would leave toys on the old model."""
    (tmp_path / "table.csv").write_text("x\n1\n")
    steps = (
        "steps:\n  fit:\n    uses: echo\n    inputs: {data: {path: table.csv}}\n"
        "  toys:\n    uses: echo\n    inputs: {data: {path: ./table.csv}}\n"
    )
    partial = write(tmp_path, HEADER + "interface: {inputs: [fit.data]}\n" + steps)
    with pytest.raises(SpecError) as info:
        load_plan(partial)
    (problem,) = info.value.problems
    assert problem.line == 8 and "which toys.data also reads: list it in interface.inputs" in problem.message
    complete = write(tmp_path, HEADER + "interface: {inputs: [fit.data, toys.data]}\n" + steps)
    assert load_plan(complete).steps
