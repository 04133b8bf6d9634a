"""Stopping a runner: SIGTERM/SIGHUP finalise like Ctrl-C, steps die with a SIGKILLed runner, leftovers go."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from benchmarks.fault_injection import run_processes as step_pids

from tests.conftest import BIN, run_cli
from tests.engine.test_faults import faulty_workflow


def start_runner(workflow: Path, store: Path, tmp: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp))
    return subprocess.Popen(
        [str(BIN / "nsbiflow"), "run", str(workflow), "--store", str(store), "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


def wait_for_running_steps(store: Path, timeout: float = 60) -> str:
    """The run id once one of its slow ``square`` steps is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in store.glob("runs/*/manifest.json"):
            run_id = path.parent.name
            for pid in step_pids(run_id):
                try:
                    if b"square" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        return run_id
                except OSError:
                    continue
        time.sleep(0.05)
    raise AssertionError("no step started")


def wait_gone(run_id: str, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = step_pids(run_id)
        if not left:
            return []
        time.sleep(0.1)
    return step_pids(run_id)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_steps_and_finalise(demo_workflow: Path, tmp_path: Path, sig: signal.Signals) -> None:
    workflow = faulty_workflow(demo_workflow, sleep=20)
    store = tmp_path / "store"
    (tmp_path / "tmp").mkdir()
    proc = start_runner(workflow, store, tmp_path / "tmp")
    run_id = wait_for_running_steps(store)
    proc.send_signal(sig)  # the runner only, as systemd or a batch system would
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr
    assert wait_gone(run_id) == []
    manifest = json.loads((store / "runs" / run_id / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and sig.name in manifest["error"]
    assert manifest["steps"]["numbers"]["status"] in ("succeeded", "cached")
    assert not any(s["status"] == "running" for s in manifest["steps"].values())
    assert not (tmp_path / "tmp" / "nsbiflow" / run_id).exists()  # its work directories are gone


def test_steps_die_when_the_runner_is_sigkilled(demo_workflow: Path, tmp_path: Path) -> None:
    workflow = faulty_workflow(demo_workflow, sleep=20)
    store = tmp_path / "store"
    (tmp_path / "tmp").mkdir()
    proc = start_runner(workflow, store, tmp_path / "tmp")
    run_id = wait_for_running_steps(store)
    proc.kill()  # the runner only: its steps must notice
    proc.wait()
    assert wait_gone(run_id) == []
    # the next run removes the killed run's work directories and its partial uploads
    partial = store / "tmp" / f".partial-{socket.gethostname().replace('-', '_')}-999999999-abc"
    partial.write_bytes(b"x" * 1000)
    assert (tmp_path / "tmp" / "nsbiflow" / run_id).exists()
    fast = faulty_workflow(demo_workflow, sleep=0)
    env = {"TMPDIR": str(tmp_path / "tmp")}
    result = run_cli("run", fast, "--store", store, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "tmp" / "nsbiflow" / run_id).exists()
    assert not partial.exists()
