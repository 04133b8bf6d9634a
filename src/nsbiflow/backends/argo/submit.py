"""Submit and monitor compiled workflows through the Argo Server API with hera's ``WorkflowsService``.

The bearer token comes from ``ARGO_TOKEN`` or from the current kubeconfig context (``token`` or
``tokenFile``), never from a command-line flag that would land in shell history. Every failure is one
``ArgoError`` line: unreachable server, refused token, unknown workflow.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import yaml
from hera.exceptions import HeraException
from hera.workflows import models as m
from hera.workflows.service import WorkflowsService

from nsbiflow.errors import NsbiflowError

DEFAULT_TIMEOUT = 15.0
FOLLOW_READ_TIMEOUT = 120.0
"""Seconds a followed log stream may stay silent before it is dropped (and re-opened by the caller)."""
FINISHED = {"Succeeded", "Failed", "Error"}


class ArgoError(NsbiflowError):
    """The Argo server cannot be reached or refused a request."""


def kubeconfig_token(env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token of the current kubeconfig context (``token`` or ``tokenFile``), if any."""
    env = os.environ if env is None else env
    paths = [Path(p) for p in (env.get("KUBECONFIG") or "").split(os.pathsep) if p]
    paths = paths or [Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"]
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(config, dict):
            continue
        contexts = {c.get("name"): c.get("context", {}) for c in config.get("contexts") or [] if isinstance(c, dict)}
        user_name = contexts.get(config.get("current-context"), {}).get("user")
        for user in config.get("users") or []:
            if isinstance(user, dict) and user.get("name") == user_name:
                data = user.get("user") or {}
                if data.get("token"):
                    return str(data["token"])
                if data.get("tokenFile"):
                    try:
                        return Path(data["tokenFile"]).read_text().strip()
                    except OSError:
                        return None
    return None


def resolve_token(env: Mapping[str, str] | None = None) -> str | None:
    """``ARGO_TOKEN`` (with or without the ``Bearer`` prefix), else the kubeconfig token, else none."""
    env = os.environ if env is None else env
    token = (env.get("ARGO_TOKEN") or "").strip()
    return token or kubeconfig_token(env)


def resolve_server(url: str | None, env: Mapping[str, str] | None = None) -> str:
    """The Argo server URL from ``--argo-server`` or ``ARGO_SERVER`` (``https://`` when no scheme is given)."""
    env = os.environ if env is None else env
    text = (url or env.get("ARGO_SERVER") or "").strip()
    if not text:
        raise ArgoError("no Argo server: give --argo-server URL or set ARGO_SERVER (e.g. https://localhost:2746)")
    if "://" not in text:
        text = "https://" + text
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ArgoError(f"invalid Argo server URL {text!r}: expected http(s)://HOST[:PORT]")
    return text.rstrip("/") + "/"


class _TimeoutSession(requests.Session):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


@dataclass
class NodeState:
    """One step pod of a submitted workflow."""

    name: str
    template: str
    phase: str
    message: str = ""
    cached: bool = False
    step_key: str = ""
    pod: str = ""


@dataclass
class WorkflowState:
    """Where a submitted workflow stands."""

    name: str
    namespace: str
    phase: str
    started: str = ""
    finished: str = ""
    message: str = ""
    progress: str = ""
    nodes: list[NodeState] | None = None

    @property
    def finished_ok(self) -> bool | None:
        """True/False once finished (succeeded or not), None while running."""
        return None if self.phase not in FINISHED else self.phase == "Succeeded"


class ArgoClient:
    """A thin layer over hera's ``WorkflowsService`` that turns failures into one-line ``ArgoError``s."""

    def __init__(self, server: str | None, namespace: str, *, token: str | None = None, verify_ssl: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> None:  # fmt: skip
        self.server = resolve_server(server)
        self.namespace = namespace
        self.service = WorkflowsService(host=self.server, verify_ssl=verify_ssl, token=token or None,
                                        namespace=namespace, session=_TimeoutSession(timeout))  # fmt: skip

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except requests.exceptions.SSLError as exc:
            raise ArgoError(f"TLS error talking to the Argo server at {self.server} ({type(exc).__name__}); "
                            "use an http:// URL for a port-forwarded server or --insecure") from None  # fmt: skip
        except requests.exceptions.ConnectionError:
            raise ArgoError(f"cannot reach the Argo server at {self.server} (connection failed): is it running and "
                            "port-forwarded (kubectl -n NS port-forward svc/nsbiflow-argo-workflows-server 2746)?"
                            ) from None
        except requests.exceptions.Timeout:
            raise ArgoError(f"the Argo server at {self.server} did not answer in time") from None
        except HeraException as exc:
            message = " ".join(str(exc).split())
            if "401" in message or "403" in message or "Unauthorized" in message or "Forbidden" in message:
                raise ArgoError(f"the Argo server refused to {what} ({message}); set ARGO_TOKEN to a valid token "
                                "(e.g. kubectl create token nsbiflow-submitter)") from None  # fmt: skip
            raise ArgoError(f"cannot {what}: {message}") from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise ArgoError(f"cannot {what}: {type(exc).__name__}: {exc}") from None

    def submit(self, workflow: m.Workflow) -> str:
        """Create the workflow; returns its generated name."""
        request = m.WorkflowCreateRequest(namespace=self.namespace, workflow=workflow)
        created = self._call("create the workflow", lambda: self.service.create_workflow(request, self.namespace))
        name = created.metadata.name if created.metadata else None
        if not name:
            raise ArgoError("the Argo server accepted the workflow but returned no name")
        return str(name)

    def get(self, name: str) -> m.Workflow:
        """The workflow object (status included)."""
        return self._call(f"get workflow {name!r} in namespace {self.namespace!r}",
                          lambda: self.service.get_workflow(name, self.namespace))  # fmt: skip

    def state(self, name: str) -> WorkflowState:
        """A summary of the workflow's status with one entry per step pod."""
        return workflow_state(self.get(name), self.namespace)

    def logs(self, name: str, step: str | None = None, *, follow: bool = False) -> Iterator[tuple[str, str]]:
        """``(pod, line)`` of the step containers' logs (one step's pods with ``step``); with ``follow`` the
        stream stays open while the workflow runs (a read pause over ``FOLLOW_READ_TIMEOUT`` s ends it)."""
        pods: set[str] | None = None
        if step is not None:
            state = self.state(name)
            wanted = step.replace("_", "-")
            pods = {n.pod for n in state.nodes or [] if n.template == wanted or n.name == step or
                    n.name.startswith(f"{wanted}(")}  # fmt: skip
            if not pods:
                known = ", ".join(sorted({n.template for n in state.nodes or []})) or "none yet"
                raise ArgoError(f"workflow {name!r} has no pods of step {step!r} (steps: {known})")
        url = f"{self.server}api/v1/workflows/{self.namespace}/{name}/log"
        params = {"logOptions.container": "main"}
        if follow:
            params["logOptions.follow"] = "true"
        headers = {"Authorization": self.service.token} if self.service.token else {}

        def fetch() -> requests.Response:
            timeout = (DEFAULT_TIMEOUT, FOLLOW_READ_TIMEOUT if follow else DEFAULT_TIMEOUT)
            response = self.service.session.get(url, params=params, headers=headers, verify=self.service.verify_ssl,
                                                stream=True, timeout=timeout)  # fmt: skip
            if not response.ok:
                from hera.workflows.service import exception_from_server_response

                raise exception_from_server_response(response)
            return response

        response: requests.Response = self._call(f"get the logs of workflow {name!r}", fetch)
        for raw in response.iter_lines(decode_unicode=True):
            if not raw:
                continue
            try:
                result = json.loads(raw).get("result", {})
            except (json.JSONDecodeError, AttributeError):
                continue
            pod = str(result.get("podName", ""))
            if pods is None or pod in pods:
                yield pod, str(result.get("content", ""))

    def watch(self, name: str, *, interval: float = 5.0, timeout: float | None = None,
              on_change: Callable[[WorkflowState, list[NodeState]], None] | None = None) -> WorkflowState:  # fmt: skip
        """Poll until the workflow finishes; ``on_change`` sees every new node phase."""
        seen: dict[str, str] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state(name)
            changed = [n for n in state.nodes or [] if seen.get(n.name) != n.phase]
            seen.update({n.name: n.phase for n in changed})
            if on_change is not None:
                on_change(state, changed)
            if state.finished_ok is not None:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise ArgoError(f"workflow {name!r} still {state.phase} after {timeout:g}s")
            time.sleep(interval)


def _parameter(node: m.NodeStatus, name: str) -> str:
    for parameter in (node.outputs.parameters if node.outputs else None) or []:
        if parameter.name == name:
            return str(parameter.value or "")
    return ""


def workflow_state(workflow: m.Workflow, namespace: str) -> WorkflowState:
    """Summarize a workflow object (as returned by the server)."""
    name = str(workflow.metadata.name or "")
    status = workflow.status
    nodes: list[NodeState] = []
    for node in (status.nodes if status and status.nodes else {}).values():
        if node.type != "Pod":
            continue
        suffix = node.id.rsplit("-", 1)[-1]
        template = node.template_name or ""
        pod = f"{name}-{template}-{suffix}" if template and node.id != name else node.id
        nodes.append(NodeState(name=node.display_name or node.name or node.id, template=template,
                               phase=str(node.phase or "Pending"), message=node.message or "",
                               cached=_parameter(node, "cached") == "true", step_key=_parameter(node, "step-key"),
                               pod=pod))  # fmt: skip
    nodes.sort(key=lambda n: (n.template, n.name))
    return WorkflowState(
        name=name, namespace=namespace, phase=str(status.phase or "Pending") if status else "Pending",
        started=str(status.started_at.root) if status and status.started_at else "",
        finished=str(status.finished_at.root) if status and status.finished_at else "",
        message=status.message or "" if status else "", progress=status.progress or "" if status else "",
        nodes=nodes,
    )  # fmt: skip
