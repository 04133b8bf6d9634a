"""Golden files: every workflow under workflows/ compiles to the ``tests/argo/golden/<path>.argo.yaml`` checked in.

Regenerate with ``NSBIFLOW_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/argo/test_golden.py``; that is
refused when ``CI`` is set, so CI only ever compares.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from nsbiflow.backends.argo import compile_to_yaml
from nsbiflow.backends.argo.validate import official_errors, official_schema_path, strict_errors
from nsbiflow.engine.plan import load_plan
from tests.argo.conftest import GOLDEN, REPO, golden_path, workflow_files

REGEN = os.environ.get("NSBIFLOW_REGEN_GOLDEN") == "1"


@pytest.mark.parametrize("workflow", workflow_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_workflow_matches_golden(workflow: Path) -> None:
    if REGEN and os.environ.get("CI"):
        pytest.fail("NSBIFLOW_REGEN_GOLDEN is set in CI: golden files are regenerated locally and committed")
    text = compile_to_yaml(load_plan(workflow))
    golden = golden_path(workflow)
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden.relative_to(REPO)} is missing: run with NSBIFLOW_REGEN_GOLDEN=1"
    assert golden.read_text() == text, (f"{golden.relative_to(REPO)} is out of date: regenerate with "
                                        "NSBIFLOW_REGEN_GOLDEN=1 and review the diff")  # fmt: skip


@pytest.mark.parametrize("workflow", workflow_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_golden_is_valid_argo(workflow: Path) -> None:
    golden = golden_path(workflow)
    if not golden.exists():
        pytest.skip(f"{golden.relative_to(REPO)} not generated yet")
    document = yaml.safe_load(golden.read_text())
    assert strict_errors(document) == []
    if not official_schema_path().exists():
        pytest.skip(f"official Argo schema not found at {official_schema_path()}")
    assert official_errors(document) == []


def test_every_golden_has_a_workflow() -> None:
    sources = {golden_path(p) for p in workflow_files()}
    stale = [p for p in GOLDEN.rglob("*.argo.yaml") if p not in sources]
    assert not stale, f"golden files without a workflow: {stale}"


def test_regeneration_is_refused_in_ci() -> None:
    import subprocess
    import sys

    env = {**os.environ, "NSBIFLOW_REGEN_GOLDEN": "1", "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{Path(__file__)}::test_workflow_matches_golden"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "NSBIFLOW_REGEN_GOLDEN is set in CI" in proc.stdout
