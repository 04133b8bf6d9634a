"""The README's workflow example, run exactly as printed, and workflows written outside the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.conftest import REPO, run_cli


def _blocks(section: str) -> list[tuple[str, str]]:
    """(language, text) of every fenced block in a README section (from its heading to the next ``## ``)."""
    readme = (REPO / "README.md").read_text()
    start = readme.index(f"\n## {section}\n")
    end = readme.find("\n## ", start + 1)
    text = readme[start : end if end > 0 else None]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


def _without_steps_path() -> dict[str, str]:
    return {"NSBIFLOW_STEPS_PATH": "", "NSBIFLOW_STORE": ""}


def test_readme_workflow_runs_as_printed(tmp_path: Path) -> None:
    blocks = _blocks("A workflow")
    workflow = next(text for lang, text in blocks if lang == "yaml" and "kind: Workflow" in text)
    commands = next(text for lang, text in blocks if lang == "" and "nsbiflow run" in text)
    saved_as = re.search(r"save it as `([^`]+)`", (REPO / "README.md").read_text())
    assert saved_as is not None
    (tmp_path / saved_as.group(1)).write_text(workflow)
    env = _without_steps_path()
    outputs = []
    for line in commands.strip().splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "nsbiflow", line
        result = run_cli(*argv[1:], cwd=tmp_path, env=env)
        assert result.returncode == 0, (line, result.stderr)
        outputs.append(result)
        total = tmp_path / "nsbiflow-results" / "squares" / "total" / "total.txt"
        assert int(total.read_text()) == sum(k * k for k in range(1, 101)), line
    assert "succeeded: 6 succeeded" in outputs[0].stdout
    assert "succeeded: 1 cached, 3 succeeded" in outputs[1].stdout  # numbers reused; 2 squares and the total


def test_shipped_steps_found_from_a_folder_outside_the_repository(tmp_path: Path) -> None:
    """The editable install has no ``_catalog``: the checkout's ``steps/`` is the shipped catalog."""
    (tmp_path / "analysis").mkdir()
    workflow = tmp_path / "analysis" / "mine.yaml"
    workflow.write_text(
        "apiVersion: nsbiflow/v1\nkind: Workflow\nmetadata: {name: mine}\noutputs: {events: simulate.events}\n"
        "steps:\n  simulate:\n    uses: generate\n    with: {process: background, n_events: 200, n_holdout: 50}\n"
    )
    env = _without_steps_path()
    assert not (REPO / "src" / "nsbiflow" / "_catalog").exists()
    checked = run_cli("validate", workflow, cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    ran = run_cli("run", workflow, "--store", tmp_path / "store", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "nsbiflow-results" / "mine" / "events").is_dir() or list(
        (tmp_path / "nsbiflow-results" / "mine").rglob("*.parquet")
    )


def test_file_input_path_interpolates_parameters(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "b.txt").write_text("2\n3\n")
    workflow = tmp_path / "sum.yaml"
    workflow.write_text(
        "apiVersion: nsbiflow/v1\nkind: Workflow\nmetadata: {name: sum}\n"
        "parameters: {sample: {type: str, default: a}}\noutputs: {total: add.total}\nsteps:\n  add:\n    run:\n"
        "      image: busybox:1.36\n"
        "      command: [sh, -c, 'for a; do case $a in *=*) export \"$a\";; esac; done;"
        " awk \"{s += \\$1} END {print s}\" \"$numbers\" > \"$total\"', sh]\n"
        "      inputs: {numbers: {kind: file}}\n      outputs: {total: {kind: file}}\n"
        "    inputs: {numbers: {path: \"data/${{ params.sample }}.txt\"}}\n"
    )
    missing = run_cli("run", workflow, "--store", tmp_path / "store", cwd=tmp_path, env=_without_steps_path())
    assert missing.returncode == 2 and "input file 'data/a.txt' does not exist" in missing.stderr, missing.stderr
    ok = run_cli(
        "run", workflow, "--set", "sample=b", "--store", tmp_path / "store", cwd=tmp_path, env=_without_steps_path()
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "nsbiflow-results" / "sum" / "total" / "total").read_text().strip() == "5"
