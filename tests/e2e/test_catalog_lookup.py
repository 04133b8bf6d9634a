"""A workflow outside the repository finds the shipped step catalog (wheel copy or editable checkout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nsbiflow.spec.catalog import StepCatalog, shipped_steps

REPO = Path(__file__).resolve().parents[2]


def test_shipped_steps_is_the_checkout_in_an_editable_install() -> None:
    folder = shipped_steps()
    assert folder.is_dir() and (folder / "load-events" / "step.yaml").is_file()
    if not (Path(sys.modules["nsbiflow"].__file__).parent / "_catalog").exists():  # type: ignore[arg-type]
        assert folder == REPO / "steps"


def test_a_workflow_in_a_temporary_folder_validates(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "apiVersion: nsbiflow/v1\nkind: Workflow\nmetadata: {name: outside}\n"
        "steps:\n  gen:\n    uses: generate-offshell\n    with: {process: ggH, n_events: 10}\n"
    )
    catalog = StepCatalog.for_workflow(tmp_path / "wf.yaml")
    assert catalog.find("generate-offshell") is not None and "train-ratio" in catalog.names()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "nsbiflow"), "validate", "wf.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
