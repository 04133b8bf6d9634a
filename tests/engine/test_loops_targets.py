"""Targets without loops refuse them in one line: yadage and REANA (no iterative stages in yadage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

EXAMPLE = REPO / "workflows" / "examples" / "active-scan.yaml"


@pytest.mark.parametrize("target", ["yadage", "reana"])
def test_yadage_and_reana_refuse_a_loop_in_one_line(tmp_path: Path, target: str) -> None:
    out = tmp_path / "export"
    result = run_cli("compile", EXAMPLE, "--target", target, "--environment", "docker", "-o", out)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: loop step 'scan' is not supported by this target ({target})")
    assert not out.exists()  # nothing half-written
