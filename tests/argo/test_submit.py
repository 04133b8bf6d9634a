"""Submission and monitoring against a fake Argo server on loopback (and a real cluster when one is there)."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from click.testing import CliRunner

from nsbiflow.backends.argo import compile_to_dict
from nsbiflow.backends.argo.progress import PlainWatch, PodProgress, RichWatch
from nsbiflow.backends.argo.submit import NodeState, WorkflowState, kubeconfig_token, resolve_token
from nsbiflow.backends.argo.validate import official_errors, official_schema_path, strict_errors
from nsbiflow.cli.main import cli
from nsbiflow.engine.plan import load_plan
from nsbiflow.engine.progress import LOG_PREFIX, parse_log_line
from tests.conftest import run_cli

TOKEN = "fake-token-123"
NAMESPACE = "physics"


class FakeArgo:
    """Records requests; answers like the Argo server's workflow API."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.phase = "Succeeded"
        self.phases: list[str] = []  # phases the next workflow GETs return, one each, before ``phase``
        self.log: list[dict[str, Any]] = [
            {"result": {"content": "made 1000 numbers", "podName": "demo-fanout-abcde-numbers-1"}},
            {"result": {"content": "squared chunk 0", "podName": "demo-fanout-abcde-square-2"}}]  # fmt: skip

    def workflow(self, name: str) -> dict[str, Any]:
        """The workflow object: a cached ``numbers`` pod and one ``square`` pod in the workflow's phase."""
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
                self._reply(200, list(state.log), ndjson=True)
            else:
                if state.phases:
                    state.phase = state.phases.pop(0)
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


def _progress_from_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                         ) -> list[str]:  # fmt: skip
    """The stdout of a real wrapped step whose program reports progress through the stage programs' ``Progress``."""
    from nsbiflow.backends.argo.wrapper import pod_step_main
    from tests.argo.conftest import render_instance, templates

    script = ("import sys\nfrom nsbiflow.stepcli.progress import Progress\n"
              "with Progress('train', unit='members', channel_every=0) as bar:\n"
              "    for i in range(1, 9):\n        bar.update(i, 8, f'member {i}')\n"
              "open(sys.argv[-1].split('=', 1)[1], 'w').write('done')\n")  # fmt: skip
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(yaml.safe_dump({
        "apiVersion": "nsbiflow/v1", "kind": "Workflow", "metadata": {"name": "progress"},
        "steps": {"train": {"run": {"image": "ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0",
                                    "command": [sys.executable, "-c", script],
                                    "outputs": {"done": {"kind": "file", "filename": "done.txt"}}}}}}))  # fmt: skip
    plan = load_plan(workflow)
    argv, env = render_instance(templates(compile_to_dict(plan))["train"], plan.steps["train"], tmp_path / "pod")
    env.pop("NSBIFLOW_STORE", None)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert pod_step_main(argv[3:], {**env, "NSBIFLOW_STATE_DIR": str(tmp_path / "state")}) == 0
    return capsys.readouterr().out.splitlines()


