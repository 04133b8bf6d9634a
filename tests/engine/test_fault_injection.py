"""A few random signals to the runner, then resume: the fault-injection script at its quick size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_random_signals_leave_no_process_no_corruption_and_the_same_output() -> None:
    result = REPO / "benchmarks" / "results" / "fault_injection_quick.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fault_injection.py"), "--kills", "4", "--seed", "5"],
        env={**os.environ, "NSBIFLOW_BENCH_QUICK": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(result.read_text())
    assert report["ok"] and report["kills"] == 4 and report["failures"] == []
    assert all(not e["processes_left"] and not e["fsck_problems"] for e in report["events"])
