"""The lifeline wrapper (setpriv + a parent check) and the command lookup done before it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsbiflow.backends.local.lifeline import ORPHANED_EXIT, lifeline_prefix
from nsbiflow.backends.local.task import _resolve

needs_setpriv = pytest.mark.skipif(lifeline_prefix() is None, reason="setpriv --pdeathsig is not available here")


CHILD = """
import os, signal, subprocess, sys
from nsbiflow.backends.local.lifeline import lifeline_prefix
from nsbiflow.backends.local.task import _resolve
step = subprocess.Popen([*lifeline_prefix(), _resolve("sleep", ".", os.environ), "30"], start_new_session=True)
print(step.pid, flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@needs_setpriv
def test_wrapped_step_dies_with_a_sigkilled_runner_and_keeps_its_arguments(tmp_path: Path) -> None:
    prefix = lifeline_prefix()
    assert prefix is not None
    out = subprocess.run([*prefix, _resolve("sh", tmp_path, os.environ), "-c", 'echo "$0|$1"', "a b", "c"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout == "a b|c\n"
    runner = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None and runner.stdin is not None
    pid = int(runner.stdout.readline())
    deadline = time.monotonic() + 10
    while b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)  # the wrapper has exec'd the step
    assert _alive(pid)
    runner.stdin.write("\n")
    runner.stdin.flush()
    assert runner.wait(timeout=10) == -9
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid), "the step outlived its SIGKILLed runner"


@needs_setpriv
def test_a_step_whose_runner_is_not_its_parent_never_starts(tmp_path: Path) -> None:
    """The runner died before the death signal was set: the check sees another parent and exits."""
    prefix = lifeline_prefix()
    assert prefix is not None
    marker = tmp_path / "ran"
    # started by another process (a Python child) than the one the prefix names: like an orphan
    code = subprocess.call([sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))",
                            *prefix, _resolve("touch", tmp_path, os.environ), str(marker)])  # fmt: skip
    assert code == ORPHANED_EXIT
    assert not marker.exists()
    assert subprocess.call([*prefix, _resolve("touch", tmp_path, os.environ), str(marker)]) == 0
    assert marker.exists()


def test_resolve_finds_programs_as_popen_would(tmp_path: Path) -> None:
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        _resolve("./tool.sh", tmp_path, os.environ)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert _resolve("./tool.sh", tmp_path, os.environ) == str(tmp_path / "tool.sh")
    assert _resolve(str(script), Path("/"), os.environ) == str(script)
    assert _resolve("tool.sh", tmp_path, {"PATH": str(tmp_path)}) == str(script)
    with pytest.raises(FileNotFoundError):
        _resolve("no-such-program-xyz", tmp_path, os.environ)
    with pytest.raises(FileNotFoundError):
        _resolve("./missing", tmp_path, os.environ)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(PermissionError):
        _resolve("plain", tmp_path, {"PATH": str(tmp_path)})