def test_pod_progress_reaches_watch(
    fake_argo: tuple[str, FakeArgo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stage program's progress in a pod -> prefixed lines in the pod log -> `nsbiflow watch` (plain) shows it."""
    lines = _progress_from_a_pod(tmp_path, monkeypatch, capsys)
    records = [parse_log_line(line) for line in lines]
    assert lines and all(line.startswith(LOG_PREFIX) for line in lines), lines
    assert records[-1] == {"done": 8.0, "total": 8.0, "unit": "members", "message": "member 8"}
    url, state = fake_argo
    pod = "demo-fanout-abcde-square-2"
    state.log = [{"result": {"content": "epoch 1 loss 0.69", "podName": pod}},
                 *({"result": {"content": line, "podName": pod}} for line in lines[:3])]  # fmt: skip
    state.phases = ["Running"] * 3
    state.phase = "Running"

    def finish_later() -> None:  # the pod reports the rest, then the workflow ends
        import time

        time.sleep(1.0)
        state.log = [*state.log, *({"result": {"content": line, "podName": pod}} for line in lines[3:])]
        state.phase = "Succeeded"

    threading.Thread(target=finish_later, daemon=True).start()
    watch = _invoke("watch", "demo-fanout-abcde", "--argo-server", url, "-n", NAMESPACE, "--interval", "0.2")
    assert watch.exit_code == 0, watch.output
    out = watch.stdout.splitlines()
    progress = [line for line in out if "members" in line]
    assert progress and progress[0].startswith("  square(0:step:square[0]): ")
    assert "8/8 members: member 8" in progress[-1], out
    assert out.index(progress[-1]) < out.index("square(0:step:square[0]): Succeeded")
    assert "demo-fanout-abcde: Succeeded (2/2 pods done" in out[-1]
    assert any(r["query"].get("logOptions.follow") == ["true"] for r in state.requests if r["path"].endswith("/log"))


def test_recorded_log_text_parses_and_draws_bars() -> None:
    """Recorded Argo log API lines -> per-pod progress -> the live display's bars and ETA (rendered by rich)."""
    from rich.console import Console

    recorded = [
        '{"result":{"content":"nsbiflow pod-step: NSBIFLOW_STORE is not set","podName":"wf-train-1"}}',
        '{"result":{"content":"NSBIFLOW-PROGRESS {\\"done\\": 2, \\"label\\": \\"train\\", \\"message\\": '
        '\\"members [2] epoch 3\\", \\"total\\": 8, \\"unit\\": \\"members\\"}","podName":"wf-train-1"}}',
        '{"result":{"content":"2026-01-01T00:00:01Z NSBIFLOW-PROGRESS {\\"done\\": 4, \\"total\\": 8, '
        '\\"unit\\": \\"members\\"}","podName":"wf-train-1"}}',
        '{"result":{"content":"NSBIFLOW-PROGRESS {not json","podName":"wf-infer-2"}}',
        '{"result":{"content":"NSBIFLOW-PROGRESS {\\"done\\": 5000, \\"total\\": null, \\"unit\\": \\"events\\"}",'
        '"podName":"wf-infer-2"}}',
    ]
    progress = PodProgress()
    pairs = [(r["podName"], r["content"]) for r in (json.loads(line)["result"] for line in recorded)]
    assert progress.feed_all(pairs) == 3
    assert progress.feed_all(pairs) == 0  # a re-read stream is not applied twice
    train, infer = progress.get("wf-train-1"), progress.get("wf-infer-2")
    assert train is not None and train.fraction() == 0.5 and train.describe().startswith("4/8 members")
    assert infer is not None and infer.fraction() is None and infer.describe() == "5000 events"
    state = WorkflowState(name="wf", namespace=NAMESPACE, phase="Running", nodes=[
        NodeState(name="train(0)", template="train", phase="Running", pod="wf-train-1"),
        NodeState(name="infer", template="infer", phase="Running", pod="wf-infer-2"),
        NodeState(name="generate", template="generate", phase="Succeeded", cached=True,
                  pod="wf-generate-3")])  # fmt: skip
    console = Console(file=io.StringIO(), record=True, width=140, force_terminal=True, color_system=None)
    display = RichWatch(progress, console=console)
    display.state = state
    console.print(display)
    text = console.export_text()
    assert "train(0)" in text and "4/8 members" in text and "5000 events" in text and "(cached)" in text
    assert "━" in text and "1/3 pods done, 2 running" in text
    plain = io.StringIO()
    PlainWatch(progress, stream=plain, every=0).show(state, [])
    shown = plain.getvalue().splitlines()
    assert shown[0].startswith("  train(0): 4/8 members, ETA ") and shown[1:] == ["  infer: 5000 events"]


@pytest.mark.cluster
def test_watch_a_real_cluster(repo_root: Path) -> None:
    """Submit the demo to the cluster of the kubeconfig and watch it in plain mode to the end."""
    if not os.environ.get("ARGO_SERVER"):
        pytest.skip("no ARGO_SERVER set (and a token in ARGO_TOKEN or the kubeconfig): no cluster to watch")
    result = run_cli("submit", repo_root / "workflows" / "examples" / "demo-fanout.yaml")
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    watch = run_cli("watch", name, "--plain", "--interval", "2", "--timeout", "900")
    assert watch.returncode == 0, watch.stderr
    assert f"{name}: Succeeded" in watch.stdout.splitlines()[-1]
