"""Submission and monitoring against a fake Argo server on loopback (and a real cluster when one is there)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from nsbiflow.backends.argo.submit import kubeconfig_token, resolve_token
from nsbiflow.backends.argo.validate import official_errors, official_schema_path, strict_errors
from nsbiflow.cli.main import cli
from tests.conftest import run_cli

TOKEN = "fake-token-123"
NAMESPACE = "physics"


class FakeArgo:
    """Records requests; answers like the Argo server's workflow API."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.phase = "Succeeded"

    def workflow(self, name: str) -> dict[str, Any]:
        def node(node_id: str, display: str, template: str, phase: str, cached: str) -> dict[str, Any]:
            return {"id": node_id, "name": f"{name}.{display}", "displayName": display, "type": "Pod",
                    "templateName": template, "phase": phase,
                    "outputs": {"parameters": [{"name": "cached", "value": cached},
                                               {"name": "step-key", "value": "abc123"}]}}  # fmt: skip

        nodes = {f"{name}-1": node(f"{name}-1", "numbers", "numbers", "Succeeded", "true"),
                 f"{name}-2": node(f"{name}-2", "square(0:step:square[0])", "square", self.phase, "false"),
                 name: {"id": name, "name": name, "displayName": name, "type": "DAG", "phase": self.phase}}  # fmt: skip
        return {"metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"entrypoint": "main", "templates": [{"name": "main"}]},
                "status": {"phase": self.phase, "progress": "2/2", "startedAt": "2025-01-01T00:00:00Z",
                           "finishedAt": "2025-01-01T00:01:00Z", "nodes": nodes}}  # fmt: skip


@pytest.fixture
def fake_argo() -> Iterator[tuple[str, FakeArgo]]:
    state = FakeArgo()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Any, *, ndjson: bool = False) -> None:
            data = ("\n".join(json.dumps(b) for b in body) if ndjson else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"code": 16, "message": "token not valid"})
                return False
            return True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append({"method": "POST", "path": self.path, "auth": self.headers.get("Authorization")})
            if not self._authorized():
                return
            if self.path != f"/api/v1/workflows/{NAMESPACE}":
                self._reply(404, {"message": f"no route {self.path}"})
                return
            request = json.loads(body)
            workflow = request["workflow"]
            state.problems += strict_errors(workflow)
            if official_schema_path().exists():
                state.problems += official_errors(workflow)
            if workflow["metadata"].get("namespace") != NAMESPACE:
                state.problems.append("namespace mismatch")
            state.requests[-1]["workflow"] = workflow
            created = dict(workflow, metadata=dict(workflow["metadata"], name="demo-fanout-abcde"))
            self._reply(200, created)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            state.requests.append({"method": "GET", "path": url.path, "query": parse_qs(url.query)})
            if not self._authorized():
                return
            parts = url.path.strip("/").split("/")
            if parts[:3] != ["api", "v1", "workflows"] or parts[3] != NAMESPACE:
                self._reply(404, {"message": "not found"})
            elif parts[4] != "demo-fanout-abcde":
                self._reply(404, {"message": f'workflows.argoproj.io "{parts[4]}" not found'})
            elif len(parts) == 6 and parts[5] == "log":
                name = parts[4]
                self._reply(200, [{"result": {"content": "made 1000 numbers", "podName": f"{name}-numbers-1"}},
                                  {"result": {"content": "squared chunk 0", "podName": f"{name}-square-2"}}],
                            ndjson=True)  # fmt: skip
            else:
                self._reply(200, state.workflow(parts[4]))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _invoke(*args: str, token: str = TOKEN) -> Any:
    return CliRunner().invoke(cli, list(args), env={"ARGO_TOKEN": token, "KUBECONFIG": "/nonexistent"})


