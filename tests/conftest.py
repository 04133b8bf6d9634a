"""Fixtures shared by every test package: paths, the CLI as a subprocess, and a real S3 endpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


@dataclass
class CliResult:
    """A finished ``nsbiflow`` invocation."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> CliResult:
    """Run the installed ``nsbiflow`` console script as a user would."""
    full_env = dict(os.environ)
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    proc = subprocess.run(
        [str(BIN / "nsbiflow"), *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def kill_run_when(workflow: Path, store: Path, ready: Callable[[Path], bool], *, poll: float = 0.05,
                  timeout: float = 60) -> None:  # fmt: skip
    """Start ``nsbiflow run WORKFLOW --store STORE --jobs 2``, wait until ``ready(store)`` (or ``timeout``), then
    SIGKILL its whole process group (runner and steps, as a crash or an OOM kill would) and reap it."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([str(BIN / "nsbiflow"), "run", str(workflow), "--store", str(store), "--jobs", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready(store):
        time.sleep(poll)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def cli() -> type[CliResult]:
    """Marker fixture so tests can ask for the CLI helper explicitly (use ``run_cli``)."""
    return CliResult


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Endpoint:
    """A real S3 HTTP endpoint (moto's server) on loopback, with the env a client needs."""

    url: str
    env: dict[str, str]
    server: object

    def stop(self) -> None:
        """Take the endpoint away (to test an S3 outage)."""
        self.server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Endpoint]:
    """moto's ThreadedMotoServer on a free loopback port; env vars point the minio SDK at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NSBIFLOW_CREATE_BUCKET": "1",  # fresh buckets for each test; refusing a missing one is tested apart
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    endpoint = S3Endpoint(env["AWS_ENDPOINT_URL"], env, server)
    try:
        yield endpoint
    finally:
        with contextlib.suppress(Exception):  # already stopped by the test
            server.stop()


@pytest.fixture
def demo_workflow(tmp_path: Path) -> Path:
    """A copy of the 3-stage demo workflow (numbers -> square x4 -> total) in a temporary folder."""
    import shutil

    target = tmp_path / "wf" / "demo.yaml"
    target.parent.mkdir()
    shutil.copy(REPO / "workflows" / "examples" / "demo-fanout.yaml", target)
    return target
