"""Workflows whose one step is a small Python script written by the test (hostile values, environment dumps)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path


def script_workflow(folder: Path, name: str, script: str, body: str) -> Path:
    """Write ``script`` and a workflow ``name`` whose YAML ``body`` (after ``metadata``) says ``COMMAND`` where
    the step's command goes (this interpreter running the script); returns the workflow file."""
    script_path = folder / f"{name}.py"
    script_path.write_text(textwrap.dedent(script))
    command = json.dumps([sys.executable, str(script_path)])
    header = f"apiVersion: nsbiflow/v1\nkind: Workflow\nmetadata: {{name: {name}}}\n"
    path = folder / f"{name}.yaml"
    path.write_text(header + textwrap.dedent(body).replace("COMMAND", command))
    return path
