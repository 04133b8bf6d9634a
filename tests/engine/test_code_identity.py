"""Code identity: globs against the workflow's folder, misspelt or empty entries refused, import closures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from nsbiflow.engine.code import CodeError, entry_digest, python_files
from nsbiflow.engine.keys import step_code_identity
from nsbiflow.engine.plan import load_plan
from nsbiflow.errors import SpecError
from tests.conftest import run_cli


def inline_workflow(folder: Path, code: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "apiVersion": "nsbiflow/v1",
        "kind": "Workflow",
        "metadata": {"name": "code"},
        "steps": {
            "a": {
                "run": {
                    "image": "busybox",
                    "command": ["python", "tool.py"],
                    "code": code,
                    "outputs": {"out": {"kind": "file"}},
                }
            }
        },
    }
    path = folder / "wf.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_inline_code_is_resolved_against_the_workflow_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workflow = inline_workflow(tmp_path / "wf", ["tool.py"])
    (workflow.parent / "tool.py").write_text("print(1)\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = step_code_identity(load_plan(workflow).steps["a"])
    (workflow.parent / "tool.py").write_text("print(2)\n")
    after = step_code_identity(load_plan(workflow).steps["a"])
    assert before["tool.py"] != after["tool.py"]


@pytest.mark.parametrize(
    "entry,needle",
    [
        ("python:nsbiflow.no_such_module", "not found"),
        ("python:no_such_package_xyz", "not installed"),
        ("python:nsbiflow.demo:no_such_function", "no function"),
        ("python:not a module", "not a module name"),
        ("missing-*.py", "matches no file"),
        ("/etc/*", "absolute"),
        ("../*.py", "climbs out"),
    ],
)
def test_code_entries_that_identify_nothing_are_refused(tmp_path: Path, entry: str, needle: str) -> None:
    workflow = inline_workflow(tmp_path / "wf", [entry])
    with pytest.raises(SpecError) as info:
        load_plan(workflow)
    assert len(info.value.problems) == 1
    assert needle in str(info.value)
    assert "wf.yaml:" in str(info.value)
    result = run_cli("validate", workflow)
    assert result.returncode == 2 and "internal error" not in result.stderr


def test_namespace_package_is_hashed_not_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nspkg_h").mkdir()
    (tmp_path / "nspkg_h" / "mod.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = entry_digest("python:nspkg_h", tmp_path)
    (tmp_path / "nspkg_h" / "mod.py").write_text("X = 2\n")
    assert entry_digest("python:nspkg_h", tmp_path) != first


def make_project(root: Path) -> Path:
    package = root / "closproj"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text(
        "from closproj import shared\n\n"
        "def helper():\n    from closproj import used_by_helper\n\n"
        "def train():\n    from closproj.train_lib import fit\n    helper()\n\n"
        "def plot():\n    from closproj import plots\n"
    )
    for name in ("shared", "used_by_helper", "train_lib", "plots"):
        (package / f"{name}.py").write_text(f"NAME = {name!r}\n")
    (package / "train_lib.py").write_text("from . import deep\n\ndef fit():\n    pass\n")
    (package / "deep.py").write_text("")
    return package


def test_import_closure_of_a_stage_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = make_project(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    files = sorted(python_files("closproj.stage:train"))
    assert files == [
        "closproj/__init__.py",
        "closproj/deep.py",
        "closproj/shared.py",
        "closproj/stage.py",
        "closproj/train_lib.py",
        "closproj/used_by_helper.py",
    ]
    before = entry_digest("python:closproj.stage:train", tmp_path)
    (package / "plots.py").write_text("NAME = 'changed'\n")  # not imported by train: same identity
    assert entry_digest("python:closproj.stage:train", tmp_path) == before
    (package / "deep.py").write_text("X = 1\n")  # imported (relatively, two levels down): new identity
    assert entry_digest("python:closproj.stage:train", tmp_path) != before


def test_editing_plots_does_not_change_the_training_identity() -> None:
    training = python_files("nsbiflow.stepcli.training:train_ratio")
    assert "nsbiflow/physics/training.py" in training
    assert "nsbiflow/physics/plots.py" not in training
    assert "nsbiflow/physics/plots.py" in python_files("nsbiflow.stepcli.evaluation:calibrate")


def test_code_error_is_an_nsbiflow_error() -> None:
    with pytest.raises(CodeError):
        entry_digest("python:nsbiflow.nope", Path(os.getcwd()))
