"""Static checks of a loop: a DAG body, ``until`` and ``loop.previous`` naming real outputs, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

STEP = '{image: x, command: ["true"], inputs: {i: {optional: true}}, outputs: {out: {filename: o.json}}}'


def workflow(
    tmp_path: Path,
    *,
    until: str = "${{ loop.current.b.out.done }}",
    a_in: str = "loop.previous.b.out",
    b_in: str = "a.out",
    outputs: str = "{o: b.out}",
    extra: str = "",
) -> Path:
    text = f"""apiVersion: nsbiflow/v1
kind: Workflow
metadata: {{name: checks}}
steps:
  scan:
    loop:
      max_iterations: 3
      until: {until}
      outputs: {outputs}
      steps:
        a:
          run: {STEP}
          inputs: {{i: {a_in}}}
        b:
          run: {STEP}
          inputs: {{i: {b_in}}}
{extra}"""
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return path


def validate(path: Path) -> list[str]:
    result = run_cli("validate", path)
    assert "Traceback" not in result.stderr
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_a_valid_loop_validates(tmp_path: Path) -> None:
    result = run_cli("validate", workflow(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        ({"b_in": "b.out"}, 14, "dependency cycle"),
        ({"until": "${{ loop.current.b.nope }}"}, 8, "step 'b' has no output 'nope'"),
        ({"until": "${{ loop.current.zz.out }}"}, 8, "no step 'zz' in the loop's body"),
        ({"until": "${{ params.x }}"}, 8, "until must read an output of the body"),
        ({"a_in": "loop.previous.b.missing"}, 13, "step 'b' has no output 'missing'"),
        ({"outputs": "{o: a.gone}"}, 9, "loop output 'o'"),
        ({"extra": "  a:\n    run: " + STEP + "\n"}, 11, "has the name of a workflow step"),
    ],
)
def test_loop_mistakes_are_located(tmp_path: Path, change: dict[str, str], line: int, message: str) -> None:
    lines = validate(workflow(tmp_path, **change))
    hits = [entry for entry in lines if message in entry]
    assert hits, lines
    assert hits[0].startswith(f"{tmp_path / 'wf.yaml'}:{line}:"), hits[0]


def test_previous_into_a_required_input_is_refused(tmp_path: Path) -> None:
    path = workflow(tmp_path)
    path.write_text(path.read_text().replace("inputs: {i: {optional: true}}", "inputs: {i: {}}", 1))
    hits = [entry for entry in validate(path) if "declare the input 'optional: true'" in entry]
    assert hits and hits[0].startswith(f"{path}:13:"), hits


def test_nested_loops_and_loop_fields_are_refused(tmp_path: Path) -> None:
    path = workflow(tmp_path)
    path.write_text(path.read_text().replace("    loop:\n", "    foreach: [1, 2]\n    loop:\n", 1))
    assert any("a loop step takes no 'foreach'" in entry for entry in validate(path))