def test_submit_sends_a_valid_workflow_with_bearer_token(fake_argo: tuple[str, FakeArgo], repo_root: Path) -> None:
    url, state = fake_argo
    demo = repo_root / "workflows" / "examples" / "demo-fanout.yaml"
    result = run_cli("submit", demo, "--argo-server", url, "-n", NAMESPACE, env={"ARGO_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "demo-fanout-abcde"
    post = [r for r in state.requests if r["method"] == "POST"]
    assert post and post[0]["path"] == f"/api/v1/workflows/{NAMESPACE}" and post[0]["auth"] == f"Bearer {TOKEN}"
    assert state.problems == []
    assert TOKEN not in json.dumps(post[0]["workflow"])
    assert len(post[0]["workflow"]["spec"]["templates"]) == 4


def test_refused_token_is_one_line(fake_argo: tuple[str, FakeArgo], repo_root: Path) -> None:
    url, _ = fake_argo
    result = _invoke("status", "demo-fanout-abcde", "--argo-server", url, "-n", NAMESPACE, token="wrong")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "ARGO_TOKEN" in lines[0]
    assert "wrong" not in result.stderr


def test_status_logs_and_watch(fake_argo: tuple[str, FakeArgo]) -> None:
    url, state = fake_argo
    common = ["--argo-server", url, "-n", NAMESPACE]
    status = _invoke("status", "demo-fanout-abcde", *common)
    assert status.exit_code == 0, status.output
    assert "Succeeded" in status.stdout and "(cached)" in status.stdout
    as_json = json.loads(_invoke("status", "demo-fanout-abcde", *common, "--json").stdout)
    assert {n["template"] for n in as_json["nodes"]} == {"numbers", "square"}
    logs = _invoke("logs", "demo-fanout-abcde", *common)
    assert "made 1000 numbers" in logs.stdout and "squared chunk 0" in logs.stdout
    one = _invoke("logs", "demo-fanout-abcde", *common, "--step", "square")
    assert "squared chunk 0" in one.stdout and "made 1000" not in one.stdout
    log_request = next(r for r in state.requests if r["path"].endswith("/log"))
    assert log_request["query"]["logOptions.container"] == ["main"]
    missing = _invoke("logs", "demo-fanout-abcde", *common, "--step", "nope")
    assert missing.exit_code == 1 and "no pods of step 'nope'" in missing.stderr
    watch = _invoke("watch", "demo-fanout-abcde", *common, "--interval", "0.1")
    assert watch.exit_code == 0 and "demo-fanout-abcde: Succeeded" in watch.stdout
    state.phase = "Failed"
    assert _invoke("watch", "demo-fanout-abcde", *common, "--interval", "0.1").exit_code == 1
    unknown = _invoke("status", "nope", *common)
    assert unknown.exit_code == 1 and "not found" in unknown.stderr and len(unknown.stderr.splitlines()) == 1


def test_token_from_env_or_kubeconfig(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(json.dumps({
        "current-context": "kind", "contexts": [{"name": "kind", "context": {"user": "me"}}],
        "users": [{"name": "me", "user": {"token": "from-kubeconfig"}}]}))  # fmt: skip
    assert kubeconfig_token({"KUBECONFIG": str(config)}) == "from-kubeconfig"
    assert resolve_token({"KUBECONFIG": str(config)}) == "from-kubeconfig"
    assert resolve_token({"KUBECONFIG": str(config), "ARGO_TOKEN": "Bearer x"}) == "Bearer x"
    assert resolve_token({"KUBECONFIG": str(tmp_path / "none")}) is None


@pytest.mark.cluster
def test_submit_to_a_real_cluster(repo_root: Path) -> None:
    if not os.environ.get("ARGO_SERVER"):
        pytest.skip("no ARGO_SERVER set (and a token in ARGO_TOKEN or the kubeconfig): no cluster to submit to")
    demo = repo_root / "workflows" / "examples" / "demo-fanout.yaml"
    result = run_cli("submit", demo)
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    status = run_cli("status", name)
    assert status.returncode == 0, status.stderr
