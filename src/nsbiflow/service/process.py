"""Run ``nsbiflow serve`` as a child process on a free loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from nsbiflow.service.errors import ServiceError


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A fit server in a subprocess: ``start()`` waits until ``/readyz`` answers 200, ``stop()`` sends SIGTERM."""

    def __init__(self, store: str | Path, *, token: str | None = None, token_file: Path | None = None,
                 workers: int = 1, extra: list[str] | None = None, log: Path | None = None) -> None:
        self.store = str(store)
        self.token = token
        self.token_file = token_file
        self.workers = workers
        self.extra = extra or []
        self.log = log
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        """Start the server and wait for readiness (workers up)."""
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NSBIFLOW_SERVICE_TOKEN")}
        command = [sys.executable, "-c", "from nsbiflow.cli.main import main; main()", "serve",
                   "--store", self.store, "--port", str(self.port), "--workers", str(self.workers),
                   "--log-level", "warning", *self.extra]
        if self.token_file is not None:
            command += ["--token-file", str(self.token_file)]
        elif self.token is not None:
            env["NSBIFLOW_SERVICE_TOKEN"] = self.token
        else:
            command.append("--no-auth")
        output = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 (kept by the child)
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"the fit server exited with {self.process.returncode} during start-up")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"the fit server was not ready within {timeout:.0f} s")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it hangs; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
